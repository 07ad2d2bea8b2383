//! The `perplexity` stage's settings: the model, the filter (threshold,
//! percentile buckets or a harmful-content model), their checks, and the
//! per-language cut-offs the percentile filter finds.

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerplexityConfig {
    #[serde(default)]
    pub mode: Mode,
    /// A Hugging Face folder or a .gguf file, relative to the manifest's folder.
    pub model: String,
    #[serde(default)]
    pub precision: Precision,
    #[serde(default)]
    pub device: LmDevice,
    /// Window length in tokens (capped by the model's positions).
    #[serde(default = "default_context")]
    pub context: usize,
    /// Tokens each further window of a long document advances by.
    #[serde(default = "default_stride")]
    pub stride: usize,
    /// Windows per forward pass.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Score at most this many tokens of a document (0: all of it).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// Score only documents of these languages (the `lang` column); all when empty.
    #[serde(default)]
    pub languages: Vec<String>,
    #[serde(default)]
    pub filter: PerplexityFilter,
    /// Hash partitions of the languages for the percentile reduce step.
    #[serde(default = "default_partitions")]
    pub partitions: usize,
}

fn default_context() -> usize {
    ScoreOptions::default().context
}
fn default_stride() -> usize {
    ScoreOptions::default().stride
}
fn default_batch() -> usize {
    ScoreOptions::default().batch_size
}
fn default_max_tokens() -> usize {
    1024
}
fn default_partitions() -> usize {
    4
}
fn default_cutoffs() -> [f64; 2] {
    [30.0, 70.0]
}
fn default_keep() -> Vec<Bucket> {
    vec![Bucket::Head, Bucket::Middle]
}

/// What the stage drops on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PerplexityFilter {
    /// Drop documents whose perplexity is above `max` (or their language's).
    Threshold {
        #[serde(default)]
        max: Option<f64>,
        #[serde(default)]
        per_language: BTreeMap<String, f64>,
    },
    /// cc_net's buckets, per language.
    Percentile {
        /// The two percentiles that split head | middle | tail.
        #[serde(default = "default_cutoffs")]
        cutoffs: [f64; 2],
        #[serde(default = "default_keep")]
        keep: Vec<Bucket>,
    },
    /// Drop documents a model of unwanted content finds too likely.
    Harmful {
        /// That model: a Hugging Face folder or a .gguf file.
        model: String,
        #[serde(default)]
        min: Option<f64>,
        #[serde(default)]
        per_language: BTreeMap<String, f64>,
    },
}

impl Default for PerplexityFilter {
    fn default() -> Self {
        PerplexityFilter::Percentile {
            cutoffs: default_cutoffs(),
            keep: default_keep(),
        }
    }
}

/// A percentile bucket, lowest perplexity first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Head,
    Middle,
    Tail,
}

impl Bucket {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Bucket::Head => "head",
            Bucket::Middle => "middle",
            Bucket::Tail => "tail",
        }
    }
}

impl PerplexityConfig {
    pub fn new(model: impl Into<String>) -> Self {
        PerplexityConfig {
            mode: Mode::default(),
            model: model.into(),
            precision: Precision::default(),
            device: LmDevice::default(),
            context: default_context(),
            stride: default_stride(),
            batch_size: default_batch(),
            max_tokens: default_max_tokens(),
            languages: Vec::new(),
            filter: PerplexityFilter::default(),
            partitions: default_partitions(),
        }
    }

    pub(super) fn options(&self) -> ScoreOptions {
        ScoreOptions {
            context: self.context,
            stride: self.stride,
            batch_size: self.batch_size,
            max_tokens: self.max_tokens,
        }
    }

    pub fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        let mut v: Vec<(Option<&'static str>, String)> = self
            .options()
            .problems()
            .into_iter()
            .map(|(f, m)| (Some(f), m))
            .collect();
        if self.model.is_empty() {
            v.push((
                Some("model"),
                "the path of a model folder or .gguf file".into(),
            ));
        }
        if self.partitions == 0 || self.partitions > 4096 {
            v.push((Some("partitions"), "must be in 1..=4096".into()));
        }
        let positive = |x: &f64| x.is_finite() && *x > 0.0;
        match &self.filter {
            PerplexityFilter::Threshold { max, per_language }
            | PerplexityFilter::Harmful {
                min: max,
                per_language,
                ..
            } => {
                if max.is_some_and(|m| !positive(&m)) || !per_language.values().all(positive) {
                    v.push((Some("filter"), "perplexity limits must be positive".into()));
                }
                if max.is_none() && per_language.is_empty() {
                    v.push((
                        Some("filter"),
                        "give a limit (`max`/`min`) or `per_language` limits".into(),
                    ));
                }
            }
            PerplexityFilter::Percentile { cutoffs, keep } => {
                let [a, b] = *cutoffs;
                if !(0.0 < a && a < b && b < 100.0) {
                    v.push((
                        Some("filter"),
                        format!("cutoffs {a} and {b} must rise within (0, 100)"),
                    ));
                }
                if keep.is_empty() {
                    v.push((Some("filter"), "`keep` names no bucket".into()));
                }
            }
        }
        if let PerplexityFilter::Harmful { model, .. } = &self.filter {
            if model.is_empty() {
                v.push((
                    Some("filter"),
                    "the harmful filter needs its `model`".into(),
                ));
            }
        }
        v
    }

    pub(super) fn limit(&self, lang: &str) -> Option<f64> {
        match &self.filter {
            PerplexityFilter::Threshold { max, per_language }
            | PerplexityFilter::Harmful {
                min: max,
                per_language,
                ..
            } => per_language.get(lang).copied().or(*max),
            PerplexityFilter::Percentile { .. } => None,
        }
    }
}

/// Each language's two cut-offs, as the cluster step found them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cutoffs {
    pub percentiles: [f64; 2],
    /// Language → (scored documents, [first cut-off, second cut-off]).
    pub languages: BTreeMap<String, LanguageCutoffs>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LanguageCutoffs {
    pub documents: u64,
    pub cutoffs: [f64; 2],
}

/// The perplexity at percentile `q` of ascending `sorted` (nearest rank),
/// so that bucketing by `<=` puts `ceil(q·n/100)` distinct values at or
/// below it.
pub fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = ((q / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}
