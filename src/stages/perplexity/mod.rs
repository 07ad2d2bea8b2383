//! `perplexity`: each document's perplexity under a Llama-architecture
//! model (`lm`), as cc_net does with KenLM, and a filter on it:
//! - `threshold`: drop above a perplexity, per language;
//! - `percentile`: cc_net's buckets: head, middle and tail of each
//!   language split at its 30th and 70th percentiles (by default) and the
//!   tail dropped. The cut-offs need the whole corpus, so the stage then is
//!   global: the scan scores every document and keeps the scores; reduce
//!   finds each language's cut-offs; the final pass reads the scores back
//!   (the model runs once) and buckets them. The cut-offs go into
//!   `stats.json`;
//! - `harmful`: a second model, trained on unwanted content, flags the
//!   documents it predicts too well (perplexity below `min`).
//!
//! Documents of languages not in `languages`, and those too short to have a
//! scored token, get null columns and are kept.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder, UInt32Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::{BuildContext, Drop, Global, Mode, Reads, Stage, StageError, StageOutput, StageSpec};
use crate::batch::Core;
use crate::dedup::global::TAG_SCORES;
use crate::dedup::global::{GlobalDir, Plan};
use crate::dedup::DedupError;
use crate::ledger::Reason;
use crate::lm::{DocScore, LmDevice, Model, Precision, ScoreOptions};

mod config;
mod scores;

pub use config::*;
impl StageSpec for PerplexityConfig {
    const TYPE: &'static str = "perplexity";

    fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        PerplexityConfig::problems(self)
    }

    fn reads(&self) -> Vec<Reads> {
        if self.languages.is_empty() {
            vec![Reads::lang(
                None,
                false,
                "every document is scored as language `und`",
            )]
        } else {
            vec![Reads::lang(
                Some("languages"),
                true,
                "every document's language is `und`, so none is scored",
            )]
        }
    }

    fn adds(&self) -> Vec<&'static str> {
        {
            let mut names = vec!["perplexity", "lm_logprob_token", "lm_logprob_byte", "lm_tokens"];
            match self.filter {
                PerplexityFilter::Threshold { .. } => {}
                PerplexityFilter::Percentile { .. } => names.push("perplexity_bucket"),
                PerplexityFilter::Harmful { .. } => names.push("harmful_perplexity"),
            }
            names
        }
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Stage>, StageError> {
        Ok(Box::new(Perplexity::new(self.clone(), ctx)?))
    }

    fn example() -> Self {
        PerplexityConfig {
            mode: Mode::Annotate,
            context: 256,
            stride: 128,
            languages: vec!["ca".into()],
            filter: PerplexityFilter::Harmful {
                model: "bad.gguf".into(),
                min: Some(20.0),
                per_language: [("es".to_string(), 15.0)].into(),
            },
            ..PerplexityConfig::new("lm.gguf")
        }
    }
}

#[cfg(test)]
use scores::read_records;
use scores::{put_record, read_cutoffs, Record, ScanSections};

pub struct Perplexity {
    config: PerplexityConfig,
    model: Arc<Model>,
    harmful: Option<Arc<Model>>,
    role: Role,
}

/// Where a percentile stage is in the run.
enum Role {
    /// A plain stage (threshold, harmful), or not yet set up.
    Plain,
    Scan {
        dir: GlobalDir,
        /// The unit being scanned, its sections (see [`ScanSections`]) and documents.
        unit: Option<(usize, Vec<Vec<u8>>, u64)>,
    },
    Apply {
        dir: GlobalDir,
        cutoffs: Cutoffs,
        unit: Option<usize>,
        records: Vec<Record>,
        next: usize,
    },
}

/// The error for a final pass that does not see what the scan saw.
fn changed_since_scan(dir: &GlobalDir, unit: usize, what: String) -> StageError {
    dedup_fail(DedupError::Corrupt {
        path: dir.keys(unit).display().to_string(),
        message: format!(
            "{what}: the input or the stages before this one changed since the scan; start the run over"
        ),
    })
}

