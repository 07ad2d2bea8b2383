//! Readers and writers: the only code that touches input and output files.
//!
//! Inputs are planned into *units* of work (one JSON Lines, Parquet or WARC
//! file, or a group of text files) with a global index, so that ranks can split
//! them deterministically and completion can be tracked per unit. A reader
//! turns a unit into [`Chunk`]s with bounded memory; decoding a chunk into a
//! batch is pure and runs in parallel.

#[doc(hidden)]
pub mod fuzzing;
mod guarded_map;
mod jsonl;
mod parquet_in;
pub mod remote;
mod text;
mod walk;
mod warc;
mod writer;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::RecordBatch;

use crate::ledger::{FileStatus, LedgerRow, Reason};
use crate::manifest::{InputFormat, LoadedManifest, ReaderConfig, SourceConfig};

pub use jsonl::decode_lines;
pub use walk::output_overlap;
pub use warc::{decode_records, RawRecords};
pub use writer::{
    atomic_write, commit, for_documents, is_temporary, jsonl_frame, tmp_path, ShardWriter,
};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("invalid glob pattern {pattern:?}: {message}")]
    BadPattern { pattern: String, message: String },
    #[error("no file matches {pattern:?} (looked in {base})")]
    NoMatch { pattern: String, base: String },
    #[error("{path}: the file name is not valid UTF-8 (ids and the ledger record names as text); rename it")]
    BadName { path: String },
    #[error("cannot read {path}: {source}")]
    Unreadable { path: String, source: io::Error },
    #[error("{path}: not a usable Parquet file: {message}")]
    BadParquet { path: String, message: String },
    #[error(transparent)]
    Remote(#[from] remote::RemoteError),
}

/// Expands one `paths` entry into the sorted files it names, with their
/// sizes, checking that each one opens.
pub fn expand_pattern(base: &Path, pattern: &str) -> Result<Vec<(PathBuf, u64)>, InputError> {
    if remote::is_url(pattern) {
        let found = remote::list(pattern)?;
        if found.is_empty() {
            return Err(InputError::NoMatch {
                pattern: pattern.into(),
                base: "object storage".into(),
            });
        }
        return Ok(found
            .into_iter()
            .map(|(url, size)| (PathBuf::from(url), size))
            .collect());
    }
    let full = crate::manifest::resolve(base, pattern);
    let mut out = Vec::new();
    for f in walk::walk(&full, pattern)? {
        File::open(&f.path).map_err(|e| InputError::Unreadable {
            path: f.path.display().to_string(),
            source: e,
        })?;
        out.push((f.path, f.size));
    }
    if out.is_empty() {
        let looked = if full.is_dir() {
            format!(
                "{}: a folder; name its files, e.g. {}/*.jsonl or {}/**/*",
                full.display(),
                pattern.trim_end_matches('/'),
                pattern.trim_end_matches('/')
            )
        } else {
            std::path::absolute(base)
                .unwrap_or_else(|_| base.to_path_buf())
                .display()
                .to_string()
        };
        return Err(InputError::NoMatch {
            pattern: pattern.into(),
            base: looked,
        });
    }
    Ok(out)
}

/// Device and inode of a local file, to read each file once however it is
/// spelled (`None` for object storage or when it cannot be read).
pub fn file_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().and_then(|m| walk::file_id(&m))
}

/// One input file of a unit.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    /// The path as recorded in ids and the ledger: relative to the manifest's folder.
    pub rel: Arc<str>,
    pub size: u64,
}

/// A unit of work: the granularity of rank slicing, outputs and resume.
#[derive(Debug, Clone)]
pub struct Unit {
    pub index: usize,
    pub source: usize,
    pub files: Vec<InputFile>,
}

