//! `exact_dedup`: drop documents whose normalized text was already seen.
//!
//! Hashing (xxh3-128) is the parallel part; the set lookup is the ordered
//! part, so the first occurrence in input order is the one kept whatever the
//! thread count. The id of the kept document is recorded with every dropped
//! copy. This is per run (per rank): corpus-wide dedup across tasks is a
//! phased stage of its own.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeBinaryBuilder, StringBuilder};
use arrow_array::{Array, FixedSizeBinaryArray, RecordBatch};
use arrow_schema::{DataType, Field};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use super::{Drop, Mode, Stage, StageError, StageOutput};
use crate::batch::Core;
use crate::hash::PassThroughState;
use crate::ledger::Reason;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExactDedupConfig {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub scope: Scope,
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
    /// Hash of every kept text -> id of the document that has it.
    seen: HashMap<u128, Box<str>, PassThroughState>,
    /// Entries added since the last checkpoint.
    fresh: Vec<(u128, Box<str>)>,
}

impl ExactDedup {
    pub fn new(config: ExactDedupConfig) -> Self {
        ExactDedup {
            config,
            seen: HashMap::default(),
            fresh: Vec::new(),
        }
    }

    fn key(&self, hash: &[u8], source: &str) -> u128 {
        let h = u128::from_le_bytes(hash.try_into().expect("16-byte hash"));
        match self.config.scope {
            Scope::Global => h,
            Scope::Source => h ^ xxh3_128(source.as_bytes()),
        }
    }
}

impl Stage for ExactDedup {
    fn name(&self) -> &'static str {
        "exact_dedup"
    }

    fn mode(&self) -> Mode {
        self.config.mode
    }

    fn fields(&self) -> Vec<Field> {
        vec![
            Field::new("text_hash", DataType::FixedSizeBinary(16), false),
            // Id of the earlier document with the same text, if any.
            Field::new("dup_of", DataType::Utf8, true),
        ]
    }

    fn process(&self, batch: &RecordBatch) -> Result<StageOutput, StageError> {
        let text = Core::of(batch).text;
        let mut hashes = FixedSizeBinaryBuilder::with_capacity(batch.num_rows(), 16);
        for t in text.iter() {
            let h = xxh3_128(t.unwrap_or_default().as_bytes());
            hashes
                .append_value(h.to_le_bytes())
                .expect("16 bytes into a 16-byte column");
        }
        Ok(StageOutput {
            text: None,
            columns: vec![Arc::new(hashes.finish())],
            drops: Vec::new(),
        })
    }

    fn ordered(&self) -> bool {
        true
    }

    fn decide(&mut self, batch: &RecordBatch, out: &mut StageOutput) -> Result<(), StageError> {
        let core = Core::of(batch);
        let hashes = out.columns[0]
            .as_any()
            .downcast_ref::<FixedSizeBinaryArray>()
            .expect("process made the hash column");
        let mut dup_of = StringBuilder::new();
        for row in 0..batch.num_rows() {
            let key = self.key(hashes.value(row), core.source.value(row));
            match self.seen.get(&key) {
                Some(first) => {
                    dup_of.append_value(first);
                    out.drops.push(Drop {
                        row,
                        reason: Reason::ExactDuplicate,
                        detail: first.to_string(),
                    });
                }
                None => {
                    dup_of.append_null();
                    let id: Box<str> = core.id.value(row).into();
                    self.seen.insert(key, id.clone());
                    self.fresh.push((key, id));
                }
            }
        }
        out.columns.push(Arc::new(dup_of.finish()));
        Ok(())
    }

    fn checkpoint(&mut self) -> Vec<u8> {
        let mut buf = Vec::new();
        for (key, id) in self.fresh.drain(..) {
            buf.extend_from_slice(&key.to_le_bytes());
            buf.extend_from_slice(&(id.len() as u32).to_le_bytes());
            buf.extend_from_slice(id.as_bytes());
        }
        buf
    }

    fn restore(&mut self, mut state: &[u8]) -> Result<(), StageError> {
        let bad = |m: &str| StageError::Restore {
            stage: "exact_dedup".into(),
            message: m.into(),
        };
        while !state.is_empty() {
            if state.len() < 20 {
                return Err(bad("truncated entry"));
            }
            let key = u128::from_le_bytes(state[..16].try_into().expect("16 bytes"));
            let len = u32::from_le_bytes(state[16..20].try_into().expect("4 bytes")) as usize;
            let id = state.get(20..20 + len).ok_or_else(|| bad("truncated id"))?;
            let id = std::str::from_utf8(id).map_err(|_| bad("id is not UTF-8"))?;
            self.seen.insert(key, id.into());
            state = &state[20 + len..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::CoreBuilder;

    fn batch(rows: &[(&str, &str)]) -> RecordBatch {
        let mut b = CoreBuilder::with_capacity(rows.len(), 64);
        for (i, (src, t)) in rows.iter().enumerate() {
            b.push(src, "f", i as u64 + 1, t, None, None);
        }
        b.finish()
    }

    fn run(stage: &mut ExactDedup, b: &RecordBatch) -> StageOutput {
        let mut out = stage.process(b).unwrap();
        stage.decide(b, &mut out).unwrap();
        out
    }

    #[test]
    fn keeps_first_occurrence_and_names_it() {
        let b = batch(&[("a", "x"), ("a", "y"), ("a", "x"), ("b", "x")]);
        let mut s = ExactDedup::new(ExactDedupConfig::default());
        let out = run(&mut s, &b);
        let rows: Vec<usize> = out.drops.iter().map(|d| d.row).collect();
        assert_eq!(rows, vec![2, 3]);
        assert_eq!(out.drops[0].detail, Core::of(&b).id.value(0));
    }

    #[test]
    fn source_scope_compares_within_a_source() {
        let b = batch(&[("a", "x"), ("b", "x"), ("b", "x")]);
        let mut s = ExactDedup::new(ExactDedupConfig {
            scope: Scope::Source,
            ..Default::default()
        });
        let out = run(&mut s, &b);
        assert_eq!(out.drops.len(), 1);
        assert_eq!(out.drops[0].row, 2);
    }

    #[test]
    fn checkpoint_restores_the_seen_set() {
        let b1 = batch(&[("a", "x"), ("a", "y")]);
        let mut s = ExactDedup::new(ExactDedupConfig::default());
        run(&mut s, &b1);
        let state = s.checkpoint();
        assert!(
            s.checkpoint().is_empty(),
            "a checkpoint drains what it saved"
        );
        let mut resumed = ExactDedup::new(ExactDedupConfig::default());
        resumed.restore(&state).unwrap();
        let out = run(&mut resumed, &batch(&[("a", "y"), ("a", "z")]));
        assert_eq!(out.drops.len(), 1);
        assert_eq!(out.drops[0].detail, Core::of(&b1).id.value(1));
        assert!(resumed.restore(&state[..5]).is_err());
    }
}
