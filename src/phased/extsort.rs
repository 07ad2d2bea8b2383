//! Sorting (key, document) records in a memory budget.
//!
//! Records collect in memory; past the budget they are sorted and written
//! as a run to a scratch file, and at the end the runs and the in-memory
//! rest are merged. Groups of equal keys come out in key order with their
//! documents ascending, which is all the bucket tasks need.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::PhasedError;

/// A fixed-width hash key: 64 bits for band and line keys, 128 for exact text.
pub trait Key: Copy + Ord + Send + Sync + std::fmt::Debug + 'static {
    const BYTES: usize;
    fn put(self, out: &mut Vec<u8>);
    fn get(b: &[u8]) -> Self;
    /// Which of `parts` hash-range partitions the key belongs to.
    fn partition(self, parts: usize) -> usize;
}

impl Key for u64 {
    const BYTES: usize = 8;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
    }
    fn partition(self, parts: usize) -> usize {
        // The high bits: keys within a partition still spread over the low ones.
        ((self >> 32) % parts as u64) as usize
    }
}

impl Key for u128 {
    const BYTES: usize = 16;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        u128::from_le_bytes(b[..16].try_into().expect("16 bytes"))
    }
    fn partition(self, parts: usize) -> usize {
        ((self >> 96) as u64 % parts as u64) as usize
    }
}

/// Bytes one record takes in memory.
pub fn record_bytes<K: Key>() -> usize {
    std::mem::size_of::<(K, u32)>()
}

pub struct Sorter<K: Key> {
    mem: Vec<(K, u32)>,
    cap: usize,
    runs: Vec<PathBuf>,
    scratch: PathBuf,
}

impl<K: Key> Sorter<K> {
    /// `scratch` is a file-name prefix for runs; `budget` is in bytes.
    pub fn new(scratch: &Path, budget: usize) -> Self {
        Sorter {
            mem: Vec::new(),
            cap: (budget / record_bytes::<K>()).max(1024),
            runs: Vec::new(),
            scratch: scratch.to_path_buf(),
        }
    }

    pub fn push(&mut self, key: K, doc: u32) -> Result<(), PhasedError> {
        if self.mem.len() == self.cap {
            self.spill()?;
        }
        self.mem.push((key, doc));
        Ok(())
    }

    /// Runs written so far (0 when everything fit in memory).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    fn spill(&mut self) -> Result<(), PhasedError> {
        self.mem.sort_unstable();
        let path = self
            .scratch
            .with_extension(format!("run{}.tmp", self.runs.len()));
        let f = File::create(&path).map_err(|source| PhasedError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut rec = Vec::with_capacity(K::BYTES + 4);
        for &(k, d) in &self.mem {
            rec.clear();
            k.put(&mut rec);
            rec.extend_from_slice(&d.to_le_bytes());
            w.write_all(&rec).map_err(|source| PhasedError::Io {
                path: path.display().to_string(),
                source,
            })?;
        }
        w.flush().map_err(|source| PhasedError::Io {
            path: path.display().to_string(),
            source,
        })?;
        self.mem.clear();
        self.runs.push(path);
        Ok(())
    }

    /// Calls `f(key, documents)` for every key, in key order, documents ascending.
    pub fn for_each_group(
        mut self,
        mut f: impl FnMut(K, &[u32]) -> Result<(), PhasedError>,
    ) -> Result<(), PhasedError> {
        self.mem.sort_unstable();
        let mut group: Vec<u32> = Vec::new();
        let mut current: Option<K> = None;
        let mut emit = |k: K, d: u32, group: &mut Vec<u32>| -> Result<(), PhasedError> {
            if current != Some(k) {
                if let Some(c) = current {
                    f(c, group)?;
                }
                group.clear();
                current = Some(k);
            }
            group.push(d);
            Ok(())
        };
        if self.runs.is_empty() {
            for &(k, d) in &self.mem {
                emit(k, d, &mut group)?;
            }
        } else {
            let mut readers = Vec::with_capacity(self.runs.len());
            for p in &self.runs {
                let f = File::open(p).map_err(|source| PhasedError::Io {
                    path: p.display().to_string(),
                    source,
                })?;
                readers.push(RunReader::<K> {
                    r: BufReader::with_capacity(1 << 16, f),
                    buf: vec![0; K::BYTES + 4],
                    path: p.clone(),
                    _k: std::marker::PhantomData,
                });
            }
            let mut heap = BinaryHeap::new();
            for (i, r) in readers.iter_mut().enumerate() {
                if let Some((k, d)) = r.next()? {
                    heap.push(Reverse((k, d, i)));
                }
            }
            let mut mem = self.mem.iter().copied().peekable();
            loop {
                let from_heap = heap.peek().map(|Reverse((k, d, _))| (*k, *d));
                let take_mem = match (mem.peek(), from_heap) {
                    (Some(m), Some(h)) => *m <= h,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                if take_mem {
                    let (k, d) = mem.next().expect("peeked");
                    emit(k, d, &mut group)?;
                } else {
                    let Reverse((k, d, i)) = heap.pop().expect("peeked");
                    emit(k, d, &mut group)?;
                    if let Some((k2, d2)) = readers[i].next()? {
                        heap.push(Reverse((k2, d2, i)));
                    }
                }
            }
        }
        if let Some(c) = current {
            f(c, &group)?;
        }
        Ok(())
    }
}

impl<K: Key> Drop for Sorter<K> {
    fn drop(&mut self) {
        for p in &self.runs {
            let _ = fs::remove_file(p);
        }
    }
}

struct RunReader<K> {
    r: BufReader<File>,
    buf: Vec<u8>,
    path: PathBuf,
    _k: std::marker::PhantomData<K>,
}

impl<K: Key> RunReader<K> {
    fn next(&mut self) -> Result<Option<(K, u32)>, PhasedError> {
        match self.r.read_exact(&mut self.buf) {
            Ok(()) => Ok(Some((
                K::get(&self.buf),
                u32::from_le_bytes(self.buf[K::BYTES..].try_into().expect("4 bytes")),
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(source) => Err(PhasedError::Io {
                path: self.path.display().to_string(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups<K: Key>(s: Sorter<K>) -> Vec<(K, Vec<u32>)> {
        let mut out = Vec::new();
        s.for_each_group(|k, d| {
            out.push((k, d.to_vec()));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn spilled_merge_equals_in_memory_sort() {
        let dir = tempfile::tempdir().unwrap();
        let mut small = Sorter::<u64>::new(&dir.path().join("a"), 0);
        let mut big = Sorter::<u64>::new(&dir.path().join("b"), 1 << 30);
        let mut x = 0x1234_5678u64;
        for d in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % 3000;
            small.push(k, d).unwrap();
            big.push(k, d).unwrap();
        }
        assert!(small.runs() > 5, "the tiny budget spilled");
        assert_eq!(big.runs(), 0);
        let (a, b) = (groups(small), groups(big));
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(a.iter().all(|(_, d)| d.windows(2).all(|w| w[0] < w[1])));
        assert_eq!(a.iter().map(|(_, d)| d.len()).sum::<usize>(), 20_000);
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 0, "runs are removed");
    }
}
