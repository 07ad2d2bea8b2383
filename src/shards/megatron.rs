//! Megatron-LM / NeMo indexed datasets: a `.bin` of token ids back to back
//! and a `.idx` that says where each document starts.
//!
//! `.idx` layout (little endian), as `megatron.core.datasets.indexed_dataset`
//! reads it:
//! - magic `MMIDIDX\0\0` (9 bytes), version `u64` = 1, dtype code `u8`;
//! - sequence count `u64`, document-index count `u64` (documents + 1);
//! - sequence lengths `i32` x sequences, in tokens;
//! - sequence pointers `i64` x sequences, byte offsets into `.bin`;
//! - document indices `i64` x (documents + 1): 0, then the number of
//!   sequences after each document (one sequence per document here).
//!
//! Both files are written under temporary names; the `.bin` is committed
//! before the `.idx`, so an `.idx` under its final name vouches for a
//! complete pair.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::files::{commit, tmp_path};

pub const MAGIC: &[u8; 9] = b"MMIDIDX\x00\x00";

/// The token types forja writes, with Megatron's dtype codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    U16,
    I32,
}

impl DType {
    /// uint16 when every id fits, else int32.
    pub fn for_vocab(vocab: usize) -> DType {
        if vocab <= 1 << 16 {
            DType::U16
        } else {
            DType::I32
        }
    }
    pub fn code(self) -> u8 {
        match self {
            DType::U16 => 8,
            DType::I32 => 4,
        }
    }
    pub fn from_code(code: u8) -> Option<DType> {
        match code {
            8 => Some(DType::U16),
            4 => Some(DType::I32),
            _ => None,
        }
    }
    pub fn size(self) -> usize {
        match self {
            DType::U16 => 2,
            DType::I32 => 4,
        }
    }
    fn name(self) -> &'static str {
        match self {
            DType::U16 => "uint16",
            DType::I32 => "int32",
        }
    }
    fn max_id(self) -> u32 {
        match self {
            DType::U16 => u16::MAX as u32,
            DType::I32 => i32::MAX as u32,
        }
    }
    /// Appends `id` (at most `max_id`) in this dtype, little endian.
    fn put(self, id: u32, out: &mut Vec<u8>) {
        match self {
            DType::U16 => out.extend_from_slice(&(id as u16).to_le_bytes()),
            DType::I32 => out.extend_from_slice(&(id as i32).to_le_bytes()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ShardError + '_ {
    move |source| ShardError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `prefix.bin` and `prefix.idx`.
pub fn paths(prefix: &Path) -> (PathBuf, PathBuf) {
    let with = |ext: &str| {
        let mut s = prefix.as_os_str().to_owned();
        s.push(ext);
        PathBuf::from(s)
    };
    (with(".bin"), with(".idx"))
}

/// Writes one indexed dataset, a document at a time.
pub struct IndexedWriter {
    prefix: PathBuf,
    /// The `.bin`'s temporary name, which errors while writing name.
    bin_tmp: PathBuf,
    dtype: DType,
    bin: BufWriter<File>,
    lengths: Vec<i32>,
    tokens: u64,
    buf: Vec<u8>,
}

impl IndexedWriter {
    pub fn create(prefix: &Path, dtype: DType) -> Result<Self, ShardError> {
        let (bin, _) = paths(prefix);
        if let Some(dir) = bin.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let bin_tmp = tmp_path(&bin);
        let file = crate::files::journal::create_output(&bin_tmp).map_err(io_err(&bin_tmp))?;
        Ok(IndexedWriter {
            prefix: prefix.to_path_buf(),
            bin_tmp,
            dtype,
            bin: BufWriter::with_capacity(1 << 20, file),
            lengths: Vec::new(),
            tokens: 0,
            buf: Vec::new(),
        })
    }

    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The path prefix the shard will have.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Appends documents already encoded in `dtype`: `bytes` holds them back
    /// to back, `lengths` their sizes in tokens (the merge step's copy).
    pub fn add_raw(
        &mut self,
        bytes: &[u8],
        lengths: &[i32],
        dtype: DType,
    ) -> Result<(), ShardError> {
        let tokens: u64 = lengths.iter().map(|&l| l as u64).sum();
        if dtype != self.dtype || tokens * dtype.size() as u64 != bytes.len() as u64 {
            return Err(ShardError::Format {
                path: paths(&self.prefix).0.display().to_string(),
                message: format!(
                    "cannot append {} bytes of {} as {} {} tokens",
                    bytes.len(),
                    dtype.name(),
                    tokens,
                    self.dtype.name()
                ),
            });
        }
        self.bin.write_all(bytes).map_err(io_err(&self.bin_tmp))?;
        self.lengths.extend_from_slice(lengths);
        self.tokens += tokens;
        Ok(())
    }

    /// Appends one document. Ids past the dtype are a format error.
    pub fn add(&mut self, ids: &[u32]) -> Result<(), ShardError> {
        let bad = |message: String| ShardError::Format {
            path: paths(&self.prefix).0.display().to_string(),
            message,
        };
        let len = i32::try_from(ids.len()).map_err(|_| {
            bad(format!(
                "a document of {} tokens exceeds i32 lengths",
                ids.len()
            ))
        })?;
        if let Some(id) = ids.iter().find(|&&id| id > self.dtype.max_id()) {
            return Err(bad(format!(
                "token id {id} does not fit {}",
                self.dtype.name()
            )));
        }
        self.buf.clear();
        for &id in ids {
            self.dtype.put(id, &mut self.buf);
        }
        self.bin
            .write_all(&self.buf)
            .map_err(io_err(&self.bin_tmp))?;
        self.lengths.push(len);
        self.tokens += ids.len() as u64;
        Ok(())
    }

    /// Writes the index and commits both files; returns (documents, tokens).
    pub fn finish(self) -> Result<(usize, u64), ShardError> {
        let (bin, idx) = paths(&self.prefix);
        let bin_tmp = self.bin_tmp;
        self.bin
            .into_inner()
            .map_err(|e| ShardError::Io {
                path: bin_tmp.display().to_string(),
                source: e.into_error(),
            })?
            .flush()
            .map_err(io_err(&bin_tmp))?;
        let n = self.lengths.len();
        let mut out = Vec::with_capacity(34 + n * 20 + 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&1u64.to_le_bytes());
        out.push(self.dtype.code());
        out.extend_from_slice(&(n as u64).to_le_bytes());
        out.extend_from_slice(&(n as u64 + 1).to_le_bytes());
        for &l in &self.lengths {
            out.extend_from_slice(&l.to_le_bytes());
        }
        let mut ptr = 0i64;
        for &l in &self.lengths {
            out.extend_from_slice(&ptr.to_le_bytes());
            ptr += l as i64 * self.dtype.size() as i64;
        }
        for d in 0..=n as i64 {
            out.extend_from_slice(&d.to_le_bytes());
        }
        let idx_tmp = tmp_path(&idx);
        crate::files::journal::create_output(&idx_tmp)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &out))
            .map_err(io_err(&idx_tmp))?;
        commit(&bin_tmp, &bin).map_err(io_err(&bin))?;
        commit(&idx_tmp, &idx).map_err(io_err(&idx))?;
        Ok((n, self.tokens))
    }
}

/// Reads an indexed dataset written by any Megatron-compatible tool.
pub struct IndexedReader {
    bin: PathBuf,
    file: File,
    /// The token type (`u16` or `i32`, by vocabulary size).
    pub dtype: DType,
    /// Each document's length in tokens.
    pub lengths: Vec<i32>,
    /// Each document's byte offset in the `.bin` file.
    pub pointers: Vec<i64>,
    /// Megatron's document index (document boundaries; `0..=len`).
    pub doc_index: Vec<i64>,
}

impl IndexedReader {
    /// Opens `prefix.idx` and `prefix.bin`, checking their sizes and offsets.
    pub fn open(prefix: &Path) -> Result<Self, ShardError> {
        let (bin, idx) = paths(prefix);
        let bytes = fs::read(&idx).map_err(io_err(&idx))?;
        let bad = |message: String| ShardError::Format {
            path: idx.display().to_string(),
            message,
        };
        if bytes.len() < 34 || &bytes[..9] != MAGIC {
            return Err(bad("not a Megatron index (no MMIDIDX header)".into()));
        }
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8"));
        let version = u64_at(9);
        if version != 1 {
            return Err(bad(format!("index version {version}, expected 1")));
        }
        let dtype = DType::from_code(bytes[17])
            .ok_or_else(|| bad(format!("dtype code {} is not uint16 or int32", bytes[17])))?;
        let (seqs, docs) = (u64_at(18) as usize, u64_at(26) as usize);
        let need = 34usize
            .checked_add(seqs.saturating_mul(12))
            .and_then(|x| x.checked_add(docs.saturating_mul(8)));
        if need != Some(bytes.len()) {
            return Err(bad(format!(
                "{} bytes, but {seqs} sequences and {docs} document indices need {}",
                bytes.len(),
                need.map_or("more".into(), |n| n.to_string())
            )));
        }
        let mut o = 34;
        let lengths: Vec<i32> = (0..seqs)
            .map(|i| i32::from_le_bytes(bytes[o + i * 4..o + i * 4 + 4].try_into().expect("4")))
            .collect();
        o += seqs * 4;
        let pointers: Vec<i64> = (0..seqs)
            .map(|i| i64::from_le_bytes(bytes[o + i * 8..o + i * 8 + 8].try_into().expect("8")))
            .collect();
        o += seqs * 8;
        let doc_index = (0..docs)
            .map(|i| i64::from_le_bytes(bytes[o + i * 8..o + i * 8 + 8].try_into().expect("8")))
            .collect();
        let file = File::open(&bin).map_err(io_err(&bin))?;
        // The index must describe the data file exactly: lengths that are
        // not negative, pointers that follow one another, and a data file
        // of the size they add up to (a `.bin` cut short is caught here).
        let size = dtype.size() as u64;
        let mut at: u64 = 0;
        for (i, (&len, &ptr)) in lengths.iter().zip(&pointers).enumerate() {
            if len < 0 || ptr < 0 || ptr as u64 != at {
                return Err(bad(format!(
                    "sequence {i}: length {len} at byte {ptr}, expected byte {at}"
                )));
            }
            at = at.saturating_add((len as u64).saturating_mul(size));
        }
        let have = file.metadata().map_err(io_err(&bin))?.len();
        if have != at {
            return Err(ShardError::Format {
                path: bin.display().to_string(),
                message: format!("{have} bytes, but its index needs {at}"),
            });
        }
        Ok(IndexedReader {
            bin,
            file,
            dtype,
            lengths,
            pointers,
            doc_index,
        })
    }

    /// Documents in the shard.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// True for a shard without documents.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// Tokens in the shard.
    pub fn tokens(&self) -> u64 {
        self.lengths.iter().map(|&l| l as u64).sum()
    }

    /// The stored bytes of sequences `seqs` into `buf`; they must lie back
    /// to back in the `.bin` (as every writer lays them out).
    pub fn read_run(
        &mut self,
        seqs: std::ops::Range<usize>,
        buf: &mut Vec<u8>,
    ) -> Result<(), ShardError> {
        let size = self.dtype.size() as u64;
        let start = self.pointers[seqs.start] as u64;
        let mut bytes = 0u64;
        for i in seqs {
            if self.pointers[i] as u64 != start + bytes {
                return Err(ShardError::Format {
                    path: self.bin.display().to_string(),
                    message: format!("sequence {i} is not stored after the one before it"),
                });
            }
            bytes += self.lengths[i] as u64 * size;
        }
        buf.resize(bytes as usize, 0);
        self.file
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.file.read_exact(buf))
            .map_err(io_err(&self.bin))
    }

    /// The token ids of sequence `i`.
    pub fn get(&mut self, i: usize) -> Result<Vec<u32>, ShardError> {
        let mut raw = Vec::new();
        self.read_run(i..i + 1, &mut raw)?;
        Ok(match self.dtype {
            DType::U16 => raw
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
                .collect(),
            DType::I32 => raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("4")) as u32)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("en/train_00000");
        let docs: Vec<Vec<u32>> = vec![vec![1, 2, 3], vec![], vec![65535, 0, 7, 9]];
        let mut w = IndexedWriter::create(&prefix, DType::U16).unwrap();
        for d in &docs {
            w.add(d).unwrap();
        }
        assert_eq!(w.finish().unwrap(), (3, 7));
        let mut r = IndexedReader::open(&prefix).unwrap();
        assert_eq!(r.doc_index, [0, 1, 2, 3]);
        for (i, d) in docs.iter().enumerate() {
            assert_eq!(&r.get(i).unwrap(), d);
        }
        // No temporary names left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("en"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn ids_past_the_dtype_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = IndexedWriter::create(&dir.path().join("x"), DType::U16).unwrap();
        let e = w.add(&[70_000]).unwrap_err().to_string();
        assert!(e.contains("does not fit uint16"), "{e}");
    }

    #[test]
    fn a_data_file_cut_short_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("cut");
        let mut w = IndexedWriter::create(&prefix, DType::U16).unwrap();
        for d in [&[1u32, 2, 3][..], &[4, 5], &[6, 7, 8, 9]] {
            w.add(d).unwrap();
        }
        w.finish().unwrap();
        let bin = prefix.with_extension("bin");
        let bytes = fs::read(&bin).unwrap();
        fs::write(&bin, &bytes[..bytes.len() / 2]).unwrap();
        let e = IndexedReader::open(&prefix)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("index needs 18"), "{e}");
    }

    #[test]
    fn a_truncated_index_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("x");
        let mut w = IndexedWriter::create(&prefix, DType::I32).unwrap();
        w.add(&[1, 2]).unwrap();
        w.finish().unwrap();
        let (_, idx) = paths(&prefix);
        let bytes = fs::read(&idx).unwrap();
        fs::write(&idx, &bytes[..bytes.len() - 3]).unwrap();
        let e = IndexedReader::open(&prefix).err().unwrap().to_string();
        assert!(e.contains("x.idx") && e.contains("document indices"), "{e}");
    }
}