fn load_model(
    config: &PerplexityConfig,
    ctx: &BuildContext,
    path: &str,
) -> Result<Arc<Model>, StageError> {
    let p: PathBuf = crate::files::resolve(&ctx.base, path);
    let m = Model::load(&p, config.precision, config.device).map_err(|e| StageError::Failed {
        stage: <PerplexityConfig as StageSpec>::TYPE.into(),
        message: e.to_string(),
    })?;
    tracing::info!("perplexity: {}", m.describe());
    Ok(Arc::new(m))
}

fn fail(e: impl std::fmt::Display) -> StageError {
    StageError::Failed {
        stage: <PerplexityConfig as StageSpec>::TYPE.into(),
        message: e.to_string(),
    }
}

fn dedup_fail(e: DedupError) -> StageError {
    StageError::Dedup {
        stage: <PerplexityConfig as StageSpec>::TYPE.into(),
        source: e,
    }
}

/// The per-document columns this stage computes before bucketing.
struct Scored {
    langs: Vec<String>,
    scores: Vec<Option<DocScore>>,
    harmful: Vec<Option<DocScore>>,
}

impl Perplexity {
    pub fn new(config: PerplexityConfig, ctx: &BuildContext) -> Result<Self, StageError> {
        let model = load_model(&config, ctx, &config.model)?;
        let harmful = match &config.filter {
            PerplexityFilter::Harmful { model, .. } => Some(load_model(&config, ctx, model)?),
            _ => None,
        };
        Ok(Perplexity {
            config,
            model,
            harmful,
            role: Role::Plain,
        })
    }

    fn percentile(&self) -> bool {
        matches!(self.config.filter, PerplexityFilter::Percentile { .. })
    }

    fn score(&self, batch: &RecordBatch) -> Result<Scored, StageError> {
        let text = Core::of(batch).text;
        let lang = crate::batch::langs(batch);
        let langs: Vec<String> = (0..batch.num_rows()).map(|i| lang(i).to_string()).collect();
        let wanted: Vec<usize> = (0..batch.num_rows())
            .filter(|&i| {
                self.config.languages.is_empty() || self.config.languages.contains(&langs[i])
            })
            .collect();
        let texts: Vec<&str> = wanted.iter().map(|&i| text.value(i)).collect();
        let opts = self.config.options();
        let run = |m: &Model| -> Result<Vec<Option<DocScore>>, StageError> {
            let mut out = vec![None; batch.num_rows()];
            for (&i, s) in wanted.iter().zip(m.score(&texts, &opts).map_err(fail)?) {
                out[i] = (s.tokens > 0).then_some(s);
            }
            Ok(out)
        };
        let scores = run(&self.model)?;
        let harmful = match &self.harmful {
            Some(h) => run(h)?,
            None => vec![None; batch.num_rows()],
        };
        Ok(Scored {
            langs,
            scores,
            harmful,
        })
    }

