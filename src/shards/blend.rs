//! The mixture: a weight per shard, proportional to its tokens times its
//! language's factor times its source's weight, summing to 1 per split.
//!
//! Written beside the shards:
//! - `blend.json`: `{"train": [w, prefix, ...], "valid": [...], "test": [...]}`,
//!   the file Megatron-LM's `--per-split-data-args-path` takes; NeMo's
//!   `model.data.data_prefix` takes the same lists (its key is `validation`);
//! - `train.blend`, `valid.blend`, `test.blend`: the same pairs, one per
//!   line, for `--train-data-path $(cat train.blend)`;
//! - `shares.tsv`: per language the documents, the tokens, the factor, and
//!   the share of the training mixture before and after weighting;
//!   `shares_by_source.tsv` the same per language and source, when families
//!   are per source.
//!
//! Prefixes are relative to the `megatron` folder unless a root is given.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::family::Family;
use super::megatron::ShardError;
use super::parts::Split;

/// Everything the weights depend on, recorded with the families so that
/// `forja blend` can recompute them, with other factors if asked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mixture {
    /// Per language; 1 when not listed.
    pub factors: BTreeMap<String, f64>,
    /// Per source; applied when families are per source.
    pub source_weights: BTreeMap<String, f64>,
}

impl Mixture {
    pub fn factor(&self, f: &Family) -> f64 {
        let lang = self.factors.get(&f.lang).copied().unwrap_or(1.0);
        let source = f
            .source
            .as_ref()
            .and_then(|s| self.source_weights.get(s))
            .copied()
            .unwrap_or(1.0);
        lang * source
    }
}

/// `megatron/families.json`: the families of a finished run and its mixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Families {
    /// The factors and weights the blend was made with.
    pub mixture: Mixture,
    /// Every family of shards.
    pub families: Vec<Family>,
}

impl Families {
    /// The file name, in the `megatron` folder.
    pub const FILE: &'static str = "families.json";

