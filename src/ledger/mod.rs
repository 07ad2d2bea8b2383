//! Where every document that is not kept is accounted for, and every kept
//! one whose words a stage changed.
//!
//! A document is either kept (it reaches the output shards), dropped by a
//! stage for a [`Reason`], or rejected by a reader because it could not be
//! read. Dropped and rejected documents get one ledger row each, and
//! [`Stats`] counts all three so that `read = kept + dropped + rejected` can
//! be checked at the end of every run. A stage that rewrites text (`pii`
//! redaction) adds a row of kind `modified` for each document it changed;
//! the document goes on, and those rows are not in that sum.

mod stats;

use std::fs::File;
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

pub use stats::{FileStats, FileStatus, Stats};

/// Why a document did not reach the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// A WARC record whose framing, gzip member or headers are broken (the
    /// byte offset is in the ledger row).
    MalformedRecord,
    /// An HTML page nested deeper than the extractor takes (`reader.max_html_depth`).
    TooDeep,
    // Dropped by a stage.
    /// Nothing left after normalization.
    EmptyAfterNormalize,
    /// Same normalized text as an earlier document (its id is in `detail`).
    ExactDuplicate,
    /// A near duplicate (MinHash-LSH) of the document kept (its id is in `detail`).
    NearDuplicate,
    /// Nothing left once repeated lines or paragraphs were removed.
    RepeatedLinesOnly,
    /// Too few words left once repeated lines or paragraphs were removed.
    TooFewWordsAfterRepeated,
    TooShort,
    TooLong,
    TooFewWords,
    TooManyWords,
    // Dropped by the lid stage.
    /// The top language holds less than `doc_threshold` of the bytes.
    MixedLanguage,
    /// No line reached the confidence threshold.
    LanguageUnidentified,
    /// Not one of the manifest's `languages`.
    LanguageNotAllowed,
    // Dropped by the quality stage; names follow the rules' papers.
    QualityEmpty,
    GopherShortDoc,
    GopherLongDoc,
    GopherShortWords,
    GopherLongWords,
    GopherHashes,
    GopherEllipses,
    GopherBulletLines,
    GopherEllipsisLines,
    GopherAlphaWords,
    GopherStopWords,
    GopherDupParagraphs,
    GopherDupParagraphChars,
    GopherDupLines,
    GopherDupLineChars,
    GopherTop2Gram,
    GopherTop3Gram,
    GopherTop4Gram,
    GopherDup5Grams,
    GopherDup6Grams,
    GopherDup7Grams,
    GopherDup8Grams,
    GopherDup9Grams,
    GopherDup10Grams,
    C4LoremIpsum,
    C4CurlyBracket,
    C4TooFewSentences,
    FinewebLinePunct,
    FinewebShortLines,
    FinewebCharDup,
    FinewebList,
    OscarTiny,
    OscarShortSentences,
    OscarHeader,
    OscarFooter,
    OscarNoisy,
    CurateLowScore,
    // Dropped by the perplexity stage.
    /// Perplexity above the language's `max` (threshold filter).
    PerplexityTooHigh,
    /// In a perplexity bucket the manifest does not keep (percentile filter).
    PerplexityBucket,
    /// Too well predicted by the model of unwanted content (harmful filter).
    HarmfulPerplexity,
    // Dropped by the url_filter stage.
    /// The URL's domain or path is in a dropped blocklist category.
    UrlBlocklisted,
    /// More of the words than `max_ratio` are on the language's banned list.
    BannedWords,
    // Text changed by a stage (kind `modified`: the document is kept).
    /// PII replaced by typed placeholders (the counts per kind are in `detail`).
    PiiRedacted,
}

