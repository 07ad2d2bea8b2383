//! The ground floor for files: what every other module may use to name,
//! open and write files, and nothing that knows about documents.
//!
//! - [`paths`]: the output folder's names ([`FORJA_DIR`], [`RUN_MANIFEST`],
//!   ...), manifest path resolution and the URL test;
//! - [`atomic`]: temporary names, commits and whole-file atomic writes;
//! - [`codec`]: decompressing opens, the codec told by magic bytes;
//! - [`guarded_map`]: read-only memory maps that survive their file
//!   shrinking under them;
//! - [`journal`]: the record of every file a run wrote, so that forja
//!   deletes only those.
//!
//! It imports nothing from the rest of the crate.

pub mod atomic;
pub mod codec;
pub mod guarded_map;
pub mod journal;
pub mod paths;

pub use atomic::{atomic_write, commit, is_temporary, tmp_path};
pub use codec::{open_decompressed, Codec, ZSTD_WINDOW_LOG_MAX};
pub use paths::{
    is_url, rank_record, ranks_dir, relative_to, resolve, FORJA_DIR, MEGATRON_DIR, REPORT,
    RUN_MANIFEST,
};