    /// Reads `dir/families.json`.
    pub fn load(dir: &Path) -> Result<Self, ShardError> {
        let path = dir.join(Self::FILE);
        let bytes = std::fs::read(&path).map_err(|source| ShardError::Io {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ShardError::Format {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Writes `dir/families.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), ShardError> {
        let path = dir.join(Self::FILE);
        let mut bytes = serde_json::to_vec_pretty(self).expect("families serialize");
        bytes.push(b'\n');
        crate::files::atomic_write(&path, &bytes).map_err(|source| ShardError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

/// One row of the share table (training split).
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    /// The language.
    pub lang: String,
    /// The source, with `by_source`.
    pub source: Option<String>,
    /// Documents in the training split.
    pub documents: u64,
    /// Tokens in the training split.
    pub tokens: u64,
    /// The language's sampling factor.
    pub factor: f64,
    /// Share of the training tokens as they are.
    pub natural: f64,
    /// Share of the training mixture after weighting.
    pub weighted: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Blend {
    /// Per split: (weight, prefix) per shard, in family and shard order.
    pub splits: BTreeMap<Split, Vec<(f64, String)>>,
    pub shares: Vec<Share>,
}

/// Computes the weights of every shard and the training shares.
pub fn blend(fams: &Families) -> Blend {
    let mut splits = BTreeMap::new();
    for split in Split::ALL {
        let members: Vec<&Family> = fams
            .families
            .iter()
            .filter(|f| f.split == split.name())
            .collect();
        let total: f64 = members
            .iter()
            .map(|f| f.tokens() as f64 * fams.mixture.factor(f))
            .sum();
        let mut entries = Vec::new();
        for f in &members {
            let factor = fams.mixture.factor(f);
            for s in &f.shards {
                let w = if total > 0.0 {
                    s.tokens as f64 * factor / total
                } else {
                    0.0
                };
                // A zero factor leaves a language out: Megatron would
                // otherwise still open its shards.
                if w > 0.0 {
                    entries.push((w, s.prefix.clone()));
                }
            }
        }
        splits.insert(split, entries);
    }
    let train: Vec<&Family> = fams
        .families
        .iter()
        .filter(|f| f.split == Split::Train.name())
        .collect();
    let tokens: f64 = train.iter().map(|f| f.tokens() as f64).sum();
    let weighted: f64 = train
        .iter()
        .map(|f| f.tokens() as f64 * fams.mixture.factor(f))
        .sum();
    let ratio = |x: f64, total: f64| if total > 0.0 { x / total } else { 0.0 };
    let shares = train
        .iter()
        .map(|f| {
            let factor = fams.mixture.factor(f);
            Share {
                lang: f.lang.clone(),
                source: f.source.clone(),
                documents: f.documents(),
                tokens: f.tokens(),
                factor,
                natural: ratio(f.tokens() as f64, tokens),
                weighted: ratio(f.tokens() as f64 * factor, weighted),
            }
        })
        .collect();
    Blend { splits, shares }
}

fn with_root(prefix: &str, root: Option<&Path>) -> String {
    match root {
        Some(r) => r.join(prefix).to_string_lossy().into_owned(),
        None => prefix.to_string(),
    }
}

impl Blend {
    /// `blend.json`'s content.
    pub fn json(&self, root: Option<&Path>) -> String {
        let mut map = serde_json::Map::new();
        for (split, entries) in &self.splits {
            let list: Vec<serde_json::Value> = entries
                .iter()
                .flat_map(|(w, p)| [serde_json::json!(w), serde_json::json!(with_root(p, root))])
                .collect();
            map.insert(split.name().into(), list.into());
        }
        let mut s = serde_json::to_string_pretty(&map).expect("json");
        s.push('\n');
        s
    }

    /// A `.blend` file: `weight prefix` per line.
    pub fn text(&self, split: Split, root: Option<&Path>) -> String {
        let mut s = String::new();
        for (w, p) in self.splits.get(&split).into_iter().flatten() {
            let _ = writeln!(s, "{w} {}", with_root(p, root));
        }
        s
    }

    /// The training shares summed per language (the factor is then the
    /// language's effective one: weighted over natural).
    pub fn language_shares(&self) -> Vec<Share> {
        let mut out: Vec<Share> = Vec::new();
        for r in &self.shares {
            match out.last_mut() {
                Some(l) if l.lang == r.lang => {
                    l.documents += r.documents;
                    l.tokens += r.tokens;
                    l.natural += r.natural;
                    l.weighted += r.weighted;
                }
                _ => out.push(Share {
                    source: None,
                    ..r.clone()
                }),
            }
        }
        for l in &mut out {
            if l.natural > 0.0 {
                // Rounded: a sum of shares is not exact, and the factor is for reading.
                l.factor = (l.weighted / l.natural * self.scale() * 1e6).round() / 1e6;
            }
        }
        out
    }

    /// Weighted over natural tokens of the whole training split: turns a
    /// ratio of shares back into a factor.
    fn scale(&self) -> f64 {
        let (mut tokens, mut weighted) = (0.0, 0.0);
        for r in &self.shares {
            tokens += r.tokens as f64;
            weighted += r.tokens as f64 * r.factor;
        }
        if tokens > 0.0 {
            weighted / tokens
        } else {
            1.0
        }
    }

    /// A share table: a header, a row per entry, then the total.
    pub fn shares_tsv(rows: &[Share]) -> String {
        let mut s = String::from(
            "language\tsource\tdocuments\ttokens\tfactor\tnatural_share\tweighted_share\n",
        );
        for r in rows {
            let _ = writeln!(
                s,
                "{}\t{}\t{}\t{}\t{}\t{:.6}\t{:.6}",
                r.lang,
                r.source.as_deref().unwrap_or("*"),
                r.documents,
                r.tokens,
                r.factor,
                r.natural,
                r.weighted
            );
        }
        let docs: u64 = rows.iter().map(|r| r.documents).sum();
        let tokens: u64 = rows.iter().map(|r| r.tokens).sum();
        let _ = writeln!(s, "total\t*\t{docs}\t{tokens}\t\t1.000000\t1.000000");
        s
    }

    /// Writes the blend files and the share table into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, root: Option<&Path>) -> std::io::Result<Vec<PathBuf>> {
        let mut files = vec![(dir.join("blend.json"), self.json(root))];
        for split in Split::ALL {
            files.push((
                dir.join(format!("{}.blend", split.name())),
                self.text(split, root),
            ));
        }
        files.push((
            dir.join("shares.tsv"),
            Blend::shares_tsv(&self.language_shares()),
        ));
        if self.shares.iter().any(|s| s.source.is_some()) {
            files.push((
                dir.join("shares_by_source.tsv"),
                Blend::shares_tsv(&self.shares),
            ));
        }
        for (path, text) in &files {
            crate::files::atomic_write(path, text.as_bytes())?;
        }
        Ok(files.into_iter().map(|(p, _)| p).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::family::ShardInfo;

    fn fam(split: &str, lang: &str, source: Option<&str>, tokens: &[u64]) -> Family {
        Family {
            split: split.into(),
            lang: lang.into(),
            source: source.map(str::to_string),
            shards: tokens
                .iter()
                .enumerate()
                .map(|(i, &t)| ShardInfo {
                    prefix: format!("{split}/{lang}/{i:05}"),
                    documents: 1,
                    tokens: t,
                })
                .collect(),
        }
    }

    #[test]
    fn weights_are_tokens_times_factor_and_sum_to_one() {
        let fams = Families {
            mixture: Mixture {
                factors: [("es".to_string(), 2.0), ("code".to_string(), 0.5)].into(),
                source_weights: Default::default(),
            },
            families: vec![
                fam("train", "code", None, &[400]),
                fam("train", "en", None, &[300, 300]),
                fam("train", "es", None, &[200]),
                fam("valid", "en", None, &[10]),
            ],
        };
        let b = blend(&fams);
        // Weighted tokens: code 200, en 600, es 400 (of 1200).
        let train = &b.splits[&Split::Train];
        let w: Vec<f64> = train.iter().map(|e| e.0).collect();
        let want = [
            200.0 / 1200.0,
            300.0 / 1200.0,
            300.0 / 1200.0,
            400.0 / 1200.0,
        ];
        for (a, b) in w.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{w:?}");
        }
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(
            b.splits[&Split::Valid],
            vec![(1.0, "valid/en/00000".to_string())]
        );
        assert!(b.splits[&Split::Test].is_empty());
        let es = b.shares.iter().find(|s| s.lang == "es").unwrap();
        assert!((es.natural - 200.0 / 1200.0).abs() < 1e-12);
        assert!((es.weighted - 400.0 / 1200.0).abs() < 1e-12);
        let text = b.text(Split::Train, Some(Path::new("/data/m")));
        assert!(
            text.starts_with("0.16666666666666666 /data/m/train/code/00000\n"),
            "{text}"
        );
    }

    #[test]
    fn source_weights_apply_to_source_families() {
        let fams = Families {
            mixture: Mixture {
                factors: Default::default(),
                source_weights: [("web".to_string(), 0.5)].into(),
            },
            families: vec![
                fam("train", "en", Some("books"), &[100]),
                fam("train", "en", Some("web"), &[100]),
            ],
        };
        let b = blend(&fams);
        let w: Vec<f64> = b.splits[&Split::Train].iter().map(|e| e.0).collect();
        assert!((w[0] - 2.0 / 3.0).abs() < 1e-12 && (w[1] - 1.0 / 3.0).abs() < 1e-12);
        // Per language: one row, its effective factor 0.75 (of 1 and 0.5, by tokens).
        let langs = b.language_shares();
        assert_eq!(langs.len(), 1);
        assert_eq!((langs[0].tokens, langs[0].factor), (200, 0.75));
        assert!((langs[0].weighted - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_zero_factor_leaves_the_language_out() {
        let fams = Families {
            mixture: Mixture {
                factors: [("en".to_string(), 0.0)].into(),
                source_weights: Default::default(),
            },
            families: vec![
                fam("train", "en", None, &[5]),
                fam("train", "es", None, &[5]),
            ],
        };
        let b = blend(&fams);
        assert_eq!(
            b.splits[&Split::Train],
            vec![(1.0, "train/es/00000".to_string())]
        );
    }
}
