//! Training shards: token ids in the indexed-dataset format Megatron-LM and
//! NeMo read, split into train/validation/test, grouped into families per
//! language, and mixed by a blend file.
//!
//! The final pass writes each unit's documents as parts ([`parts`]); the
//! `megatron` step concatenates them into the families' shards
//! ([`family`]) and writes the blend and the language shares ([`blend`]).

pub mod blend;
mod config;
pub mod family;
pub mod inspect;
pub mod megatron;
pub mod parts;

/// The `token_ids` field's metadata key for the tokenizer's vocabulary
/// size (the tokenize stage sets it; the shards' dtype follows from it).
pub const VOCAB_SIZE: &str = "forja.vocab_size";

pub use config::MegatronConfig;
pub use megatron::{IndexedReader, ShardError};
pub use parts::{Split, UnitParts};
