//! forja turns raw open-access text into LLM training data.
//!
//! A manifest names sources, stages and outputs; [`run`] streams documents
//! through the stages as Arrow record batches and accounts for every one of
//! them: kept in the output shards, or dropped or rejected with a reason in
//! the ledger. Modules stay private; this file is the public surface: what
//! the `forja` command line and the tests use, re-exported flat.

#![warn(missing_docs)]

mod batch;
mod cluster;
mod dedup;
mod files;
#[doc(hidden)]
pub mod fuzzing;
mod hash;
mod io;
mod ledger;
mod lid;
mod lm;
mod manifest;
mod phased;
mod provenance;
mod report;
mod runner;
mod shards;
mod stages;
mod text;
mod tokenizer;

// Manifests, and running them.
pub use manifest::{
    load as load_manifest, manifest_hash, parse as parse_manifest, InputFormat, LoadedManifest,
    Manifest, Problem, Problems, MANIFEST_VERSION,
};
pub use runner::interrupt::install as install_signal_handlers;
pub use runner::{
    build_stages, collect_stats, finish, progress_bar, run, steps, Finished, RunError, RunOptions,
    RunStats, RunSummary,
};

// What a run writes: document ids, the ledger, the output folder's names.
pub use batch::doc_id;
pub use files::{atomic_write, REPORT};
pub use ledger::{read_parquet as read_ledger, Stats};

// Language identification, as the `lid` stage builds it.
pub use lid::eval::{
    evaluate as evaluate_lid, read_samples as read_lid_samples, Report as LidReport,
};
pub use lid::groups::{describe as describe_groups, Calibration as LidCalibration, GroupModel};
pub use lid::SALAMANDRA;
pub use stages::{BuildContext, Lid, LidBackend, LidConfig, Mode};

// Language models (the perplexity stage's).
pub use lm::{shape as model_shape, DocScore, Llama, LmDevice, Model, Precision, ScoreOptions};

// Megatron shards, the mixture and `forja inspect`.
pub use shards::blend::{blend, Families, Share};
pub use shards::inspect::{
    check_families, decode as decode_tokens, find_tokenizer, load_tokenizer, megatron_dir,
    shard_prefix, summary as shard_summary,
};
pub use shards::{IndexedReader, Split};

// Provenance, verification and the report.
pub use provenance::audit::{doc_fate, licences, token_origin};
pub use provenance::verify;
pub use report::write as write_report;

// Tokenizer training and fertility.
pub use tokenizer::corpus::{list_files as list_corpus_files, CorpusSpec};
pub use tokenizer::fertility::measure as measure_fertility;
pub use tokenizer::train::{
    count_files as count_words, train_to_dir as train_tokenizer, Device as TrainDevice,
    TrainConfig, WordCounts,
};

// Slurm job arrays.
pub use cluster::slurm::{
    array_spec, plan as plan_slurm_jobs, single_task, submit as submit_slurm_jobs,
    write_scripts as write_slurm_scripts, RunSpec,
};