impl Reason {
    /// Every reason, for parsing names back.
    pub const ALL: [Reason; 64] = [
        Reason::MalformedJson,
        Reason::MissingTextField,
        Reason::InvalidUtf8,
        Reason::TooLarge,
        Reason::EmptyText,
        Reason::TruncatedFile,
        Reason::ReadError,
        Reason::MalformedRecord,
        Reason::TooDeep,
        Reason::EmptyAfterNormalize,
        Reason::ExactDuplicate,
        Reason::NearDuplicate,
        Reason::RepeatedLinesOnly,
        Reason::TooFewWordsAfterRepeated,
        Reason::TooShort,
        Reason::TooLong,
        Reason::TooFewWords,
        Reason::TooManyWords,
        Reason::MixedLanguage,
        Reason::LanguageUnidentified,
        Reason::LanguageNotAllowed,
        Reason::QualityEmpty,
        Reason::GopherShortDoc,
        Reason::GopherLongDoc,
        Reason::GopherShortWords,
        Reason::GopherLongWords,
        Reason::GopherHashes,
        Reason::GopherEllipses,
        Reason::GopherBulletLines,
        Reason::GopherEllipsisLines,
        Reason::GopherAlphaWords,
        Reason::GopherStopWords,
        Reason::GopherDupParagraphs,
        Reason::GopherDupParagraphChars,
        Reason::GopherDupLines,
        Reason::GopherDupLineChars,
        Reason::GopherTop2Gram,
        Reason::GopherTop3Gram,
        Reason::GopherTop4Gram,
        Reason::GopherDup5Grams,
        Reason::GopherDup6Grams,
        Reason::GopherDup7Grams,
        Reason::GopherDup8Grams,
        Reason::GopherDup9Grams,
        Reason::GopherDup10Grams,
        Reason::C4LoremIpsum,
        Reason::C4CurlyBracket,
        Reason::C4TooFewSentences,
        Reason::FinewebLinePunct,
        Reason::FinewebShortLines,
        Reason::FinewebCharDup,
        Reason::FinewebList,
        Reason::OscarTiny,
        Reason::OscarShortSentences,
        Reason::OscarHeader,
        Reason::OscarFooter,
        Reason::OscarNoisy,
        Reason::CurateLowScore,
        Reason::PerplexityTooHigh,
        Reason::PerplexityBucket,
        Reason::HarmfulPerplexity,
        Reason::UrlBlocklisted,
        Reason::BannedWords,
        Reason::PiiRedacted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedJson => "malformed_json",
            Reason::MissingTextField => "missing_text_field",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::TooLarge => "too_large",
            Reason::EmptyText => "empty_text",
            Reason::TruncatedFile => "truncated_file",
            Reason::ReadError => "read_error",
            Reason::MalformedRecord => "malformed_record",
            Reason::TooDeep => "too_deep",
            Reason::EmptyAfterNormalize => "empty_after_normalize",
            Reason::ExactDuplicate => "exact_duplicate",
            Reason::NearDuplicate => "near_duplicate",
            Reason::RepeatedLinesOnly => "repeated_lines_only",
            Reason::TooFewWordsAfterRepeated => "too_few_words_after_repeated",
            Reason::TooShort => "too_short",
            Reason::TooLong => "too_long",
            Reason::TooFewWords => "too_few_words",
            Reason::TooManyWords => "too_many_words",
            Reason::MixedLanguage => "mixed_language",
            Reason::LanguageUnidentified => "language_unidentified",
            Reason::LanguageNotAllowed => "language_not_allowed",
            Reason::QualityEmpty => "quality_empty",
            Reason::GopherShortDoc => "gopher_short_doc",
            Reason::GopherLongDoc => "gopher_long_doc",
            Reason::GopherShortWords => "gopher_short_words",
            Reason::GopherLongWords => "gopher_long_words",
            Reason::GopherHashes => "gopher_hashes",
            Reason::GopherEllipses => "gopher_ellipses",
            Reason::GopherBulletLines => "gopher_bullet_lines",
            Reason::GopherEllipsisLines => "gopher_ellipsis_lines",
            Reason::GopherAlphaWords => "gopher_alpha_words",
            Reason::GopherStopWords => "gopher_stop_words",
            Reason::GopherDupParagraphs => "gopher_dup_paragraphs",
            Reason::GopherDupParagraphChars => "gopher_dup_paragraph_chars",
            Reason::GopherDupLines => "gopher_dup_lines",
            Reason::GopherDupLineChars => "gopher_dup_line_chars",
            Reason::GopherTop2Gram => "gopher_top_2_gram",
            Reason::GopherTop3Gram => "gopher_top_3_gram",
            Reason::GopherTop4Gram => "gopher_top_4_gram",
            Reason::GopherDup5Grams => "gopher_dup_5_grams",
            Reason::GopherDup6Grams => "gopher_dup_6_grams",
            Reason::GopherDup7Grams => "gopher_dup_7_grams",
            Reason::GopherDup8Grams => "gopher_dup_8_grams",
            Reason::GopherDup9Grams => "gopher_dup_9_grams",
            Reason::GopherDup10Grams => "gopher_dup_10_grams",
            Reason::C4LoremIpsum => "c4_lorem_ipsum",
            Reason::C4CurlyBracket => "c4_curly_bracket",
            Reason::C4TooFewSentences => "c4_too_few_sentences",
            Reason::FinewebLinePunct => "fineweb_line_punct",
            Reason::FinewebShortLines => "fineweb_short_lines",
            Reason::FinewebCharDup => "fineweb_char_dup",
            Reason::FinewebList => "fineweb_list",
            Reason::OscarTiny => "oscar_tiny",
            Reason::OscarShortSentences => "oscar_short_sentences",
            Reason::OscarHeader => "oscar_header",
            Reason::OscarFooter => "oscar_footer",
            Reason::OscarNoisy => "oscar_noisy",
            Reason::CurateLowScore => "curate_low_score",
            Reason::PerplexityTooHigh => "perplexity_too_high",
            Reason::PerplexityBucket => "perplexity_bucket",
            Reason::HarmfulPerplexity => "harmful_perplexity",
            Reason::UrlBlocklisted => "url_blocklisted",
            Reason::BannedWords => "banned_words",
            Reason::PiiRedacted => "pii_redacted",
        }
    }

    /// The reason for a top n-gram rule, n in 2..=4 (checked with the config).
    pub fn top_n_gram(n: usize) -> Reason {
        match n {
            2 => Reason::GopherTop2Gram,
            3 => Reason::GopherTop3Gram,
            _ => Reason::GopherTop4Gram,
        }
    }

    /// The reason for a duplicate n-gram rule, n in 5..=10 (checked with the config).
    pub fn dup_n_grams(n: usize) -> Reason {
        match n {
            5 => Reason::GopherDup5Grams,
            6 => Reason::GopherDup6Grams,
            7 => Reason::GopherDup7Grams,
            8 => Reason::GopherDup8Grams,
            9 => Reason::GopherDup9Grams,
            _ => Reason::GopherDup10Grams,
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
            | Reason::ReadError
            | Reason::MalformedRecord
            | Reason::TooDeep => Kind::Rejected,
            Reason::PiiRedacted => Kind::Modified,
            _ => Kind::Dropped,
        }
    }
}

