//! `near_dedup`: MinHash-LSH near-duplicate removal across the whole run.
//!
//! A phased stage (see `phased`). The scan computes, per document,
//! the MinHash signature of its word 5-gram shingles and one 64-bit key per
//! band; documents that share a band key are candidates, optionally
//! verified by exact Jaccard over their shingles; clusters keep one
//! document (first, longest or best scored) and drop the rest with the
//! kept one's id.


use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{new_null_array, Array, RecordBatch};
use arrow_schema::{DataType, Field};
use serde::{Deserialize, Serialize};

use super::exact_dedup::DEFAULT_PARTITIONS;
use super::{
    drop_decided, BuildContext, Global, Mode, Reads, Stage, StageError, StageOutput, StageSpec,
    Step,
};
use crate::batch::Core;
use crate::dedup::{datatrove, shingles, Banding, MinHasher};
use crate::phased::{
    self, BatchInput, DocKeys, Keep, PhasedError, Plan, RunInput, ScanLayout, Scanned,
};
use crate::ledger::Reason;

/// How shingles and signatures are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hashing {
    /// Lower-cased Unicode words of every language, xxh3, a mod-p family
    /// drawn from `seed`: fast, and a text shorter than one shingle still
    /// has a signature.
    Forja,
    /// datatrove 0.10's `MinhashDedupSignature` bit for bit (its text
    /// simplification, English word tokenizer, xxh64 and numpy-drawn
    /// parameters; see `dedup::datatrove`): the same signatures, so the same
    /// candidates, as a datatrove run with the same seed and bands.
    Datatrove,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NearDedupConfig {
    pub mode: Mode,
    /// Words per shingle.
    pub shingle: usize,
    pub bands: usize,
    pub rows: usize,
    /// Seed of the hash family: change it and every signature changes.
    pub seed: u64,
    /// Drop a document only if the exact Jaccard of its shingles with the
    /// kept document it is attributed to is at least this (removes LSH
    /// false positives and chains; stores shingles on disk). `false` for
    /// none; unset, [`DEFAULT_VERIFY`] except with `keep = "datatrove"`,
    /// which replays datatrove, and datatrove does not verify.
    #[serde(skip_serializing_if = "Verify::is_default")]
    pub verify: Verify,
    pub keep: Keep,
    /// Which shingles and hash family: forja's own, or datatrove's exactly.
    pub hashing: Hashing,
    /// The Float64 column `keep = "score"` ranks by (higher is better).
    pub score_column: Option<String>,
    pub partitions: usize,
}

/// The default banding: 20 bands of 5 rows find a pair at Jaccard 0.8 with
/// probability 1 - (1 - 0.8^5)^20 = 0.9996, and more above (FineWeb's
/// 14 x 8: 0.92); 100 hashes, fewer than FineWeb's 112. The candidates it
/// lets through below the threshold are removed by verification.
pub const DEFAULT_BANDING: Banding = Banding { bands: 20, rows: 5 };

/// The default threshold: a document is dropped only if the exact Jaccard
/// of its shingles with the kept document it is attributed to is at least
/// this.
pub const DEFAULT_VERIFY: f64 = 0.8;

impl Default for NearDedupConfig {
    fn default() -> Self {
        NearDedupConfig {
            mode: Mode::Filter,
            shingle: 5,
            bands: DEFAULT_BANDING.bands,
            rows: DEFAULT_BANDING.rows,
            seed: 1,
            verify: Verify::Default,
            keep: Keep::First,
            hashing: Hashing::Forja,
            score_column: None,
            partitions: DEFAULT_PARTITIONS,
        }
    }
}

/// The `verify` setting: a threshold, `false`, or unset.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Verify {
    /// Unset: [`DEFAULT_VERIFY`], except with `keep = "datatrove"`.
    #[default]
    Default,
    /// `false`: no verification.
    Off,
    /// A Jaccard threshold.
    At(f64),
}

impl Verify {
    fn is_default(&self) -> bool {
        *self == Verify::Default
    }
}

impl Serialize for Verify {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Verify::Default => s.serialize_f64(DEFAULT_VERIFY),
            Verify::Off => s.serialize_bool(false),
            Verify::At(x) => s.serialize_f64(*x),
        }
    }
}

impl<'de> Deserialize<'de> for Verify {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            At(f64),
        }
        Ok(match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("a Jaccard threshold (e.g. 0.8) or false")
        })? {
            Raw::Flag(false) => Verify::Off,
            Raw::Flag(true) => Verify::Default,
            Raw::At(x) => Verify::At(x),
        })
    }
}

