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

use std::any::Any;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder, UInt32Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::{
    BuildContext, Drop, Global, Mode, Reads, Stage, StageError, StageOutput, StageSpec, Step,
};
use crate::batch::Core;
use crate::phased::{
    combine_parts, sealed_part, BatchInput, PhasedError, Plan, Records, RunInput, ScanLayout,
    Scanned, TAG_SCORES,
};
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

use scores::{partition_of, put_record, read_cutoffs, read_records};

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
    /// The scan: scores out, for the engine to keep.
    Scan,
    /// The final pass: the scan's scores back, bucketed by the cut-offs.
    Apply { cutoffs: Cutoffs },
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
            // The scan's scores come back through `apply`.
            return Ok(StageOutput::default());
        }
        let scored = self.score(batch)?;
        let mut out = StageOutput::default();
        // The scan's pass writes nothing: null buckets, no drops.
        self.finish(&scored, None, &mut out);
        if matches!(self.role, Role::Scan) {
            let parts = self.config.partitions;
            let mut sections = vec![Vec::new(); parts];
            let mut docs = Vec::with_capacity(scored.scores.len());
            for (l, s) in scored.langs.iter().zip(&scored.scores) {
                let mut rec = Vec::new();
                put_record(&mut rec, l, s.as_ref());
                if s.is_some() {
                    sections[partition_of(l, parts)].extend_from_slice(&rec);
                }
                docs.push(rec);
            }
            out.scan = Some(Scanned::Records {
                rows: docs.len(),
                docs,
                part: Box::new(sections),
            });
        }
        Ok(out)
    }
}

impl Records for Perplexity {
    fn combine(
        &self,
        acc: Option<Box<dyn Any + Send>>,
        next: Box<dyn Any + Send>,
    ) -> Box<dyn Any + Send> {
        combine_parts(acc, next, |acc: &mut Vec<Vec<u8>>, next| {
            for (a, n) in acc.iter_mut().zip(&next) {
                a.extend_from_slice(n);
            }
        })
    }

    fn seal(&self, acc: Option<Box<dyn Any + Send>>) -> Result<Vec<Vec<u8>>, PhasedError> {
        Ok(sealed_part(acc)?.unwrap_or_else(|| vec![Vec::new(); self.config.partitions]))
    }
}

impl Global for Perplexity {
    fn partitions(&self) -> usize {
        self.config.partitions
    }

    fn layout(&self) -> ScanLayout {
        ScanLayout::Records {
            tag: TAG_SCORES,
            per_doc: true,
            summary: true,
        }
    }

    fn begin_scan(&mut self) {
        self.role = Role::Scan;
    }

    fn begin_apply(&mut self, run: RunInput) -> Result<(), PhasedError> {
        let summary = run
            .summary
            .ok_or_else(|| PhasedError::Missing("the perplexity cut-offs".into()))?;
        let cutoffs = read_cutoffs(&summary, std::path::Path::new(crate::phased::SUMMARY))?;
        self.role = Role::Apply { cutoffs };
        Ok(())
    }

    fn records(&self) -> Option<&dyn Records> {
        Some(self)
    }

    /// Buckets the scan's scores of the batch's documents.
    fn apply(
        &self,
        batch: &RecordBatch,
        input: BatchInput,
        out: &mut StageOutput,
    ) -> Result<(), StageError> {
        let Role::Apply { cutoffs } = &self.role else {
            return Err(fail("a global stage ran outside its phases"));
        };
        let BatchInput::Records(recs) = input else {
            return Err(fail("the scan's scores did not come back"));
        };
        let lang = crate::batch::langs(batch);
        let mut scored = Scored {
            langs: Vec::with_capacity(recs.len()),
            scores: Vec::with_capacity(recs.len()),
            harmful: vec![None; recs.len()],
        };
        for (i, rec) in recs.iter().enumerate() {
            let r = read_records(rec, "the scan's scores")
                .map_err(fail)?
                .pop()
                .ok_or_else(|| fail("an empty score record"))?;
            if r.lang != lang(i) {
                return Err(fail(format!(
                    "document {} was `{}` at the scan and is `{}` now: the input or the stages \
                     before this one changed since the scan; start the run over",
                    Core::of(batch).id.value(i),
                    r.lang,
                    lang(i)
                )));
            }
            scored.langs.push(r.lang);
            scored.scores.push(r.score);
        }
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

    /// Cut-offs of the languages that hash to `part`, from every unit's scores.
    fn reduce(&self, plan: &Plan, part: usize) -> Result<Step, PhasedError> {
        let mut per_lang: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for &(unit, _) in &plan.units {
            let bytes = plan.dir.read_unit_section(unit, TAG_SCORES, part)?;
            let name = plan.dir.keys(unit).display().to_string();
            for r in read_records(&bytes, &name)? {
                if let Some(p) = r.score.and_then(|s| s.perplexity()) {
                    per_lang.entry(r.lang).or_default().push(p);
                }
            }
        }
        let PerplexityFilter::Percentile { cutoffs: q, .. } = self.config.filter else {
            return Err(PhasedError::Missing("a percentile filter".into()));
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
        Ok(Step {
            counts: BTreeMap::from([("languages".into(), found.languages.len() as u64)]),
            output: Some(serde_json::to_vec_pretty(&found).expect("cut-offs serialize")),
        })
    }

    /// Gathers the partitions' cut-offs into the stage's summary, which the
    /// final pass buckets by and `stats.json` reports.
    fn cluster(&self, plan: &Plan) -> Result<Step, PhasedError> {
        let mut all = Cutoffs::default();
        for p in 0..plan.partitions {
            let c = read_cutoffs(&plan.dir.read_reduced(p)?, &plan.dir.reduced(p))?;
            all.percentiles = c.percentiles;
            all.languages.extend(c.languages);
        }
        let mut bytes = serde_json::to_vec_pretty(&all).expect("cut-offs serialize");
        bytes.push(b'\n');
        for (l, c) in &all.languages {
            tracing::info!(
                "perplexity: {l}: {} documents, cut-offs {:.2} and {:.2}",
                c.documents,
                c.cutoffs[0],
                c.cutoffs[1]
            );
        }
        Ok(Step {
            counts: BTreeMap::from([
                ("languages".into(), all.languages.len() as u64),
                (
                    "documents".into(),
                    all.languages.values().map(|c| c.documents).sum(),
                ),
            ]),
            output: Some(bytes),
        })
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