    /// Columns and drops from scores (and, for percentile, buckets).
    fn finish(&self, s: &Scored, buckets: Option<&[Option<Bucket>]>, out: &mut StageOutput) {
        let n = s.scores.len();
        let mut ppl = Float64Builder::with_capacity(n);
        let mut per_token = Float64Builder::with_capacity(n);
        let mut per_byte = Float64Builder::with_capacity(n);
        let mut tokens = UInt32Builder::with_capacity(n);
        for sc in &s.scores {
            ppl.append_option(sc.and_then(|x| x.perplexity()));
            per_token.append_option(sc.and_then(|x| x.per_token()));
            per_byte.append_option(sc.and_then(|x| x.per_byte()));
            tokens.append_option(sc.map(|x| x.tokens));
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(ppl.finish()),
            Arc::new(per_token.finish()),
            Arc::new(per_byte.finish()),
            Arc::new(tokens.finish()),
        ];
        match &self.config.filter {
            PerplexityFilter::Threshold { .. } => {
                for (row, sc) in s.scores.iter().enumerate() {
                    let (Some(p), Some(lim)) = (
                        sc.and_then(|x| x.perplexity()),
                        self.config.limit(&s.langs[row]),
                    ) else {
                        continue;
                    };
                    if p > lim {
                        out.drops.push(Drop {
                            row,
                            reason: Reason::PerplexityTooHigh,
                            detail: format!("perplexity {p:.2} > {lim} ({})", s.langs[row]),
                        });
                    }
                }
            }
            PerplexityFilter::Harmful { .. } => {
                let mut col = Float64Builder::with_capacity(n);
                for (row, sc) in s.harmful.iter().enumerate() {
                    let p = sc.and_then(|x| x.perplexity());
                    col.append_option(p);
                    if let (Some(p), Some(lim)) = (p, self.config.limit(&s.langs[row])) {
                        if p < lim {
                            out.drops.push(Drop {
                                row,
                                reason: Reason::HarmfulPerplexity,
                                detail: format!(
                                    "harmful-model perplexity {p:.2} < {lim} ({})",
                                    s.langs[row]
                                ),
                            });
                        }
                    }
                }
                cols.push(Arc::new(col.finish()));
            }
            PerplexityFilter::Percentile { keep, .. } => {
                let mut col = StringBuilder::new();
                let none = vec![None; n];
                let buckets = buckets.unwrap_or(&none);
                for (row, b) in buckets.iter().enumerate() {
                    col.append_option(b.map(Bucket::as_str));
                    if let Some(b) = b.filter(|b| !keep.contains(b)) {
                        let p = s.scores[row]
                            .and_then(|x| x.perplexity())
                            .unwrap_or(f64::NAN);
                        out.drops.push(Drop {
                            row,
                            reason: Reason::PerplexityBucket,
                            detail: format!(
                                "perplexity {p:.2} in the {} bucket of {}",
                                b.as_str(),
                                s.langs[row]
                            ),
                        });
                    }
                }
                cols.push(Arc::new(col.finish()));
            }
        }
        out.columns = cols;
    }
}