impl NearDedupConfig {
    /// The verification threshold in effect, if any.
    pub fn threshold(&self) -> Option<f64> {
        match self.verify {
            Verify::At(x) => Some(x),
            Verify::Off => None,
            Verify::Default => (self.keep != Keep::Datatrove).then_some(DEFAULT_VERIFY),
        }
    }

    pub fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        let mut p = Vec::new();
        if self.shingle == 0 {
            p.push((Some("shingle"), "must be at least 1".into()));
        }
        if self.bands == 0 || self.rows == 0 || self.bands * self.rows > 4096 {
            p.push((
                Some("bands"),
                "bands and rows must be at least 1, and bands x rows at most 4096".into(),
            ));
        }
        if let Verify::At(v) = self.verify {
            if !(0.0..=1.0).contains(&v) {
                p.push((Some("verify"), "a Jaccard threshold in 0..=1".into()));
            }
        }
        if self.keep == Keep::Score && self.score_column.is_none() {
            p.push((
                Some("score_column"),
                "keep = \"score\" needs the column to rank by".into(),
            ));
        }
        if self.hashing == Hashing::Datatrove && self.seed > u32::MAX as u64 {
            p.push((
                Some("seed"),
                "hashing = \"datatrove\" seeds numpy's generator, which takes 0..=4294967295"
                    .into(),
            ));
        }
        if self.partitions == 0 || self.partitions > 65_536 {
            p.push((Some("partitions"), "must be in 1..=65536".into()));
        }
        p
    }
}

/// The shingles and signature family of one `Hashing`.
enum Signer {
    Forja(MinHasher),
    Datatrove(datatrove::Hasher),
}

impl Signer {
    fn shingles(&self, text: &str, n: usize) -> Vec<u64> {
        match self {
            Signer::Forja(_) => shingles(text, n),
            Signer::Datatrove(_) => datatrove::shingles(text, n),
        }
    }

    fn signature_of(&self, shingles: &[u64], out: &mut Vec<u64>) {
        match self {
            Signer::Forja(h) => h.signature_of(shingles, out),
            Signer::Datatrove(h) => h.signature_of(shingles, out),
        }
    }
}

pub struct NearDedup {
    config: NearDedupConfig,
    hasher: Signer,
    banding: Banding,
    /// The pass is the scan (keys out) rather than the apply.
    scanning: bool,
}

/// An order-preserving map of a score onto u32.
fn score_bits(x: f64) -> u32 {
    let b = (x as f32).to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 1 << 31
    }
}

impl NearDedup {
    pub fn new(config: NearDedupConfig) -> Self {
        let banding = Banding {
            bands: config.bands,
            rows: config.rows,
        };
        NearDedup {
            hasher: match config.hashing {
                Hashing::Forja => Signer::Forja(MinHasher::new(banding.hashes(), config.seed)),
                // problems() refuses a seed past u32 before a stage is built.
                Hashing::Datatrove => {
                    Signer::Datatrove(datatrove::Hasher::new(banding.hashes(), config.seed as u32))
                }
            },
            banding,
            config,
            scanning: false,
        }
    }

    fn scores(&self, batch: &RecordBatch) -> Result<Vec<u32>, StageError> {
        let n = batch.num_rows();
        Ok(match self.config.keep {
            Keep::First | Keep::Datatrove => vec![0; n],
            Keep::Longest => Core::of(batch)
                .text
                .iter()
                .map(|t| t.map_or(0, |t| t.len().min(u32::MAX as usize) as u32))
                .collect(),
            Keep::Score => {
                let name = self.config.score_column.as_deref().unwrap_or_default();
                let col = batch
                    .column_by_name(name)
                    .ok_or_else(|| StageError::Failed {
                        stage: <NearDedupConfig as StageSpec>::TYPE.into(),
                        message: format!("keep = \"score\": no column `{name}` before this stage"),
                    })?;
                let col =
                    col.as_primitive_opt::<Float64Type>()
                        .ok_or_else(|| StageError::Failed {
                            stage: <NearDedupConfig as StageSpec>::TYPE.into(),
                            message: format!(
                                "score column `{name}` is {}, not Float64",
                                col.data_type()
                            ),
                        })?;
                (0..n)
                    .map(|i| {
                        if col.is_null(i) {
                            0
                        } else {
                            score_bits(col.value(i))
                        }
                    })
                    .collect()
            }
        })
    }
}

