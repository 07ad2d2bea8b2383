//! The one binary container every dedup intermediate uses.
//!
//! A file is a small header and a few byte *sections* (one per hash-range
//! partition, plus tables). Each section carries its length and xxh3-64
//! checksum in the header, and the header its own checksum, so a damaged or
//! foreign file is refused by name instead of being read as data. Files are
//! written under a temporary name and renamed.
//!
//! ```text
//! "FJSECT01"  u32 sections  u32 tag  u64 docs
//! per section: u64 offset  u64 length  u64 xxh3
//! u64 xxh3 of the header so far
//! section bytes...
//! ```
//!
//! The writer keeps sections in memory up to a byte budget and spills past
//! it to one scratch file, so a unit of any size is written in bounded memory.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use super::PhasedError;

const MAGIC: &[u8; 8] = b"FJSECT01";

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PhasedError + '_ {
    move |source| PhasedError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn corrupt(path: &Path, message: impl Into<String>) -> PhasedError {
    PhasedError::Corrupt {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Writes a sectioned file in bounded memory.
pub struct SectionWriter {
    path: PathBuf,
    tag: u32,
    bufs: Vec<Vec<u8>>,
    lens: Vec<u64>,
    sums: Vec<Xxh3>,
    /// Per section, the (offset, length) of its spilled pieces in order.
    pieces: Vec<Vec<(u64, u64)>>,
    spill: Option<(File, PathBuf, u64)>,
    buffered: usize,
    budget: usize,
    docs: u64,
}

impl SectionWriter {
    /// `tag` names what the file holds; readers check it.
    pub fn new(path: &Path, sections: usize, tag: u32, budget: usize) -> Self {
        SectionWriter {
            path: path.to_path_buf(),
            tag,
            bufs: vec![Vec::new(); sections],
            lens: vec![0; sections],
            sums: (0..sections).map(|_| Xxh3::new()).collect(),
            pieces: vec![Vec::new(); sections],
            spill: None,
            buffered: 0,
            budget: budget.max(1 << 16),
            docs: 0,
        }
    }

    pub fn set_docs(&mut self, docs: u64) {
        self.docs = docs;
    }

    /// Bytes appended to `section` so far.
    pub fn len(&self, section: usize) -> u64 {
        self.lens[section]
    }

    pub fn append(&mut self, section: usize, bytes: &[u8]) -> Result<(), PhasedError> {
        self.bufs[section].extend_from_slice(bytes);
        self.sums[section].update(bytes);
        self.lens[section] += bytes.len() as u64;
        self.buffered += bytes.len();
        if self.buffered > self.budget {
            self.spill_all()?;
        }
        Ok(())
    }

    fn spill_all(&mut self) -> Result<(), PhasedError> {
        if self.spill.is_none() {
            let p = self.path.with_extension("spill.tmp");
            if let Some(d) = p.parent() {
                fs::create_dir_all(d).map_err(io(d))?;
            }
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&p)
                .map_err(io(&p))?;
            self.spill = Some((f, p, 0));
        }
        let (f, p, end) = self.spill.as_mut().expect("created above");
        for (s, buf) in self.bufs.iter_mut().enumerate() {
            if buf.is_empty() {
                continue;
            }
            f.write_all(buf).map_err(io(p))?;
            self.pieces[s].push((*end, buf.len() as u64));
            *end += buf.len() as u64;
            buf.clear();
        }
        self.buffered = 0;
        Ok(())
    }

    /// Writes the file under a temporary name and renames it into place.
    pub fn finish(mut self) -> Result<(), PhasedError> {
        let n = self.bufs.len();
        let header_len = 8 + 4 + 4 + 8 + n * 24 + 8;
        let mut header = Vec::with_capacity(header_len);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&(n as u32).to_le_bytes());
        header.extend_from_slice(&self.tag.to_le_bytes());
        header.extend_from_slice(&self.docs.to_le_bytes());
        let mut offset = header_len as u64;
        for s in 0..n {
            header.extend_from_slice(&offset.to_le_bytes());
            header.extend_from_slice(&self.lens[s].to_le_bytes());
            header.extend_from_slice(&self.sums[s].digest().to_le_bytes());
            offset += self.lens[s];
        }
        let sum = xxh3_64(&header);
        header.extend_from_slice(&sum.to_le_bytes());
        if let Some(d) = self.path.parent() {
            fs::create_dir_all(d).map_err(io(d))?;
        }
        let tmp = self.path.with_extension("tmp");
        let file = File::create(&tmp).map_err(io(&tmp))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        w.write_all(&header).map_err(io(&tmp))?;
        let mut copy = vec![0u8; 1 << 20];
        for s in 0..n {
            if let Some((f, p, _)) = self.spill.as_mut() {
                for &(off, len) in &self.pieces[s] {
                    f.seek(SeekFrom::Start(off)).map_err(io(p))?;
                    let mut left = len;
                    while left > 0 {
                        let take = left.min(copy.len() as u64) as usize;
                        f.read_exact(&mut copy[..take]).map_err(io(p))?;
                        w.write_all(&copy[..take]).map_err(io(&tmp))?;
                        left -= take as u64;
                    }
                }
            }
            w.write_all(&self.bufs[s]).map_err(io(&tmp))?;
        }
        let file = w.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
        file.sync_data().map_err(io(&tmp))?;
        drop(file);
        if let Some((_, p, _)) = self.spill.take() {
            let _ = fs::remove_file(p);
        }
        fs::rename(&tmp, &self.path).map_err(io(&self.path))
    }
}

