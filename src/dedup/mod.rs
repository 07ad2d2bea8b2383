//! Deduplication: exact, near-duplicate (MinHash-LSH) and repeated lines,
//! at corpus scale.
//!
//! The in-memory building blocks: signatures, banding, union-find and
//! datatrove's clustering order. The phased engine (`phased/`) runs them
//! across many tasks in a memory budget; the stages that use them live in
//! `stages/`.

pub mod datatrove;
pub mod lsh;
pub mod minhash;
pub mod union_find;

pub use lsh::Banding;
pub use minhash::{shingles, MinHasher};