impl Stage for Perplexity {
    fn name(&self) -> &'static str {
        <PerplexityConfig as StageSpec>::TYPE
    }

    fn mode(&self) -> Mode {
        self.config.mode
    }

    fn fields(&self) -> Vec<Field> {
        let mut f = vec![
            Field::new("perplexity", DataType::Float64, true),
            Field::new("lm_logprob_token", DataType::Float64, true),
            Field::new("lm_logprob_byte", DataType::Float64, true),
            Field::new("lm_tokens", DataType::UInt32, true),
        ];
        match self.config.filter {
            PerplexityFilter::Threshold { .. } => {}
            PerplexityFilter::Percentile { .. } => {
                f.push(Field::new("perplexity_bucket", DataType::Utf8, true))
            }
            PerplexityFilter::Harmful { .. } => {
                f.push(Field::new("harmful_perplexity", DataType::Float64, true))
            }
        }
        f
    }

    fn global(&mut self) -> Option<&mut dyn Global> {
        if self.percentile() {
            Some(self)
        } else {
            None
        }
    }

    fn process(&self, batch: &RecordBatch) -> Result<StageOutput, StageError> {
        if matches!(self.role, Role::Apply { .. }) {
            // The scan's scores are read back in order by `decide`.
            return Ok(StageOutput::default());
        }
        let scored = self.score(batch)?;
        let mut out = StageOutput::default();
        if self.percentile() {
            out.scratch = Some(Box::new(scored));
        } else {
            self.finish(&scored, None, &mut out);
        }
        Ok(out)
    }

    fn ordered(&self) -> bool {
        self.percentile()
    }

    fn enter_unit(&mut self, unit: usize) -> Result<(), StageError> {
        match &mut self.role {
            Role::Plain => {
                if self.percentile() {
                    return Err(fail("a global stage ran outside its phases"));
                }
            }
            Role::Scan { unit: cur, .. } => {
                if cur.as_ref().is_none_or(|(u, _, _)| *u != unit) {
                    *cur = Some((unit, vec![Vec::new(); self.config.partitions + 1], 0));
                }
            }
            Role::Apply {
                dir,
                unit: cur,
                records,
                next,
                ..
            } => {
                if *cur != Some(unit) {
                    *records = ScanSections::read(dir, unit, self.config.partitions)
                        .map_err(dedup_fail)?;
                    *cur = Some(unit);
                    *next = 0;
                }
            }
        }
        Ok(())
    }

    fn decide(&mut self, batch: &RecordBatch, out: &mut StageOutput) -> Result<(), StageError> {
        let rows = batch.num_rows();
        let parts = self.config.partitions;
        let scored = match &mut self.role {
            Role::Plain => return Ok(()),
            Role::Scan { unit, .. } => {
                let scored = out
                    .scratch
                    .take()
                    .and_then(|s| s.downcast::<Scored>().ok())
                    .ok_or_else(|| fail("process made no scores"))?;
                let (_, sections, docs) = unit.as_mut().ok_or_else(|| fail("no unit entered"))?;
                for (l, s) in scored.langs.iter().zip(&scored.scores) {
                    put_record(&mut sections[parts], l, s.as_ref());
                    if s.is_some() {
                        put_record(
                            &mut sections[ScanSections::partition(l, parts)],
                            l,
                            s.as_ref(),
                        );
                    }
                }
                *docs += rows as u64;
                // The scan's pass writes nothing: null buckets, no drops.
                self.finish(&scored, None, out);
                return Ok(());
            }
            Role::Apply {
                dir,
                unit,
                records,
                next,
                ..
            } => {
                let u = unit.ok_or_else(|| fail("no unit entered"))?;
                if *next + rows > records.len() {
                    return Err(changed_since_scan(
                        dir,
                        u,
                        format!(
                            "the scan scored {} documents in unit {u}, this pass has more",
                            records.len()
                        ),
                    ));
                }
                let mine = &records[*next..*next + rows];
                *next += rows;
                let lang = crate::batch::langs(batch);
                for (i, r) in mine.iter().enumerate() {
                    if r.lang != lang(i) {
                        return Err(changed_since_scan(
                            dir,
                            u,
                            format!(
                                "document {} was `{}` at the scan and is `{}` now",
                                Core::of(batch).id.value(i),
                                r.lang,
                                lang(i)
                            ),
                        ));
                    }
                }
                Scored {
                    langs: mine.iter().map(|r| r.lang.clone()).collect(),
                    scores: mine.iter().map(|r| r.score).collect(),
                    harmful: vec![None; rows],
                }
            }
        };
        let Role::Apply { cutoffs, .. } = &self.role else {
            unreachable!("the other roles returned above")
        };
        let buckets: Vec<Option<Bucket>> = scored
            .scores
            .iter()
            .zip(&scored.langs)
            .map(|(s, l)| {
                let p = s.and_then(|s| s.perplexity())?;
                let c = cutoffs.languages.get(l)?.cutoffs;
                Some(if p <= c[0] {
                    Bucket::Head
                } else if p <= c[1] {
                    Bucket::Middle
                } else {
                    Bucket::Tail
                })
            })
            .collect();
        self.finish(&scored, Some(&buckets), out);
        Ok(())
    }

    fn end_unit(&mut self) -> Result<(), StageError> {
        match &mut self.role {
            Role::Scan { dir, unit } => {
                let Some((u, sections, docs)) = unit.take() else {
                    return Ok(());
                };
                dir.write_unit_sections(u, TAG_SCORES, docs, &sections)
                    .map_err(dedup_fail)
            }
            Role::Apply {
                dir,
                unit,
                records,
                next,
                ..
            } => {
                if let Some(u) = unit.take() {
                    if *next != records.len() {
                        return Err(changed_since_scan(
                            dir,
                            u,
                            format!(
                                "the scan scored {} documents in unit {u} and this pass saw {next}",
                                records.len()
                            ),
                        ));
                    }
                }
                Ok(())
            }
            Role::Plain => Ok(()),
        }
    }
}

