//! `exact_dedup`: drop documents whose normalized text another document
//! already has, across every source and task of the run.
//!
//! A phased stage (see `phased`): the scan hashes each text with
//! xxh3-128 (with the source name folded in for `scope = "source"`), the
//! reduce step groups equal hashes, and the first document in input order
//! is kept; every copy is dropped with the kept document's id. Input order
//! is the order of units, then of documents in a unit, so the same copies
//! go whatever the world size.

use std::sync::Arc;

use arrow_array::builder::FixedSizeBinaryBuilder;
use arrow_array::{new_null_array, RecordBatch};
use arrow_schema::{DataType, Field};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use super::{
    drop_decided, BuildContext, Global, Mode, Stage, StageError, StageOutput, StageSpec, Step,
};
use crate::batch::Core;
use crate::phased::{self, BatchInput, DocKeys, Keep, PhasedError, Plan, RunInput, ScanLayout, Scanned};
use crate::ledger::Reason;

pub const DEFAULT_PARTITIONS: usize = 64;

fn default_partitions() -> usize {
    DEFAULT_PARTITIONS
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExactDedupConfig {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub scope: Scope,
    /// Hash-range partitions, the reduce step's units of work (at least the
    /// largest world size you will run with).
    #[serde(default = "default_partitions")]
    pub partitions: usize,
}

impl Default for ExactDedupConfig {
    fn default() -> Self {
        ExactDedupConfig {
            mode: Mode::default(),
            scope: Scope::default(),
            partitions: DEFAULT_PARTITIONS,
        }
    }
}

impl ExactDedupConfig {
    pub fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        if self.partitions == 0 || self.partitions > 65_536 {
            return vec![(Some("partitions"), "must be in 1..=65536".into())];
        }
        Vec::new()
    }
}

/// Which documents are compared with each other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Across all sources.
    #[default]
    Global,
    /// Only within the same source (the Salamandra recipe).
    Source,
}

pub struct ExactDedup {
    config: ExactDedupConfig,
    /// The pass is the scan (keys out) rather than the apply.
    scanning: bool,
}

impl ExactDedup {
    pub fn new(config: ExactDedupConfig) -> Self {
        ExactDedup {
            config,
            scanning: false,
        }
    }

    fn key(&self, text_hash: u128, source: &str) -> u128 {
        match self.config.scope {
            Scope::Global => text_hash,
            Scope::Source => text_hash ^ xxh3_128(source.as_bytes()).rotate_left(1),
        }
    }
}

impl Stage for ExactDedup {
    fn name(&self) -> &'static str {
        <ExactDedupConfig as StageSpec>::TYPE
    }

    fn mode(&self) -> Mode {
        self.config.mode
    }

    fn fields(&self) -> Vec<Field> {
        vec![
            Field::new("text_hash", DataType::FixedSizeBinary(16), false),
            // Id of the document kept in this one's place, if it is a copy.
            Field::new("dup_of", DataType::Utf8, true),
        ]
    }

    fn global(&mut self) -> Option<&mut dyn Global> {
        Some(self)
    }

    fn process(&self, batch: &RecordBatch) -> Result<StageOutput, StageError> {
        let core = Core::of(batch);
        let rows = batch.num_rows();
        let mut hashes = FixedSizeBinaryBuilder::with_capacity(rows, 16);
        let mut scan = DocKeys::<u128>::with_rows(rows);
        for (row, t) in core.text.iter().enumerate() {
            let h = xxh3_128(t.unwrap_or_default().as_bytes());
            hashes
                .append_value(h.to_le_bytes())
                .expect("16 bytes into a 16-byte column");
            if self.scanning {
                scan.keys.push(self.key(h, core.source.value(row)));
                scan.end_row();
            }
        }
        let mut columns: Vec<arrow_array::ArrayRef> = vec![Arc::new(hashes.finish())];
        if self.scanning {
            scan.scores = vec![0; rows];
            columns.push(new_null_array(&DataType::Utf8, rows));
        }
        Ok(StageOutput {
            columns,
            scan: self.scanning.then_some(Scanned::Keys128(scan)),
            ..Default::default()
        })
    }
}

impl Global for ExactDedup {
    fn partitions(&self) -> usize {
        self.config.partitions
    }

    fn layout(&self) -> ScanLayout {
        ScanLayout::Keys {
            wide: true,
            table: true,
            shingles: false,
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
        drop_decided(batch, input, Reason::ExactDuplicate, out)
    }

    fn reduce(&self, plan: &Plan, part: usize) -> Result<Step, PhasedError> {
        phased::reduce_edges::<u128>(plan, part, None).map(Step::counts)
    }

    fn cluster(&self, plan: &Plan) -> Result<Step, PhasedError> {
        phased::cluster(plan, Keep::First, None).map(Step::counts)
    }
}

impl StageSpec for ExactDedupConfig {
    const TYPE: &'static str = "exact_dedup";

    fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        ExactDedupConfig::problems(self)
    }

    fn adds(&self) -> Vec<&'static str> {
        vec!["text_hash", "dup_of"]
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Stage>, StageError> {
        let _ = ctx;
        Ok(Box::new(ExactDedup::new(self.clone())))
    }

    fn example() -> Self {
        ExactDedupConfig {
            mode: Mode::Annotate,
            scope: Scope::Source,
            partitions: 7,
        }
    }
}