impl Unit {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Lists every unit of every source, in manifest order, from the inputs the
/// manifest's loading found (checking that Parquet files have the configured
/// columns).
pub fn plan_units(m: &LoadedManifest) -> Result<Vec<Unit>, InputError> {
    let mut units = Vec::new();
    for (si, source) in m.manifest.sources.iter().enumerate() {
        let mut inputs = Vec::with_capacity(m.inputs[si].len());
        for (path, size) in &m.inputs[si] {
            let url = path.to_str().filter(|p| remote::is_url(p));
            // A remote Parquet file's columns are checked once it is
            // downloaded, before its unit is read (`localize`).
            if source.format == InputFormat::Parquet && url.is_none() {
                parquet_in::check_schema(path, source)?;
            }
            inputs.push(InputFile {
                path: path.clone(),
                rel: match url {
                    Some(u) => u.into(),
                    None => crate::manifest::relative_to(path, &m.base).into(),
                },
                size: *size,
            });
        }
        match source.format {
            InputFormat::Text => {
                for group in inputs.chunks(m.manifest.reader.text_files_per_unit) {
                    units.push(Unit {
                        index: units.len(),
                        source: si,
                        files: group.to_vec(),
                    });
                }
            }
            InputFormat::Jsonl | InputFormat::Parquet | InputFormat::Warc => {
                for f in inputs {
                    units.push(Unit {
                        index: units.len(),
                        source: si,
                        files: vec![f],
                    });
                }
            }
        }
    }
    Ok(units)
}

/// What a source's documents need from its configuration while being read.
#[derive(Debug)]
pub struct SourceSpec {
    pub name: String,
    pub text_field: String,
    pub url_field: Option<String>,
    pub max_doc_bytes: u64,
}

impl SourceSpec {
    pub fn new(s: &SourceConfig, r: &ReaderConfig) -> Self {
        SourceSpec {
            name: s.name.clone(),
            text_field: s.text_field.clone(),
            url_field: s.url_field.clone(),
            max_doc_bytes: r.max_doc_bytes,
        }
    }

    pub fn reject(&self, file: &str, line: u64, reason: Reason, detail: String) -> LedgerRow {
        LedgerRow {
            id: crate::batch::doc_id(&self.name, file, line),
            source: self.name.clone(),
            file: file.to_string(),
            line,
            stage: "read".into(),
            reason,
            detail,
            bytes: 0,
            annotations: String::new(),
        }
    }
}

/// A piece of a unit, as the reader hands it on.
pub enum Chunk {
    /// Complete JSON lines, decoded later in parallel.
    Lines {
        file: Arc<str>,
        first_line: u64,
        data: Vec<u8>,
    },
    /// Framed WARC records, turned into documents later in parallel.
    Records { file: Arc<str>, records: RawRecords },
    /// Documents already in core form (Parquet rows, text files).
    Batch(RecordBatch),
    /// Documents rejected while reading (too large, truncated).
    Rejects(Vec<LedgerRow>),
    /// A file of the unit is finished.
    FileEnd {
        file: Arc<str>,
        status: FileStatus,
        detail: Option<String>,
    },
}

/// A chunk decoded into documents.
#[derive(Default)]
pub struct Decoded {
    pub batch: Option<RecordBatch>,
    pub rejects: Vec<LedgerRow>,
    /// Whitespace-only lines seen (not documents).
    pub blank_lines: u64,
    /// WARC records that carry no page (not documents).
    pub skipped_records: u64,
}

/// Reads one unit as a sequence of chunks.
pub trait Reader: Send {
    /// Reads one more piece of the unit and pushes the chunks it yields
    /// (possibly none) onto `out`; returns false once the unit is done.
    fn step(&mut self, out: &mut VecDeque<Chunk>) -> Result<bool, ReadError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("{path}: {message}")]
    Parquet { path: String, message: String },
    #[error(transparent)]
    Remote(#[from] remote::RemoteError),
}

/// The unit with its input objects downloaded (its files' `rel`, which ids
/// and the ledger use, stay the URLs), and the guard that removes the
/// copies. Local units come back as they are.
pub fn localize(unit: &Unit, source: &SourceConfig) -> Result<(Unit, remote::Cached), ReadError> {
    let mut cached = remote::Cached::default();
    let mut local = unit.clone();
    for f in &mut local.files {
        let Some(url) = f
            .path
            .to_str()
            .filter(|p| remote::is_url(p))
            .map(String::from)
        else {
            continue;
        };
        let dest = remote::cache_path(&url);
        remote::download(&url, &dest)?;
        cached.push(dest.clone());
        if source.format == InputFormat::Parquet {
            parquet_in::check_schema(&dest, source).map_err(|e| ReadError::Parquet {
                path: url.clone(),
                message: e.to_string(),
            })?;
        }
        f.path = dest;
    }
    Ok((local, cached))
}

/// Opens a reader for a unit. `progress` counts compressed input bytes consumed.
pub fn open_unit(
    unit: &Unit,
    format: InputFormat,
    spec: Arc<SourceSpec>,
    reader: &ReaderConfig,
    progress: Arc<AtomicU64>,
) -> Box<dyn Reader> {
    match format {
        InputFormat::Jsonl => Box::new(jsonl::JsonlReader::new(
            unit.files[0].clone(),
            spec,
            reader.batch_bytes,
            progress,
        )),
        InputFormat::Parquet => Box::new(parquet_in::ParquetReader::new(
            unit.files[0].clone(),
            spec,
            reader.batch_bytes,
            progress,
        )),
        InputFormat::Text => Box::new(text::TextReader::new(
            unit.files.clone(),
            spec,
            reader.batch_bytes,
            progress,
        )),
        InputFormat::Warc => Box::new(warc::WarcReader::new(
            unit.files[0].clone(),
            spec,
            reader.batch_bytes,
            progress,
        )),
    }
}

/// Decodes a chunk; pure, so chunks can be decoded on any thread.
pub fn decode(chunk: Chunk, spec: &SourceSpec) -> Decoded {
    match chunk {
        Chunk::Lines {
            file,
            first_line,
            data,
        } => decode_lines(&data, &file, first_line, spec),
        Chunk::Records { file, records } => decode_records(&records, &file, spec),
        Chunk::Batch(b) => Decoded {
            batch: Some(b),
            ..Default::default()
        },
        Chunk::Rejects(rejects) => Decoded {
            rejects,
            ..Default::default()
        },
        Chunk::FileEnd { .. } => Decoded::default(),
    }
}

/// Counts bytes read from the underlying file for the progress bar.
pub(crate) struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

pub(crate) fn counting<R: Read>(inner: R, counter: Arc<AtomicU64>) -> Counting<R> {
    Counting { inner, counter }
}

/// A compression format, told by a stream's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// gzip (magic 1f 8b), every member read.
    Gzip,
    /// zstd (magic 28 b5 2f fd, or a skippable frame first).
    Zstd,
    /// Anything else: read as it is.
    Plain,
}