impl Global for Perplexity {
    fn partitions(&self) -> usize {
        self.config.partitions
    }

    fn begin_scan(&mut self, dir: &GlobalDir, _budget: usize) {
        self.role = Role::Scan {
            dir: dir.clone(),
            unit: None,
        };
    }

    fn begin_apply(&mut self, dir: &GlobalDir) -> Result<(), DedupError> {
        let cutoffs = read_cutoffs(&dir.read_summary()?, &dir.summary())?;
        self.role = Role::Apply {
            dir: dir.clone(),
            cutoffs,
            unit: None,
            records: Vec::new(),
            next: 0,
        };
        Ok(())
    }

    /// Cut-offs of the languages that hash to `part`, from every unit's scores.
    fn reduce(&self, plan: &Plan, part: usize) -> Result<BTreeMap<String, u64>, DedupError> {
        let mut per_lang: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for &(unit, _) in &plan.units {
            for r in ScanSections::read(&plan.dir, unit, part)? {
                if let Some(p) = r.score.and_then(|s| s.perplexity()) {
                    per_lang.entry(r.lang).or_default().push(p);
                }
            }
        }
        let PerplexityFilter::Percentile { cutoffs: q, .. } = self.config.filter else {
            return Err(DedupError::Missing("a percentile filter".into()));
        };
        let mut found = Cutoffs {
            percentiles: q,
            languages: BTreeMap::new(),
        };
        for (lang, mut v) in per_lang {
            v.sort_by(f64::total_cmp);
            found.languages.insert(
                lang,
                LanguageCutoffs {
                    documents: v.len() as u64,
                    cutoffs: [nearest_rank(&v, q[0]), nearest_rank(&v, q[1])],
                },
            );
        }
        let bytes = serde_json::to_vec_pretty(&found).expect("cut-offs serialize");
        plan.dir.write_reduced(part, &bytes)?;
        Ok(BTreeMap::from([(
            "languages".into(),
            found.languages.len() as u64,
        )]))
    }

