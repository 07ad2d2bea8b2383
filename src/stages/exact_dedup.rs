//! `exact_dedup`: drop documents whose normalized text another document
//! already has, across every source and task of the run.
//!
//! A global stage (see `dedup::global`): the scan hashes each text with
//! xxh3-128 (with the source name folded in for `scope = "source"`), the
//! reduce step groups equal hashes, and the first document in input order
//! is kept; every copy is dropped with the kept document's id. Input order
//! is the order of units, then of documents in a unit, so the same copies
//! go whatever the world size.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::FixedSizeBinaryBuilder;
use arrow_array::{new_null_array, RecordBatch};
use arrow_schema::{DataType, Field};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use super::{drop_decided, BuildContext, Global, Mode, Stage, StageError, StageOutput, StageSpec};
use crate::batch::Core;
use crate::dedup::global::{self, DocRole, GlobalDir, Keep, Plan};
use crate::dedup::DedupError;
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
    role: DocRole,
}

impl ExactDedup {
    pub fn new(config: ExactDedupConfig) -> Self {
        ExactDedup {
            config,
            role: DocRole::Idle,
        }
    }

    fn key(&self, text_hash: u128, source: &str) -> u128 {
        match self.config.scope {
            Scope::Global => text_hash,
            Scope::Source => text_hash ^ xxh3_128(source.as_bytes()).rotate_left(1),
        }
    }
}

fn fail(e: DedupError) -> StageError {
    StageError::Dedup {
        stage: <ExactDedupConfig as StageSpec>::TYPE.into(),
        source: e,
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
        let text = Core::of(batch).text;
        let mut hashes = FixedSizeBinaryBuilder::with_capacity(batch.num_rows(), 16);
        let mut keys = Vec::with_capacity(batch.num_rows());
        for t in text.iter() {
            let h = xxh3_128(t.unwrap_or_default().as_bytes());
            keys.push(h);
            hashes
                .append_value(h.to_le_bytes())
                .expect("16 bytes into a 16-byte column");
        }
        Ok(StageOutput {
            columns: vec![Arc::new(hashes.finish())],
            scratch: Some(Box::new(keys)),
            ..Default::default()
        })
    }

    fn ordered(&self) -> bool {
        true
    }

    fn enter_unit(&mut self, unit: usize) -> Result<(), StageError> {
        self.role
            .enter_unit::<u128>(unit, self.config.partitions)
            .map_err(fail)
    }

    fn decide(&mut self, batch: &RecordBatch, out: &mut StageOutput) -> Result<(), StageError> {
        let rows = batch.num_rows();
        if !self.role.is_scan() {
            let dup_of = drop_decided(&mut self.role, rows, Reason::ExactDuplicate, out);
            out.columns.push(dup_of);
            return Ok(());
        }
        let core = Core::of(batch);
        let hashes = out
            .scratch
            .take()
            .and_then(|s| s.downcast::<Vec<u128>>().ok())
            .expect("process made the keys");
        for (row, h) in hashes.into_iter().enumerate() {
            let key = self.key(h, core.source.value(row));
            let w = self.role.keys().expect("scanning a unit");
            let ord = w.doc(core.id.value(row), 0, None).map_err(fail)?;
            w.key(key, ord).map_err(fail)?;
        }
        out.columns.push(new_null_array(&DataType::Utf8, rows));
        Ok(())
    }

    fn end_unit(&mut self) -> Result<(), StageError> {
        self.role.finish_unit(false).map_err(fail)
    }
}

impl Global for ExactDedup {
    fn partitions(&self) -> usize {
        self.config.partitions
    }

    fn begin_scan(&mut self, dir: &GlobalDir, budget: usize) {
        self.role = DocRole::scan(dir, budget);
    }

    fn begin_apply(&mut self, dir: &GlobalDir) -> Result<(), DedupError> {
        self.role = DocRole::apply(dir);
        Ok(())
    }

    fn reduce(&self, plan: &Plan, part: usize) -> Result<BTreeMap<String, u64>, DedupError> {
        global::reduce_edges::<u128>(plan, part, None)
    }

    fn cluster(&self, plan: &Plan) -> Result<BTreeMap<String, u64>, DedupError> {
        global::cluster(plan, Keep::First)
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