impl Codec {
    /// The codec whose magic `head` starts with (zstd's skippable frames too).
    pub fn sniff(head: &[u8]) -> Codec {
        match head {
            [0x1f, 0x8b, ..] => Codec::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Codec::Zstd,
            [b, 0x2a, 0x4d, 0x18, ..] if b & 0xf0 == 0x50 => Codec::Zstd,
            _ => Codec::Plain,
        }
    }

    /// The codec a file name suggests (any letter case).
    pub fn by_name(path: &Path) -> Codec {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.ends_with(".gz") || name.ends_with(".gzip") {
            Codec::Gzip
        } else if name.ends_with(".zst") || name.ends_with(".zstd") {
            Codec::Zstd
        } else {
            Codec::Plain
        }
    }
}

/// zstd windows up to 2 GiB (`zstd --long=31`); the window is allocated as
/// the frame asks, and output is bounded by the readers' own caps.
pub(crate) const ZSTD_WINDOW_LOG_MAX: u32 = 31;

/// Opens `path`, counting the bytes read from disk into `progress`, and
/// decompresses it by its first bytes (gzip, all members; zstd; else
/// plain). The name is only a hint: a mismatch is logged.
pub(crate) fn open_decompressed(
    path: &Path,
    progress: Arc<AtomicU64>,
) -> io::Result<Box<dyn Read + Send>> {
    use std::io::BufRead;
    let mut raw = io::BufReader::with_capacity(1 << 20, counting(File::open(path)?, progress));
    let codec = Codec::sniff(raw.fill_buf()?);
    let named = Codec::by_name(path);
    if codec != named {
        tracing::warn!(
            "{}: the name says {named:?} but the bytes are {codec:?}; read as {codec:?}",
            path.display()
        );
    }
    Ok(match codec {
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Codec::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(raw)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(d)
        }
        Codec::Plain => Box::new(raw),
    })
}

#[cfg(test)]
mod codec_tests {
    use super::*;
    use std::io::Write;

    fn read(path: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        open_decompressed(path, Arc::default())
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn the_bytes_decide_not_the_name() {
        let t = tempfile::tempdir().unwrap();
        let text = b"{\"text\":\"hi\"}\n".repeat(100);
        let zst = zstd::encode_all(&text[..], 3).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        for (name, bytes) in [
            ("zstd-named.gz", &zst),
            ("gzip-named.zst", &gz),
            ("plain-named.jsonl.gz", &text),
            ("UPPER.JSONL.GZ", &gz),
        ] {
            let p = t.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            assert_eq!(read(&p), text, "{name}");
        }
    }

    #[test]
    fn long_window_zstd_is_read() {
        let t = tempfile::tempdir().unwrap();
        let text: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        enc.long_distance_matching(true).unwrap();
        enc.window_log(31).unwrap();
        enc.write_all(&text).unwrap();
        let z = enc.finish().unwrap();
        let p = t.path().join("long.jsonl.zst");
        std::fs::write(&p, z).unwrap();
        assert_eq!(read(&p), text);
    }
}
