//! `train_tokenizer`: trains the BPE tokenizer on the documents that reach
//! it (the curated corpus, when placed after the filters), as a global stage
//! in three steps like dedup:
//! - scan: each unit's segments are counted per language (the `lang`
//!   column of the `lid` stage, else `und`) and written hash-partitioned;
//! - reduce: each partition's counts from every unit are summed;
//! - cluster: one task trains on the sums and writes `tokenizer/` in the
//!   output folder (`tokenizer.json`, `tokenizer.vocab`, `training.json`).
//!
//! It adds no column and drops nothing.

use std::any::Any;
use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use arrow_schema::Field;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::{BuildContext, Global, Mode, Reads, Stage, StageError, StageOutput, StageSpec, Step};
use crate::batch::Core;
use crate::phased::sections::io as io_err;
use crate::phased::{
    combine_parts, sealed_part, PhasedError, Plan, Records, RunInput, ScanLayout, Scanned,
    TAG_WORDS,
};
use crate::tokenizer::train::{self, Segmenter, TrainConfig, WordCounts};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainTokenizerConfig {
    /// Folder for the tokenizer, inside the output folder.
    #[serde(default = "default_out")]
    pub out: String,
    /// Hash partitions of the counts: the reduce step's units of work.
    #[serde(default = "default_partitions")]
    pub partitions: usize,
    /// The trainer's settings (`vocab_size`, `alpha`, ...); Salamandra's
    /// where not given.
    #[serde(default)]
    pub tokenizer: TrainConfig,
}

fn default_out() -> String {
    "tokenizer".into()
}

fn default_partitions() -> usize {
    8
}

impl TrainTokenizerConfig {
    pub fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        let mut v = Vec::new();
        if let Err(e) = self.tokenizer.check() {
            v.push((Some("tokenizer"), e.to_string()));
        }
        if self.partitions == 0 || self.partitions > 4096 {
            v.push((Some("partitions"), "must be in 1..=4096".into()));
        }
        if self.out.is_empty() || self.out.starts_with('_') || self.out.contains("..") {
            v.push((Some("out"), format!("{:?} is not a folder name", self.out)));
        }
        v
    }
}

pub struct TrainTokenizer {
    config: TrainTokenizerConfig,
    seg: Segmenter,
    scanning: bool,
}

impl TrainTokenizer {
    pub fn new(config: TrainTokenizerConfig) -> Self {
        TrainTokenizer {
            seg: Segmenter::new(&config.tokenizer),
            config,
            scanning: false,
        }
    }
}

impl Stage for TrainTokenizer {
    fn name(&self) -> &'static str {
        <TrainTokenizerConfig as StageSpec>::TYPE
    }

    fn mode(&self) -> Mode {
        Mode::Annotate
    }

    fn fields(&self) -> Vec<Field> {
        Vec::new()
    }

    fn global(&mut self) -> Option<&mut dyn Global> {
        Some(self)
    }

    fn process(&self, batch: &RecordBatch) -> Result<StageOutput, StageError> {
        if !self.scanning {
            return Ok(StageOutput::default());
        }
        let text = Core::of(batch).text;
        let lang = crate::batch::langs(batch);
        let mut counts = WordCounts::default();
        let mut norm = String::new();
        for i in 0..batch.num_rows() {
            counts.add(&self.seg, lang(i), text.value(i), &mut norm);
        }
        Ok(StageOutput {
            scan: Some(Scanned::Records {
                rows: batch.num_rows(),
                docs: Vec::new(),
                part: Box::new(counts),
            }),
            ..Default::default()
        })
    }
}

impl Records for TrainTokenizer {
    fn combine(
        &self,
        acc: Option<Box<dyn Any + Send>>,
        next: Box<dyn Any + Send>,
    ) -> Box<dyn Any + Send> {
        combine_parts(acc, next, |acc: &mut WordCounts, next| acc.merge(next))
    }

