//! Readers and writers: the only code that touches input and output files.
//!
//! Inputs are planned into *units* of work (one JSON Lines, Parquet or WARC
//! file, or a group of text files) with a global index, so that ranks can split
//! them deterministically and completion can be tracked per unit. A reader
//! turns a unit into [`Chunk`]s with bounded memory; decoding a chunk into a
//! batch is pure and runs in parallel.

mod config;
mod jsonl;
mod parquet_in;
pub mod remote;
mod text;
mod walk;
mod warc;
mod writer;

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use arrow_array::RecordBatch;

use crate::ledger::{FileStatus, LedgerRow, Reason};

pub use config::{InputFormat, OutputConfig, OutputFormat, ReaderConfig, SourceConfig};
pub use jsonl::decode_lines;
pub use walk::output_overlap;
pub(crate) use warc::fuzz_page;
pub use warc::{decode_records, RawRecords};
pub use writer::{for_documents, jsonl_frame, ShardWriter};

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
    if crate::files::is_url(pattern) {
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
    let full = crate::files::resolve(base, pattern);
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

/// Lists every unit of every source, in manifest order, from the inputs
/// that loading the manifest found (`found[i]`: source `i`'s files and
/// sizes; names recorded relative to `base`), checking that Parquet files
/// have the configured columns.
pub fn plan_units(
    sources: &[SourceConfig],
    found: &[Vec<(PathBuf, u64)>],
    base: &Path,
    reader: &ReaderConfig,
) -> Result<Vec<Unit>, InputError> {
    let mut units = Vec::new();
    for (si, source) in sources.iter().enumerate() {
        let mut inputs = Vec::with_capacity(found[si].len());
        for (path, size) in &found[si] {
            let url = path.to_str().filter(|p| crate::files::is_url(p));
            // A remote Parquet file's columns are checked once it is
            // downloaded, before its unit is read (`localize`).
            if source.format == InputFormat::Parquet && url.is_none() {
                parquet_in::check_schema(path, source)?;
            }
            inputs.push(InputFile {
                path: path.clone(),
                rel: match url {
                    Some(u) => u.into(),
                    None => crate::files::relative_to(path, base).into(),
                },
                size: *size,
            });
        }
        match source.format {
            InputFormat::Text => {
                for group in inputs.chunks(reader.text_files_per_unit) {
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
            .filter(|p| crate::files::is_url(p))
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