impl std::str::FromStr for Reason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Reason::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown reason {s:?}"))
    }
}

// Serialized by name, the same name the ledger uses.
impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Dropped by a stage's decision, rejected as unreadable, or kept with its
/// text changed by a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Dropped,
    Rejected,
    Modified,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dropped => "dropped",
            Kind::Rejected => "rejected",
            Kind::Modified => "modified",
        }
    }
}

/// One document that did not reach the output, or whose text a stage changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Bytes of text the document had (0 when it could not be read; before
    /// the change, for a modified one).
    pub bytes: u64,
    /// The columns the stages had added when it was dropped (the dropping
    /// stage's included), as a JSON object; empty for rejected records.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub annotations: String,
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
        Field::new("annotations", DataType::Utf8, false),
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
    let mut annotations = StringBuilder::new();
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
        annotations.append_value(&r.annotations);
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
        Arc::new(annotations.finish()),
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
    let file = crate::files::journal::create_output(path)?;
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

/// The rows of a ledger Parquet file: what [`rows_to_batch`] wrote.
pub fn read_rows(path: &Path) -> Result<Vec<LedgerRow>, parquet::errors::ParquetError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::UInt64Type;
    let bad =
        |m: String| parquet::errors::ParquetError::General(format!("not a forja ledger: {m}"));
    let mut rows = Vec::new();
    for b in read_parquet(path)? {
        let col = |n: &str| {
            b.column_by_name(n)
                .ok_or_else(|| bad(format!("no `{n}` column")))
        };
        let (id, source, file, stage, reason, detail) = (
            col("id")?.as_string::<i32>(),
            col("source")?.as_string::<i32>(),
            col("file")?.as_string::<i32>(),
            col("stage")?.as_string::<i32>(),
            col("reason")?.as_string::<i32>(),
            col("detail")?.as_string::<i32>(),
        );
        let (line, bytes) = (
            col("line")?.as_primitive::<UInt64Type>(),
            col("bytes")?.as_primitive::<UInt64Type>(),
        );
        // Ledgers written before forja kept annotations have no such column.
        let annotations = b
            .column_by_name("annotations")
            .map(|c| c.as_string::<i32>());
        for r in 0..b.num_rows() {
            rows.push(LedgerRow {
                id: id.value(r).into(),
                source: source.value(r).into(),
                file: file.value(r).into(),
                line: line.value(r),
                stage: stage.value(r).into(),
                reason: reason.value(r).parse().map_err(bad)?,
                detail: detail.value(r).into(),
                bytes: bytes.value(r),
                annotations: annotations
                    .map(|a| a.value(r).to_string())
                    .unwrap_or_default(),
            });
        }
    }
    Ok(rows)
}

