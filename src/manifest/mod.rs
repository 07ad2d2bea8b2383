//! The pipeline manifest: what to read, which stages to run, where to write.
//!
//! A manifest is TOML with a top-level `version`. It is parsed with serde into
//! typed structs (`deny_unknown_fields` everywhere, stages tagged by `type`),
//! then checked as a whole by [`check`] so that every problem is reported with
//! its line and column before a single input byte is read.

mod check;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::stages::StageConfig;

pub use check::{load, parse, Problem, Problems};

/// The manifest format version this build reads.
pub const MANIFEST_VERSION: u32 = 1;

/// A parsed and checked manifest, with paths still as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version; must be [`MANIFEST_VERSION`].
    pub version: u32,
    /// A short name for the recipe, used in logs and the run record.
    #[serde(default)]
    pub name: String,
    /// Inputs, in the order their documents are read.
    #[serde(rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// Stages, applied in order.
    #[serde(rename = "stage", default)]
    pub stages: Vec<StageConfig>,
    /// Where and how kept documents are written.
    pub output: OutputConfig,
    /// Reader limits and batching.
    #[serde(default)]
    pub reader: ReaderConfig,
    /// How `forja slurm` submits the run (not part of the run's hash).
    #[serde(default)]
    pub slurm: crate::cluster::SlurmConfig,
}

impl Manifest {
    /// Every source's input patterns, as written, in manifest order.
    pub fn patterns(&self) -> Vec<&str> {
        self.sources
            .iter()
            .flat_map(|s| s.paths.iter().map(String::as_str))
            .collect()
    }
}

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

/// Training shards: Megatron-LM / NeMo indexed datasets, one family per
/// split and language (and source, with `by_source`), mixed by a blend file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MegatronConfig {
    /// A shard is closed at the first document boundary at or past this many tokens.
    #[serde(default = "default_shard_tokens")]
    pub shard_tokens: u64,
    /// Percent of documents in train, validation and test.
    #[serde(default = "default_split")]
    pub split: [f64; 3],
    /// Seed of the per-document split draw (a hash of the document id).
    #[serde(default)]
    pub split_seed: u64,
    /// One family per language and source, so that source weights apply;
    /// otherwise the sources of a language share its shards.
    #[serde(default)]
    pub by_source: bool,
    /// Sampling factor per language (`lang` column, else the source's
    /// `language`, else `und`); 1 when not listed. The blend weights are
    /// tokens x language factor x source weight, normalised to sum to 1.
    #[serde(default)]
    pub factors: std::collections::BTreeMap<String, f64>,
}

impl Default for MegatronConfig {
    fn default() -> Self {
        MegatronConfig {
            shard_tokens: default_shard_tokens(),
            split: default_split(),
            split_seed: 0,
            by_source: false,
            factors: Default::default(),
        }
    }
}

fn default_shard_tokens() -> u64 {
    1 << 30
}
fn default_split() -> [f64; 3] {
    [98.0, 1.0, 1.0]
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
    pub fn dir_name(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::JsonlZst => "jsonl",
            OutputFormat::Megatron => "megatron",
        }
    }
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

/// A manifest together with the folder its relative paths are resolved from.
#[derive(Debug, Clone)]
pub struct LoadedManifest {
    pub manifest: Manifest,
    /// The manifest file as given.
    pub path: PathBuf,
    /// Its folder: the base of relative paths.
    pub base: PathBuf,
    /// The exact text, hashed into the run record.
    pub text: String,
    /// Per source: every file its patterns match, sorted, once, with its size.
    pub inputs: Vec<Vec<(PathBuf, u64)>>,
}

impl LoadedManifest {
    /// Resolves a path written in the manifest.
    pub fn resolve(&self, p: &str) -> PathBuf {
        resolve(&self.base, p)
    }

    /// The local output folder. With `dir = "s3://bucket/prefix"` it is a
    /// staging folder beside the manifest (`.forja-staging/bucket/prefix`),
    /// published to the bucket when the run completes.
    pub fn output_dir(&self) -> PathBuf {
        match self.output_url() {
            Some(url) => self
                .base
                .join(".forja-staging")
                .join(url.trim_start_matches("s3://")),
            None => self.resolve(&self.manifest.output.dir),
        }
    }

