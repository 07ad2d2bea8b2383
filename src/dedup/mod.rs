//! Near-duplicate detection: MinHash signatures, LSH banding, verification
//! by exact Jaccard, and union-find clustering over compact indices.
//!
//! These are the building blocks of the corpus-wide, phased dedup (hash
//! and bucket tasks per rank, then clustering, then a filter pass). Here
//! they run in memory over one set of documents, which is also how the
//! recall and precision of the method are measured on real text.

pub mod lsh;
pub mod minhash;
pub mod union_find;

pub use lsh::{cluster, Banding, Clusters};
pub use minhash::{jaccard, shingles, MinHasher};
pub use union_find::UnionFind;
