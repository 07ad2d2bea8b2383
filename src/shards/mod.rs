//! Training shards: token ids in the indexed-dataset format Megatron-LM and
//! NeMo read, split into train/validation/test, grouped into families per
//! language, and mixed by a blend file.
//!
//! The final pass writes each unit's documents as parts ([`parts`]); the
//! `megatron` step concatenates them into the families' shards
//! ([`family`]) and writes the blend and the language shares ([`blend`]).

pub mod blend;
pub mod family;
pub mod inspect;
pub mod megatron;
pub mod parts;

/// The output folder's subfolder for shards and blend files.
pub const MEGATRON_DIR: &str = "megatron";

pub use megatron::{DType, IndexedReader, IndexedWriter, ShardError};
pub use parts::{Split, Splitter, UnitParts};