    /// `output.dir` when it names object storage.
    pub fn output_url(&self) -> Option<&str> {
        let d = self.manifest.output.dir.as_str();
        crate::io::remote::is_url(d).then_some(d.trim_end_matches('/'))
    }
}

pub(crate) fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    lexical_clean(&joined)
}

/// `path` relative to the folder `base`, whichever folder forja runs from.
///
/// This is the file name recorded in document ids and the ledger, so it must
/// not depend on the current directory or on how the manifest was named.
pub(crate) fn relative_to(path: &Path, base: &Path) -> String {
    let abs = |p: &Path| lexical_clean(&std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    let (p, b) = (abs(path), abs(base));
    let pc: Vec<_> = p.components().collect();
    let bc: Vec<_> = b.components().collect();
    let common = pc.iter().zip(&bc).take_while(|(x, y)| x == y).count();
    let mut rel = PathBuf::new();
    for _ in common..bc.len() {
        rel.push("..");
    }
    for c in &pc[common..] {
        rel.push(c);
    }
    rel.to_string_lossy().into_owned()
}

/// Removes `.` and `name/..` pairs without touching the file system, so
/// `manifests/../out` is shown as `out`.
pub(crate) fn lexical_clean(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
version = 1
name = "t"

[[source]]
name = "a"
paths = ["data/*.jsonl.zst"]
format = "jsonl"
text_field = "content"
url_field = "url"
licence = "CC-BY-4.0"
origin = "https://example.org"
language = "ca"
weight = 2.0

[[source]]
name = "b"
paths = ["hf/data/*.parquet"]
format = "parquet"
license = "MIT"

[[source]]
name = "c"
paths = ["txt/*.txt"]
format = "text"
licence = "MIT"

[[stage]]
type = "normalize"
mode = "annotate"

[[stage]]
type = "exact_dedup"

[[stage]]
type = "length"
min_words = 3
max_chars = 1000

[output]
dir = "out"
formats = ["parquet", "jsonl_zst"]
shard_bytes = 1000

[reader]
max_doc_bytes = 100
"#;

    #[test]
    fn every_variant_round_trips_through_toml() {
        let m: Manifest = toml::from_str(FULL).unwrap();
        assert_eq!(m.sources.len(), 3);
        assert_eq!(m.sources[1].licence, "MIT");
        assert_eq!(m.sources[2].format, InputFormat::Text);
        assert_eq!(m.stages.len(), 3);
        let text = toml::to_string(&m).unwrap();
        let back: Manifest = toml::from_str(&text).unwrap();
        assert_eq!(m, back);
    }

    #[test]
    fn relative_paths_resolve_from_the_manifest_folder() {
        let base = Path::new("manifests");
        assert_eq!(resolve(base, "../out/demo"), PathBuf::from("out/demo"));
        assert_eq!(resolve(base, "./x/../y"), PathBuf::from("manifests/y"));
        assert_eq!(resolve(Path::new("."), "../a"), PathBuf::from("../a"));
        assert_eq!(resolve(base, "/abs/p"), PathBuf::from("/abs/p"));
    }

    #[test]
    fn recorded_paths_are_relative_to_the_manifest_folder() {
        let cwd = std::env::current_dir().unwrap();
        let file = cwd.join("data/demo/a.jsonl");
        assert_eq!(
            relative_to(&file, Path::new("manifests")),
            "../data/demo/a.jsonl"
        );
        assert_eq!(
            relative_to(Path::new("data/demo/a.jsonl"), &cwd.join("manifests")),
            "../data/demo/a.jsonl"
        );
        assert_eq!(relative_to(Path::new("m/in/x"), Path::new("m")), "in/x");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let bad = FULL.replace("text_field = \"content\"", "txt_field = \"content\"");
        let err = toml::from_str::<Manifest>(&bad).unwrap_err();
        assert!(err.message().contains("txt_field"), "{err}");
    }
}
