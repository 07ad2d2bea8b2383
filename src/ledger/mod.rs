//! Where every document that is not kept is accounted for.
//!
//! A document is either kept (it reaches the output shards), dropped by a
//! stage for a [`Reason`], or rejected by a reader because it could not be
//! read. Dropped and rejected documents get one ledger row each, and
//! [`Stats`] counts all three so that `read = kept + dropped + rejected` can
//! be checked at the end of every run.

mod stats;

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

pub use stats::{FileStats, FileStatus, SourceCounts, StageCounts, Stats};

/// Why a document did not reach the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    // Rejected by a reader.
    /// The line is not a JSON object.
    MalformedJson,
    /// The record has no text field, or it is not a string.
    MissingTextField,
    /// The bytes are not UTF-8.
    InvalidUtf8,
    /// Larger than `reader.max_doc_bytes`.
    TooLarge,
    /// The text field is present but empty.
    EmptyText,
    /// The compressed stream ended or broke before this document.
    TruncatedFile,
    /// An I/O error while reading (details in the ledger row).
    ReadError,
    // Dropped by a stage.
    /// Nothing left after normalization.
    EmptyAfterNormalize,
    /// Same normalized text as an earlier document (its id is in `detail`).
    ExactDuplicate,
    TooShort,
    TooLong,
    TooFewWords,
    TooManyWords,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedJson => "malformed_json",
            Reason::MissingTextField => "missing_text_field",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::TooLarge => "too_large",
            Reason::EmptyText => "empty_text",
            Reason::TruncatedFile => "truncated_file",
            Reason::ReadError => "read_error",
            Reason::EmptyAfterNormalize => "empty_after_normalize",
            Reason::ExactDuplicate => "exact_duplicate",
            Reason::TooShort => "too_short",
            Reason::TooLong => "too_long",
            Reason::TooFewWords => "too_few_words",
            Reason::TooManyWords => "too_many_words",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Reason::MalformedJson
            | Reason::MissingTextField
            | Reason::InvalidUtf8
            | Reason::TooLarge
            | Reason::EmptyText
            | Reason::TruncatedFile
            | Reason::ReadError => Kind::Rejected,
            _ => Kind::Dropped,
        }
    }
}

/// Dropped by a stage's decision, or rejected as unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Dropped,
    Rejected,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dropped => "dropped",
            Kind::Rejected => "rejected",
        }
    }
}

/// One document that did not reach the output.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    pub id: String,
    pub source: String,
    pub file: String,
    pub line: u64,
    /// `read` for rejections, else the stage's name.
    pub stage: String,
    pub reason: Reason,
    /// Human-readable specifics: the parse error, the sizes, the kept duplicate's id.
    pub detail: String,
    /// Bytes of text the document had (0 when it could not be read).
    pub bytes: u64,
}

pub fn ledger_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("line", DataType::UInt64, false),
        Field::new("stage", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("bytes", DataType::UInt64, false),
    ]))
}

pub fn rows_to_batch(rows: &[LedgerRow]) -> RecordBatch {
    let mut id = StringBuilder::new();
    let mut source = StringBuilder::new();
    let mut file = StringBuilder::new();
    let mut line = UInt64Builder::new();
    let mut stage = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut detail = StringBuilder::new();
    let mut bytes = UInt64Builder::new();
    for r in rows {
        id.append_value(&r.id);
        source.append_value(&r.source);
        file.append_value(&r.file);
        line.append_value(r.line);
        stage.append_value(&r.stage);
        kind.append_value(r.reason.kind().as_str());
        reason.append_value(r.reason.as_str());
        detail.append_value(&r.detail);
        bytes.append_value(r.bytes);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(source.finish()),
        Arc::new(file.finish()),
        Arc::new(line.finish()),
        Arc::new(stage.finish()),
        Arc::new(kind.finish()),
        Arc::new(reason.finish()),
        Arc::new(detail.finish()),
        Arc::new(bytes.finish()),
    ];
    RecordBatch::try_new(ledger_schema(), columns).expect("ledger columns match schema")
}

fn writer_props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_created_by(concat!("forja ", env!("CARGO_PKG_VERSION")).to_string())
        .build()
}

/// Writes ledger batches as one Parquet file (the caller handles atomic rename).
pub fn write_parquet(
    path: &Path,
    batches: impl IntoIterator<Item = RecordBatch>,
) -> Result<(), parquet::errors::ParquetError> {
    let file = File::create(path)?;
    let mut w = ArrowWriter::try_new(file, ledger_schema(), Some(writer_props()))?;
    for b in batches {
        if b.num_rows() > 0 {
            w.write(&b)?;
        }
    }
    w.close()?;
    Ok(())
}

/// Reads every batch of a ledger Parquet file.
pub fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>, parquet::errors::ParquetError> {
    let file = File::open(path)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
}

/// Reason counts of a ledger file, for `forja stats` and tests.
pub fn count_reasons(path: &Path) -> io::Result<std::collections::BTreeMap<String, u64>> {
    use arrow_array::{Array, StringArray};
    let batches = read_parquet(path).map_err(io::Error::other)?;
    let mut out = std::collections::BTreeMap::new();
    for b in batches {
        let reasons = b
            .column(6)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| io::Error::other("ledger reason column is not a string"))?;
        for i in 0..reasons.len() {
            *out.entry(reasons.value(i).to_string()).or_default() += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_stable_names_and_kinds() {
        assert_eq!(Reason::ExactDuplicate.as_str(), "exact_duplicate");
        assert_eq!(Reason::TooLarge.kind(), Kind::Rejected);
        assert_eq!(Reason::TooShort.kind(), Kind::Dropped);
        let json = serde_json::to_string(&Reason::InvalidUtf8).unwrap();
        assert_eq!(json, "\"invalid_utf8\"");
    }

    #[test]
    fn ledger_round_trips_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.parquet");
        let rows = vec![LedgerRow {
            id: "s:1".into(),
            source: "s".into(),
            file: "f".into(),
            line: 7,
            stage: "read".into(),
            reason: Reason::MalformedJson,
            detail: "expected value".into(),
            bytes: 0,
        }];
        write_parquet(&path, [rows_to_batch(&rows)]).unwrap();
        let counts = count_reasons(&path).unwrap();
        assert_eq!(counts.get("malformed_json"), Some(&1));
    }
}
