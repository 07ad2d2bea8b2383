//! Deduplication: exact, near-duplicate (MinHash-LSH) and repeated lines,
//! at corpus scale.
//!
//! The in-memory building blocks (signatures, banding, union-find) sit next
//! to the phased machinery that runs them across many tasks in a memory
//! budget: a binary container for intermediates ([`sections`]), an external
//! sort ([`extsort`]), and the scan / reduce / cluster / apply steps
//! ([`global`]). The stages that use them live in `stages/`.

pub mod datatrove;
pub mod extsort;
pub mod global;
pub mod lsh;
pub mod minhash;
pub mod sections;
pub mod union_find;

pub use global::{GlobalDir, Plan};
pub use lsh::Banding;
pub use minhash::{shingles, MinHasher};

#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Corrupt { path: String, message: String },
    #[error(
        "{docs} documents reach a global dedup stage; at most 4294967295 fit its compact indices"
    )]
    TooMany { docs: u64 },
    #[error("the {step} step needs {need} bytes for {docs} documents, more than the --mem budget of {budget}; raise --mem")]
    Memory {
        step: &'static str,
        need: usize,
        budget: usize,
        docs: u64,
    },
    #[error("{0}")]
    Missing(String),
    /// Word counts or training of the `train_tokenizer` stage.
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::train::TrainError),
}
