//! The engine of every phased stage: exact and near dedup, repeated lines,
//! perplexity percentiles and tokenizer word counts all run through it.
//!
//! A phased (global) stage runs in four steps, with a barrier after each:
//!
//! 1. **scan** (one task per rank, over its units): the pipeline up to the
//!    stage runs and the stage's pure `process` returns what it found in
//!    each batch ([`Scanned`]): keys by hash-range partition, with a table of
//!    document ids and scores and, when verification is on, the documents'
//!    shingles; or the stage's own records, folded per unit by its
//!    [`Records`] combiner. The engine's [`ScanWriter`] writes them, one
//!    sectioned file per unit (`keys/<unit>.bin`) and its marker;
//! 2. **reduce** (partition `p` on rank `p % W`): every unit's partition
//!    `p` is sorted in a memory budget (external merge past it) and equal
//!    keys become edges between documents (`reduce/<p>.bin`), or, for
//!    repeated lines, the keys seen in enough documents; a stage with its
//!    own records reduces them to bytes the engine writes;
//! 3. **cluster** (one task): union-find over compact `u32` document
//!    indices picks the document each cluster keeps and writes, per unit,
//!    the ordinals to drop and the id of their kept representative
//!    (`decisions/<unit>.bin`); a stage with its own records gathers the
//!    partitions into a summary the engine writes;
//! 4. **apply**: the next pass over the input; the engine's [`ApplyReader`]
//!    hands each batch what was decided for its rows ([`BatchInput`]), checks
//!    that the pass sees as many documents per unit as the scan did, and the
//!    stage drops them, with the reason and the representative's id in the
//!    ledger.
//!
//! Stages never see a path: the engine writes and reads every section,
//! marker and sectioned file ([`sections`]), and sorts past memory with
//! [`extsort`]. A document's index is its unit's offset (the documents of
//! all earlier units that reached the stage) plus its ordinal in the unit,
//! so indices, and every decision, are the same whatever the world size.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dedup::union_find::{SizedUnionFind, UnionFind};
use extsort::{Key, Sorter};
use sections::{SectionWriter, Sections};

/// What a sectioned file holds.
pub const TAG_KEYS64: u32 = 0x4B45_0008;
pub const TAG_KEYS128: u32 = 0x4B45_0010;
pub const TAG_EDGES: u32 = 0x4544_4745;
/// Edges with their band key, in datatrove's chain order (`keep = datatrove`).
pub const TAG_CHAIN: u32 = 0x4348_4149;
pub const TAG_DECISIONS: u32 = 0x4445_4349;
pub const TAG_FREQUENT: u32 = 0x4652_4551;
/// A unit's word counts (the tokenizer-training scan).
pub const TAG_WORDS: u32 = 0x5743_0001;
/// A unit's perplexity scores (the perplexity scan); `02`: each document's
/// record framed by the engine.
pub const TAG_SCORES: u32 = 0x5050_4c02;

fn keys_tag<K: Key>() -> u32 {
    if K::BYTES == 8 {
        TAG_KEYS64
    } else {
        TAG_KEYS128
    }
}

/// Opens a unit's keys file, whatever its key width.
fn open_keys(path: &Path) -> Result<Sections, PhasedError> {
    // A tokenizer-training scan writes word counts in the same sectioned file.
    Sections::open_any(path, &[TAG_KEYS64, TAG_KEYS128, TAG_WORDS, TAG_SCORES])
}

/// Appends a `(u32, string)` record: a document-table entry (score, id) or
/// a decision (ordinal, id of the kept document).
fn put_record(out: &mut Vec<u8>, n: u32, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s);
}

/// Calls `f` on every `(u32, string)` record of a section.
fn for_each_record(
    bytes: &[u8],
    path: &Path,
    mut f: impl FnMut(u32, &str),
) -> Result<(), PhasedError> {
    let mut at = 0;
    while at < bytes.len() {
        let bad = || PhasedError::Corrupt {
            path: path.display().to_string(),
            message: format!("damaged record at byte {at}"),
        };
        let head = bytes.get(at..at + 6).ok_or_else(bad)?;
        let n = u32::from_le_bytes(head[..4].try_into().expect("4"));
        let len = u16::from_le_bytes(head[4..6].try_into().expect("2")) as usize;
        let s = bytes.get(at + 6..at + 6 + len).ok_or_else(bad)?;
        f(n, std::str::from_utf8(s).map_err(|_| bad())?);
        at += 6 + len;
    }
    Ok(())
}

fn parse_records<K: Key>(
    bytes: &[u8],
    mut f: impl FnMut(K, u32) -> Result<(), PhasedError>,
) -> Result<(), PhasedError> {
    for r in bytes.chunks_exact(K::BYTES + 4) {
        f(
            K::get(r),
            u32::from_le_bytes(r[K::BYTES..].try_into().expect("4 bytes")),
        )?;
    }
    Ok(())
}

/// What can go wrong in a phased step.
#[derive(Debug, thiserror::Error)]
pub enum PhasedError {
    /// Reading or writing one of the engine's files.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file that is not what the engine wrote, or a pass that does not
    /// see what the scan saw.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// More documents than compact indices hold.
    #[error(
        "{docs} documents reach a global dedup stage; at most 4294967295 fit its compact indices"
    )]
    TooMany {
        /// Documents that reached the stage.
        docs: u64,
    },
    /// A step that does not fit the `--mem` budget.
    #[error("the {step} step needs {need} bytes for {docs} documents, more than the --mem budget of {budget}; raise --mem")]
    Memory {
        /// The step.
        step: &'static str,
        /// Bytes it needs.
        need: usize,
        /// The budget.
        budget: usize,
        /// Documents that reached the stage.
        docs: u64,
    },
    /// Something a step needs is not there.
    #[error("{0}")]
    Missing(String),
    /// Word counts or training of the `train_tokenizer` stage.
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::train::TrainError),
}

/// Section layout of a document-level keys file: `partitions` key sections,
/// then the document table, then shingles and their offsets.
fn doc_table(parts: usize) -> usize {
    parts
}
fn shingle_data(parts: usize) -> usize {
    parts + 1
}
fn shingle_index(parts: usize) -> usize {
    parts + 2
}

mod apply;
mod cluster;
mod dir;
pub mod extsort;
mod reduce;
mod scan;
pub mod sections;

pub use apply::*;
pub use cluster::*;
pub use dir::*;
pub use reduce::*;
pub use scan::*;

#[cfg(test)]
mod tests;