impl Drop for SectionWriter {
    fn drop(&mut self) {
        if let Some((_, p, _)) = self.spill.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// A sectioned file opened for reading; the header is checked on open.
pub struct Sections {
    path: PathBuf,
    file: File,
    pub docs: u64,
    entries: Vec<(u64, u64, u64)>,
}

impl Sections {
    pub fn open(path: &Path, tag: u32) -> Result<Sections, PhasedError> {
        Sections::open_any(path, &[tag])
    }

    /// Opens a file that may hold any of `tags` (e.g. 64- or 128-bit keys).
    pub fn open_any(path: &Path, tags: &[u32]) -> Result<Sections, PhasedError> {
        let file = File::open(path).map_err(io(path))?;
        let mut fixed = [0u8; 24];
        file.read_exact_at(&mut fixed, 0)
            .map_err(|_| corrupt(path, "shorter than its header"))?;
        if &fixed[..8] != MAGIC {
            return Err(corrupt(path, "not a forja dedup file"));
        }
        let n = u32::from_le_bytes(fixed[8..12].try_into().expect("4")) as usize;
        let found_tag = u32::from_le_bytes(fixed[12..16].try_into().expect("4"));
        if !tags.contains(&found_tag) {
            return Err(corrupt(
                path,
                format!("holds data of kind {found_tag}, expected one of {tags:?}"),
            ));
        }
        if n > 1 << 20 {
            return Err(corrupt(path, "damaged header"));
        }
        let mut header = vec![0u8; 24 + n * 24 + 8];
        file.read_exact_at(&mut header, 0)
            .map_err(|_| corrupt(path, "shorter than its header"))?;
        let (body, sum) = header.split_at(header.len() - 8);
        if xxh3_64(body) != u64::from_le_bytes(sum.try_into().expect("8")) {
            return Err(corrupt(path, "header checksum mismatch"));
        }
        let docs = u64::from_le_bytes(body[16..24].try_into().expect("8"));
        let size = file.metadata().map_err(io(path))?.len();
        let mut entries = Vec::with_capacity(n);
        for e in body[24..].chunks_exact(24) {
            let word = |i: usize| u64::from_le_bytes(e[i * 8..i * 8 + 8].try_into().expect("8"));
            let (off, len, sum) = (word(0), word(1), word(2));
            if off.checked_add(len).is_none_or(|end| end > size) {
                return Err(corrupt(path, "truncated (a section runs past the end)"));
            }
            entries.push((off, len, sum));
        }
        Ok(Sections {
            path: path.to_path_buf(),
            file,
            docs,
            entries,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// A whole section, checksum verified.
    pub fn read(&self, s: usize) -> Result<Vec<u8>, PhasedError> {
        let (off, len, sum) = *self
            .entries
            .get(s)
            .ok_or_else(|| corrupt(&self.path, format!("has no section {s}")))?;
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, off)
            .map_err(io(&self.path))?;
        if xxh3_64(&buf) != sum {
            return Err(corrupt(
                &self.path,
                format!("section {s} checksum mismatch"),
            ));
        }
        Ok(buf)
    }

    /// Where section `s` lies in the file: (offset, length).
    pub fn range(&self, s: usize) -> Option<(u64, u64)> {
        self.entries.get(s).map(|&(off, len, _)| (off, len))
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// `len` bytes at `at` within section `s` (bounds checked, not checksummed:
    /// for random lookups into a section too large to verify each time).
    pub fn read_at(&self, s: usize, at: u64, buf: &mut [u8]) -> Result<(), PhasedError> {
        let (off, len, _) = self.entries[s];
        if at + buf.len() as u64 > len {
            return Err(corrupt(
                &self.path,
                format!("lookup past the end of section {s}"),
            ));
        }
        self.file
            .read_exact_at(buf, off + at)
            .map_err(io(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_spilling() {
        let dir = tempfile::tempdir().unwrap();
        for budget in [1 << 20, 1] {
            let path = dir.path().join(format!("f{budget}.bin"));
            let mut w = SectionWriter::new(&path, 3, 7, budget);
            for i in 0..70_000u32 {
                w.append((i % 3) as usize, &i.to_le_bytes()).unwrap();
            }
            w.set_docs(70_000);
            w.finish().unwrap();
            assert!(!path.with_extension("spill.tmp").exists());
            let r = Sections::open(&path, 7).unwrap();
            assert_eq!((r.count(), r.docs), (3, 70_000));
            let s1 = r.read(1).unwrap();
            let vals: Vec<u32> = s1
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(vals.len(), 23_333);
            assert!(vals.iter().all(|v| v % 3 == 1));
            assert!(vals.windows(2).all(|w| w[0] < w[1]), "order kept");
            let mut b = [0u8; 4];
            r.read_at(1, 4, &mut b).unwrap();
            assert_eq!(u32::from_le_bytes(b), 4);
            assert!(Sections::open(&path, 8).is_err(), "wrong tag");
        }
    }

    #[test]
    fn damage_is_reported_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.bin");
        let mut w = SectionWriter::new(&path, 1, 1, 1 << 20);
        w.append(0, b"hello world").unwrap();
        w.finish().unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let e = Sections::open(&path, 1).unwrap().read(0).unwrap_err();
        assert!(e.to_string().contains("d.bin"), "{e}");
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(Sections::open(&path, 1).is_err());
        fs::write(&path, b"junk").unwrap();
        assert!(Sections::open(&path, 1).is_err());
    }
}