/// Concatenates ledger parts into one file, one batch in memory at a time.
pub fn concat_parquet(
    parts: impl IntoIterator<Item = impl AsRef<Path>>,
    path: &Path,
) -> Result<(), parquet::errors::ParquetError> {
    let file = crate::files::journal::create_output(path)?;
    let mut w = ArrowWriter::try_new(file, ledger_schema(), Some(writer_props()))?;
    for part in parts {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(part)?)?.build()?;
        for b in reader {
            let b = b.map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
            if b.num_rows() > 0 {
                w.write(&b)?;
            }
        }
    }
    w.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_stable_names_and_kinds() {
        assert_eq!(Reason::ExactDuplicate.as_str(), "exact_duplicate");
        assert_eq!(Reason::TooLarge.kind(), Kind::Rejected);
        assert_eq!(Reason::TooShort.kind(), Kind::Dropped);
        assert_eq!(Reason::PiiRedacted.kind(), Kind::Modified);
        let json = serde_json::to_string(&Reason::InvalidUtf8).unwrap();
        assert_eq!(json, "\"invalid_utf8\"");
        for r in Reason::ALL {
            let back: Reason = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
            assert_eq!(back, r);
        }
        let names: std::collections::HashSet<&str> =
            Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len(), "names are distinct");
    }

    #[test]
    fn ledger_rows_read_back_as_written() {
        let rows = vec![LedgerRow {
            id: "s:1".into(),
            source: "s".into(),
            file: "f.jsonl".into(),
            line: 7,
            stage: "exact_dedup".into(),
            reason: Reason::ExactDuplicate,
            detail: "s:0".into(),
            bytes: 12,
            annotations: r#"{"dup_of":"s:0"}"#.into(),
        }];
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.parquet");
        write_parquet(&p, [rows_to_batch(&rows)]).unwrap();
        assert_eq!(read_rows(&p).unwrap(), rows);
    }

    #[test]
    fn ledger_round_trips_through_parquet() {
        use arrow_array::Array;
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
            annotations: String::new(),
        }];
        write_parquet(&path, [rows_to_batch(&rows)]).unwrap();
        let joined = dir.path().join("joined.parquet");
        concat_parquet([&path, &path], &joined).unwrap();
        let batches = read_parquet(&joined).unwrap();
        let reasons: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let r = b
                    .column(6)
                    .as_any()
                    .downcast_ref::<arrow_array::StringArray>()
                    .unwrap();
                (0..r.len())
                    .map(|i| r.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(reasons, vec!["malformed_json", "malformed_json"]);
    }
}
