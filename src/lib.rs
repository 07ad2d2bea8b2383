//! forja turns raw open-access text into LLM training data.
//!
//! A manifest names sources, stages and outputs; [`run`] streams documents
//! through the stages as Arrow record batches and accounts for every one of
//! them: kept in the output shards, or dropped or rejected with a reason in
//! the ledger. Modules stay private; this file is the public surface.

mod batch;
pub mod cluster;
pub mod dedup;
mod files;
#[doc(hidden)]
pub mod fuzzing;
mod hash;
mod io;
mod ledger;
pub mod lid;
pub mod lm;
mod manifest;
pub mod provenance;
pub mod report;
mod runner;
pub mod shards;
mod stages;
mod text;
pub mod tokenizer;

pub use batch::{core_fields, core_schema, doc_id, Core, CoreBuilder};
pub use files::{atomic_write, journal, FORJA_DIR, MEGATRON_DIR, REPORT, RUN_MANIFEST};
pub use io::{decode_lines, expand_pattern, InputError, ReadError, Unit};
pub use ledger::{
    read_parquet as read_ledger, FileStats, FileStatus, Kind, LedgerRow, Reason, SourceCounts,
    StageCounts, Stats,
};
pub use manifest::{
    load as load_manifest, manifest_hash, parse as parse_manifest, InputFormat, LoadedManifest,
    Manifest, MegatronConfig, OutputConfig, OutputFormat, Problem, Problems, ReaderConfig,
    SourceConfig, MANIFEST_VERSION,
};
pub use runner::interrupt;
pub use runner::{
    build_stages, collect_stats, finish, progress_bar, run, steps, Finished, RunError, RunOptions,
    RunRecord, RunStats, RunSummary,
};
pub use stages::{
    apply, normalize_text, Applied, BuildContext, Drop, ExactDedupConfig, Global, LengthConfig,
    Lid, LidBackend, LidConfig, Mode, NearDedupConfig, NormalizeConfig, PerplexityConfig,
    PerplexityFilter, PiiConfig, PiiKind, PiiMode, Position, Quality, QualityConfig, QualityRule,
    RepeatedLinesConfig, Scope, Stage, StageConfig, StageError, StageOutput, TextUnit,
};
pub use text::words;