impl Stage for NearDedup {
    fn name(&self) -> &'static str {
        <NearDedupConfig as StageSpec>::TYPE
    }

    fn mode(&self) -> Mode {
        self.config.mode
    }

    fn fields(&self) -> Vec<Field> {
        // Id of the document kept in this one's place, if it is a near copy.
        vec![Field::new("near_dup_of", DataType::Utf8, true)]
    }

    fn global(&mut self) -> Option<&mut dyn Global> {
        Some(self)
    }

    fn process(&self, batch: &RecordBatch) -> Result<StageOutput, StageError> {
        if !self.scanning {
            return Ok(StageOutput::default());
        }
        let n = batch.num_rows();
        let mut s = DocKeys::<u64>::with_rows(n);
        s.keys.reserve(n * self.banding.bands);
        s.scores = self.scores(batch)?;
        let mut sig = Vec::new();
        for t in Core::of(batch).text.iter() {
            let sh = self
                .hasher
                .shingles(t.unwrap_or_default(), self.config.shingle);
            if !sh.is_empty() {
                self.hasher.signature_of(&sh, &mut sig);
                if self.config.keep == Keep::Datatrove {
                    s.keys.extend(self.banding.ordered_keys(&sig));
                } else {
                    s.keys.extend(self.banding.keys(&sig));
                }
            }
            s.end_row();
            if self.config.threshold().is_some() {
                let mut small: Vec<u32> = sh.iter().map(|&x| (x >> 32) as u32).collect();
                small.sort_unstable();
                small.dedup();
                s.shingles.push(small);
            }
        }
        Ok(StageOutput {
            columns: vec![new_null_array(&DataType::Utf8, n)],
            scan: Some(Scanned::Keys64(s)),
            ..Default::default()
        })
    }
}

impl Global for NearDedup {
    fn partitions(&self) -> usize {
        self.config.partitions
    }

    fn layout(&self) -> ScanLayout {
        ScanLayout::Keys {
            wide: false,
            table: true,
            shingles: self.config.threshold().is_some(),
            frequent: false,
        }
    }

    fn begin_scan(&mut self) {
        self.scanning = true;
    }

    fn begin_apply(&mut self, _run: RunInput) -> Result<(), PhasedError> {
        self.scanning = false;
        Ok(())
    }

    fn apply(
        &self,
        batch: &RecordBatch,
        input: BatchInput,
        out: &mut StageOutput,
    ) -> Result<(), StageError> {
        drop_decided(batch, input, Reason::NearDuplicate, out)
    }

    fn reduce(&self, plan: &Plan, part: usize) -> Result<Step, PhasedError> {
        if self.config.keep == Keep::Datatrove {
            phased::reduce_chains(plan, part, self.config.threshold())
        } else {
            phased::reduce_edges::<u64>(plan, part, self.config.threshold())
        }
        .map(Step::counts)
    }

    fn cluster(&self, plan: &Plan) -> Result<Step, PhasedError> {
        phased::cluster(plan, self.config.keep, self.config.threshold()).map(Step::counts)
    }
}

impl StageSpec for NearDedupConfig {
    const TYPE: &'static str = "near_dedup";

    fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        NearDedupConfig::problems(self)
    }

    fn reads(&self) -> Vec<Reads> {
        match (&self.keep, &self.score_column) {
            (Keep::Score, Some(c)) => vec![Reads {
                column: c.clone(),
                field: Some("score_column"),
                required: true,
                without: "there is no score to keep the best copy by".into(),
            }],
            _ => Vec::new(),
        }
    }

    fn adds(&self) -> Vec<&'static str> {
        vec!["near_dup_of"]
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Stage>, StageError> {
        let _ = ctx;
        Ok(Box::new(NearDedup::new(self.clone())))
    }

    fn example() -> Self {
        NearDedupConfig {
            verify: Verify::At(0.85),
            keep: Keep::Longest,
            bands: 20,
            rows: 5,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_bits_keep_order() {
        let xs = [-1e9, -2.5, -0.0, 0.0, 1e-3, 0.5, 7.0, 1e20];
        for w in xs.windows(2) {
            assert!(score_bits(w[0]) <= score_bits(w[1]), "{w:?}");
        }
    }

    #[test]
    fn config_problems_are_named() {
        let c = NearDedupConfig {
            keep: Keep::Score,
            verify: Verify::At(1.5),
            ..Default::default()
        };
        let fields: Vec<_> = c.problems().into_iter().filter_map(|p| p.0).collect();
        assert_eq!(fields, vec!["verify", "score_column"]);
    }
}
