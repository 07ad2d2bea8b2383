//! The pipeline manifest: what to read, which stages to run, where to write.
//!
//! A manifest is TOML with a top-level `version`. It is parsed with serde into
//! typed structs (`deny_unknown_fields` everywhere, stages tagged by `type`),
//! then checked as a whole by [`check`] so that every problem is reported with
//! its line and column before a single input byte is read.

mod check;
#[cfg(test)]
mod stage_tests;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::io::{InputFormat, OutputConfig, OutputFormat, ReaderConfig, SourceConfig};
pub use crate::shards::MegatronConfig;
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

/// A manifest together with the folder its relative paths are resolved from.
#[derive(Debug, Clone)]
pub struct LoadedManifest {
    /// The parsed and checked manifest.
    pub manifest: Manifest,
    /// The manifest file as given.
    pub path: PathBuf,
    /// Its folder: the base of relative paths.
    pub base: PathBuf,
    /// The exact text, hashed into the run record.
    pub text: String,
    /// Per source: every file its patterns match, sorted, once, with its size.
    pub inputs: Vec<Vec<(PathBuf, u64)>>,
    /// What is allowed but likely not meant (a stage that reads a column no
    /// earlier stage adds, and works from a fallback), located like problems.
    pub warnings: Vec<Problem>,
}

impl LoadedManifest {
    /// Every unit of work of every source, in manifest order.
    pub fn units(&self) -> Result<Vec<crate::io::Unit>, crate::io::InputError> {
        crate::io::plan_units(
            &self.manifest.sources,
            &self.inputs,
            &self.base,
            &self.manifest.reader,
        )
    }

    /// Resolves a path written in the manifest.
    pub fn resolve(&self, p: &str) -> PathBuf {
        crate::files::resolve(&self.base, p)
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
        crate::files::is_url(d).then_some(d.trim_end_matches('/'))
    }
}

/// Hash of the resolved manifest: comments and formatting do not count.
pub fn manifest_hash(m: &LoadedManifest) -> String {
    // How the run is submitted does not change what it writes.
    let mut what = m.manifest.clone();
    what.slurm = Default::default();
    let canonical = toml::to_string(&what).unwrap_or_else(|_| m.text.clone());
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(canonical.as_bytes()))
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
    fn unknown_fields_are_refused() {
        let bad = FULL.replace("text_field = \"content\"", "txt_field = \"content\"");
        let err = toml::from_str::<Manifest>(&bad).unwrap_err();
        assert!(err.message().contains("txt_field"), "{err}");
    }
}
