//! The manifest tables that the readers and writers own: `[[source]]`,
//! `[reader]` and `[output]`. `manifest` parses them as part of a manifest.

use serde::{Deserialize, Serialize};

use crate::shards::MegatronConfig;

/// One input: a set of files of one format, with licence and provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique name; part of every document id, so renaming a source changes ids.
    pub name: String,
    /// Glob patterns, relative to the manifest's folder unless absolute.
    pub paths: Vec<String>,
    pub format: InputFormat,
    /// JSON field or Parquet column holding the text.
    #[serde(default = "default_text_field")]
    pub text_field: String,
    /// JSON field or Parquet column holding the URL, if any.
    #[serde(default)]
    pub url_field: Option<String>,
    /// SPDX identifier or free text; recorded with every document.
    #[serde(alias = "license")]
    pub licence: String,
    /// Where the data came from (a URL or a package name).
    #[serde(default)]
    pub origin: Option<String>,
    /// Expected language (ISO 639-1), a hint for later stages.
    #[serde(default)]
    pub language: Option<String>,
    /// Sampling weight used by the mixture step.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

/// Input file formats. Compression of JSON Lines is taken from the extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// One JSON object per line; `.gz` and `.zst` are decompressed on the fly.
    Jsonl,
    /// Parquet files, e.g. a Hugging Face dataset's `data/*.parquet`.
    Parquet,
    /// Every matched file is one document of UTF-8 text.
    Text,
    /// WARC or WET files (plain, gzip or zstd per record, or compressed
    /// whole): WET text records and HTML responses become documents.
    Warc,
}

/// `[output]`: where kept documents go and in which formats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Output folder, relative to the manifest's folder unless absolute.
    pub dir: String,
    /// Formats for kept documents.
    #[serde(default = "default_formats")]
    pub formats: Vec<OutputFormat>,
    /// A shard is closed once this many bytes of text went into it.
    #[serde(default = "default_shard_bytes")]
    pub shard_bytes: u64,
    /// zstd level for Parquet pages and JSONL.zst shards.
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Token shards, splits and the mixture, for the `megatron` format.
    #[serde(default)]
    pub megatron: MegatronConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    Parquet,
    JsonlZst,
    /// Token ids as Megatron `.bin`/`.idx` shards (needs a `tokenize` stage).
    Megatron,
}

impl OutputFormat {
    /// The output folder's subfolder for this format.
    pub fn dir_name(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::JsonlZst => "jsonl",
            OutputFormat::Megatron => "megatron",
        }
    }
    /// The file extension of this format's shards.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::JsonlZst => "jsonl.zst",
            OutputFormat::Megatron => "bin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaderConfig {
    /// Documents larger than this are rejected as `too_large` without being
    /// held in memory.
    #[serde(default = "default_max_doc_bytes")]
    pub max_doc_bytes: u64,
    /// Target bytes of raw input per batch.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Most text files of a `text` source grouped into one unit of work.
    #[serde(default = "default_files_per_unit")]
    pub text_files_per_unit: usize,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            max_doc_bytes: default_max_doc_bytes(),
            batch_bytes: default_batch_bytes(),
            text_files_per_unit: default_files_per_unit(),
        }
    }
}

fn default_text_field() -> String {
    "text".into()
}
fn default_weight() -> f64 {
    1.0
}
fn default_formats() -> Vec<OutputFormat> {
    vec![OutputFormat::Parquet, OutputFormat::JsonlZst]
}
fn default_shard_bytes() -> u64 {
    256 << 20
}
fn default_zstd_level() -> i32 {
    3
}
fn default_max_doc_bytes() -> u64 {
    64 << 20
}
fn default_batch_bytes() -> usize {
    4 << 20
}
fn default_files_per_unit() -> usize {
    1000
}
