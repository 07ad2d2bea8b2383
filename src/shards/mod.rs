//! Training shards: token ids in the indexed-dataset format Megatron-LM and
//! NeMo read.

pub mod megatron;

pub use megatron::{DType, IndexedReader, IndexedWriter, ShardError};