    /// The unit's counts, split by word hash into the partitions.
    fn seal(&self, acc: Option<Box<dyn Any + Send>>) -> Result<Vec<Vec<u8>>, PhasedError> {
        let counts: WordCounts = sealed_part(acc)?.unwrap_or_default();
        let parts = self.config.partitions;
        let mut split: Vec<WordCounts> = vec![WordCounts::default(); parts];
        for (lang, lc) in counts.langs {
            for (w, n) in lc.words {
                let p = (xxh3_64(w.as_bytes()) % parts as u64) as usize;
                let e = split[p].langs.entry(lang.clone()).or_default();
                e.words.insert(w, n);
            }
            // Documents and bytes are per language, not per word: partition 0 keeps them.
            let e = split[0].langs.entry(lang).or_default();
            e.docs += lc.docs;
            e.bytes += lc.bytes;
        }
        let mut sections = Vec::with_capacity(parts);
        for c in &split {
            let mut bytes = Vec::new();
            c.write_to(&mut bytes)
                .map_err(io_err(std::path::Path::new("<word counts>")))?;
            sections.push(bytes);
        }
        Ok(sections)
    }
}

impl Global for TrainTokenizer {
    fn partitions(&self) -> usize {
        self.config.partitions
    }

    fn layout(&self) -> ScanLayout {
        ScanLayout::Records {
            tag: TAG_WORDS,
            per_doc: false,
            summary: false,
        }
    }

    fn begin_scan(&mut self) {
        self.scanning = true;
    }

    fn begin_apply(&mut self, _run: RunInput) -> Result<(), PhasedError> {
        self.scanning = false;
        Ok(())
    }

    fn records(&self) -> Option<&dyn Records> {
        Some(self)
    }

    fn reduce(&self, plan: &Plan, part: usize) -> Result<Step, PhasedError> {
        let mut sum = WordCounts::default();
        for &(unit, _) in &plan.units {
            let bytes = plan.dir.read_unit_section(unit, TAG_WORDS, part)?;
            let name = plan.dir.keys(unit).display().to_string();
            sum.merge(WordCounts::read_from(&bytes[..], &name)?);
        }
        let mut bytes = Vec::new();
        sum.write_to(&mut bytes)
            .map_err(io_err(&plan.dir.reduced(part)))?;
        Ok(Step {
            counts: BTreeMap::from([("distinct_words".into(), sum.distinct() as u64)]),
            output: Some(bytes),
        })
    }

    /// Trains on the summed counts and writes the tokenizer into the run's
    /// output folder.
    fn cluster(&self, plan: &Plan) -> Result<Step, PhasedError> {
        let t = std::time::Instant::now();
        let mut all = WordCounts::default();
        for p in 0..plan.partitions {
            let bytes = plan.dir.read_reduced(p)?;
            let name = plan.dir.reduced(p).display().to_string();
            all.merge(WordCounts::read_from(&bytes[..], &name)?);
        }
        let root = plan.dir.output.join(&self.config.out);
        let (vocab, report) = train::train_to_dir(
            &all,
            &self.config.tokenizer,
            train::Device::Cpu,
            &root,
            t.elapsed().as_secs_f64(),
        )?;
        tracing::info!(
            "train_tokenizer: {} pieces, {} merges, written to {}",
            vocab.len(),
            report.merges_learned,
            root.display()
        );
        Ok(Step::counts(BTreeMap::from([
            ("docs".into(), all.docs()),
            ("distinct_words".into(), all.distinct() as u64),
            ("vocab".into(), vocab.len() as u64),
        ])))
    }
}

impl StageSpec for TrainTokenizerConfig {
    const TYPE: &'static str = "train_tokenizer";

    fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        TrainTokenizerConfig::problems(self)
    }

    fn reads(&self) -> Vec<Reads> {
        vec![Reads::lang(
            None,
            false,
            "every document counts as language `und` in the sampling",
        )]
    }

    fn adds(&self) -> Vec<&'static str> {
        Vec::new()
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Stage>, StageError> {
        let _ = ctx;
        Ok(Box::new(TrainTokenizer::new(self.clone())))
    }

    fn example() -> Self {
        TrainTokenizerConfig {
            out: "tok".into(),
            partitions: 5,
            tokenizer: crate::tokenizer::train::TrainConfig {
                vocab_size: 32000,
                alpha: 0.3,
                whitespace_runs: vec![(' ', 8)],
                ..Default::default()
            },
        }
    }
}