    /// Gathers the partitions' cut-offs into the stage's summary, which the
    /// final pass buckets by and `stats.json` reports.
    fn cluster(&self, plan: &Plan) -> Result<BTreeMap<String, u64>, DedupError> {
        let mut all = Cutoffs::default();
        for p in 0..plan.partitions {
            let c = read_cutoffs(&plan.dir.read_reduced(p)?, &plan.dir.reduced(p))?;
            all.percentiles = c.percentiles;
            all.languages.extend(c.languages);
        }
        let mut bytes = serde_json::to_vec_pretty(&all).expect("cut-offs serialize");
        bytes.push(b'\n');
        plan.dir.write_summary(&bytes)?;
        for (l, c) in &all.languages {
            tracing::info!(
                "perplexity: {l}: {} documents, cut-offs {:.2} and {:.2}",
                c.documents,
                c.cutoffs[0],
                c.cutoffs[1]
            );
        }
        Ok(BTreeMap::from([
            ("languages".into(), all.languages.len() as u64),
            (
                "documents".into(),
                all.languages.values().map(|c| c.documents).sum(),
            ),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    #[test]
    fn nearest_rank_splits_like_cc_net() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 30.0), 3.0);
        assert_eq!(nearest_rank(&v, 70.0), 7.0);
        assert_eq!(nearest_rank(&v, 0.1), 1.0);
        assert_eq!(nearest_rank(&v, 99.9), 10.0);
        let w: Vec<f64> = (1..=7).map(f64::from).collect();
        // ceil(2.1) = 3 values at or below the 30th percentile.
        assert_eq!(nearest_rank(&w, 30.0), 3.0);
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        let s = DocScore {
            tokens: 7,
            logprob: -12.5,
            bytes: 40,
        };
        put_record(&mut buf, "ca", Some(&s));
        put_record(&mut buf, "und", None);
        let r = read_records(&buf, "x").unwrap();
        assert_eq!(r[0].lang, "ca");
        assert_eq!(r[0].score, Some(s));
        assert_eq!(r[1].score, None);
        assert!(read_records(&buf[..buf.len() - 1], "x").is_err());
    }

    fn tiny_model(seed: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let w = crate::lm::reference_tests::tiny_weights(seed, false);
        crate::lm::reference_tests::write_folder(dir.path(), &w, false);
        dir
    }

    fn batch(texts: &[&str]) -> RecordBatch {
        let mut b = crate::batch::CoreBuilder::with_capacity(texts.len(), 100);
        for (i, t) in texts.iter().enumerate() {
            b.push("s", "f", i as u64 + 1, t, None, None);
        }
        b.finish()
    }

    #[test]
    fn harmful_filter_drops_what_the_second_model_predicts_too_well() {
        let (main, bad) = (tiny_model(3), tiny_model(4));
        let ctx = BuildContext {
            base: std::env::temp_dir(),
        };
        let texts = [
            "aaaa aaaa aaaa aaaa",
            "The quick brown fox.",
            "zzzz qqqq",
            "x",
            "Numbers 1234567890 and symbols !@#",
        ];
        let b = batch(&texts);
        let stage = |min: f64| {
            let c = PerplexityConfig {
                filter: PerplexityFilter::Harmful {
                    model: bad.path().display().to_string(),
                    min: Some(min),
                    per_language: BTreeMap::new(),
                },
                ..PerplexityConfig::new(main.path().display().to_string())
            };
            assert!(c.problems().is_empty());
            Perplexity::new(c, &ctx).unwrap()
        };
        let probe = stage(1.0).process(&b).unwrap();
        assert_eq!(probe.columns.len(), 5);
        let harmful = probe.columns[4]
            .as_any()
            .downcast_ref::<arrow_array::Float64Array>()
            .unwrap()
            .clone();
        let main_ppl = probe.columns[0]
            .as_any()
            .downcast_ref::<arrow_array::Float64Array>()
            .unwrap()
            .clone();
        // "x" is one token: nothing to score, null, never dropped.
        assert!(harmful.is_null(3) && main_ppl.is_null(3));
        let mut vals: Vec<f64> = (0..5)
            .filter(|&i| i != 3)
            .map(|i| harmful.value(i))
            .collect();
        // Two models with different weights disagree.
        assert!((0..5)
            .filter(|&i| i != 3)
            .any(|i| harmful.value(i) != main_ppl.value(i)));
        vals.sort_by(f64::total_cmp);
        let min = (vals[1] + vals[2]) / 2.0;
        let out = stage(min).process(&b).unwrap();
        let rows: Vec<usize> = out.drops.iter().map(|d| d.row).collect();
        let want: Vec<usize> = (0..5)
            .filter(|&i| !harmful.is_null(i) && harmful.value(i) < min)
            .collect();
        assert_eq!(rows, want);
        assert_eq!(rows.len(), 2);
        assert!(out
            .drops
            .iter()
            .all(|d| d.reason == Reason::HarmfulPerplexity));
    }

    #[test]
    fn config_problems_name_the_field() {
        let mut c = PerplexityConfig::new("m.gguf");
        assert!(c.problems().is_empty());
        c.filter = PerplexityFilter::Percentile {
            cutoffs: [70.0, 30.0],
            keep: vec![Bucket::Head],
        };
        assert_eq!(c.problems()[0].0, Some("filter"));
        c.filter = PerplexityFilter::Threshold {
            max: None,
            per_language: BTreeMap::new(),
        };
        assert!(c.problems()[0].1.contains("limit"));
        c.filter = PerplexityFilter::Threshold {
            max: Some(100.0),
            per_language: BTreeMap::new(),
        };
        c.stride = c.context;
        assert_eq!(c.problems()[0].0, Some("stride"));
    }
}
