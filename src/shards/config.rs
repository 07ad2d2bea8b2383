//! `[output.megatron]`: how token shards are cut, split and mixed.

use serde::{Deserialize, Serialize};

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
