//! The runner: owns threads, channels, units of work, markers and resume.
//!
//! Three kinds of work run at once, joined by bounded channels so a slow
//! part holds the others back instead of growing memory:
//!
//! ```text
//! reader thread --chunks--> workers (rayon): decode, stages --batches--> writer thread
//! ```
//!
//! Workers take a window of chunks, decode them and run each stage's pure
//! `process` in parallel; for a phased stage, the engine (`phased`) then
//! writes what its scan found, or reads back what was decided for each
//! batch, over the window in input order, and the stage's pure `apply` runs
//! in parallel again. The writer commits each unit (shards, ledger part, stats) under
//! temporary names and writes the unit's marker last; a resumed run keeps
//! the completed prefix of units and carries on, giving the same bytes as an
//! uninterrupted run.
//!
//! The rooms: the stream (`stream.rs`: reader, window, process, the
//! engine's ordered part, apply),
//! the sink (`sink.rs`: the writer thread's units), the phases of global
//! stages and their barriers (`phases.rs`), the run's end (`complete.rs`:
//! stats, provenance, report), markers and layout (`units.rs`), and the
//! output folder's ownership (`owner.rs`).

mod complete;
pub mod interrupt;
#[cfg(test)]
mod near_dedup_tests;
mod owner;
mod phases;
mod sink;
mod stream;
mod units;

use complete::complete_run;
pub use complete::{finish, Finished};
use phases::{global_steps, Pass};
use sink::Sink;
pub use stream::progress_bar;
use stream::stream;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use crossbeam_channel::{bounded, Receiver, Sender};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::batch;
use crate::io::{self, Chunk, InputError, ReadError, ShardWriter, SourceSpec, Unit};
use crate::ledger::{self, FileStats, LedgerRow, Stats};
use crate::manifest::LoadedManifest;
use crate::phased::{GlobalDir, Plan};
use crate::stages::{self, Stage, StageError, StageOutput};

pub use units::{collect_stats, RunRecord, RunStats, FORJA_DIR};

/// How a run is executed; nothing here changes its output.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads for decoding and stages (the reader and writer have their own).
    pub threads: usize,
    /// This task's rank in `0..world_size`.
    pub rank: usize,
    /// Tasks the run is split across.
    pub world_size: usize,
    /// Continue a killed run from its completed units.
    pub resume: bool,
    /// Draw a progress bar (when stderr is a terminal).
    pub progress: bool,
    /// Overrides the manifest's output folder.
    pub output: Option<PathBuf>,
    /// Memory budget in bytes for the global steps (key buffers, sorts,
    /// clustering); they spill to disk past it.
    pub mem: usize,
    /// Run only this step (see [`steps`]); all of them when `None`.
    pub phase: Option<String>,
    /// Write into an output folder that exists, is not empty and holds no
    /// forja run (forja still deletes nothing there that it did not write).
    pub force: bool,
    /// Log a progress line this often (target `forja::progress`, level
    /// info): for runs without a terminal, where no bar is drawn.
    pub log_every: Option<std::time::Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            rank: 0,
            world_size: 1,
            resume: false,
            progress: true,
            output: None,
            mem: 2 << 30,
            phase: None,
            force: false,
            log_every: None,
        }
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An input pattern or file could not be planned.
    #[error(transparent)]
    Input(#[from] InputError),
    /// An input could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A stage failed.
    #[error(transparent)]
    Stage(#[from] StageError),
    /// Megatron shards could not be written.
    #[error(transparent)]
    Shard(#[from] crate::shards::ShardError),
    /// The run manifest could not be written.
    #[error(transparent)]
    Provenance(#[from] crate::provenance::ProvenanceError),
    /// The report could not be written.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// Object storage failed.
    #[error(transparent)]
    Remote(#[from] crate::io::remote::RemoteError),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// `--rank` is not below `--world-size`.
    #[error("--rank {rank} is not below --world-size {world_size}")]
    BadRank {
        /// The rank given.
        rank: usize,
        /// The world size given.
        world_size: usize,
    },
    /// `--resume` refused: the manifest, an input or the world size changed.
    #[error("cannot resume in {dir}: {message}")]
    Resume {
        /// The output folder.
        dir: String,
        /// What changed.
        message: String,
    },
    /// Another run holds the output folder.
    #[error("{dir} is in use by another run ({holder}); wait for it to end or use another output folder")]
    Locked {
        /// The output folder.
        dir: String,
        /// Host, pid, rank and start time of the run that holds it.
        holder: String,
    },
    /// The output folder holds files no forja run wrote.
    #[error("{dir} exists and holds files that no forja run wrote ({list}); use a new output folder, or --force to write there anyway (forja never deletes files it did not write)")]
    NotOurs {
        /// The output folder.
        dir: String,
        /// Some of the files.
        list: String,
    },
    /// The output folder is or holds an input.
    #[error("{0}")]
    Overlap(String),
    /// A step's predecessor is not complete, or another rank failed.
    #[error("{0}")]
    Plan(String),
    /// The counts do not add up: a document went missing.
    #[error("documents went missing: {0}")]
    Invariant(String),
    #[error(
        "stopped by signal {signal} after the last whole unit; run again with --resume to go on"
    )]
    /// SIGINT or SIGTERM stopped the run at a unit boundary.
    Interrupted {
        /// The signal's number.
        signal: i32,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a finished rank reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// This rank's funnel (empty when only an earlier step ran).
    pub stats: Stats,
    /// Where the outputs are.
    pub output_dir: PathBuf,
    /// Units of this rank.
    pub units_total: usize,
    /// Units taken from an earlier, interrupted run.
    pub units_resumed: usize,
    /// The merged funnel, once every rank of the run has finished.
    pub merged: Option<Stats>,
    /// Wall time of this task.
    pub elapsed: Duration,
    /// Bytes of input this task read.
    pub input_bytes: u64,
    /// The steps this task ran, in order.
    pub steps: Vec<String>,
    /// The `megatron` folder, once its blend and share table are written.
    pub megatron: Option<PathBuf>,
}

/// The steps of a run, in order: three per global stage (scan, reduce,
/// cluster), the final pass, and with Megatron output the step that merges
/// the units' token parts into shards. `--phase` takes one of these names.
pub fn steps(m: &LoadedManifest, stages: &mut [Box<dyn Stage>]) -> Vec<String> {
    let mut out = Vec::new();
    for s in stages.iter_mut() {
        let name = s.name();
        if s.global().is_some() {
            for step in ["scan", "reduce", "cluster"] {
                out.push(format!("{name}:{step}"));
            }
        }
    }
    out.push("final".into());
    if megatron_on(m) {
        out.push(MEGATRON_STEP.into());
    }
    out
}

const MEGATRON_STEP: &str = "megatron";

fn megatron_on(m: &LoadedManifest) -> bool {
    m.manifest
        .output
        .formats
        .contains(&crate::manifest::OutputFormat::Megatron)
}

/// What every pass of one task shares.
struct Ctx<'a> {
    m: &'a LoadedManifest,
    opts: &'a RunOptions,
    layout: &'a units::Layout,
    all_units: &'a [Unit],
    pool: &'a rayon::ThreadPool,
    /// Every step of the run, in order (see [`steps`]).
    steps: &'a [String],
    run_id: String,
    started: std::time::SystemTime,
    /// Wall nanoseconds spent in each stage (process, the engine and apply), all passes.
    stage_nanos: Vec<AtomicU64>,
}

impl Ctx<'_> {
    fn mine(&self) -> Vec<Unit> {
        self.all_units
            .iter()
            .filter(|u| u.index % self.opts.world_size == self.opts.rank)
            .cloned()
            .collect()
    }

    /// True if this task runs `step` (all of them without `--phase`).
    fn runs(&self, step: &str) -> bool {
        self.opts.phase.as_deref().is_none_or(|p| p == step)
    }
}

/// Runs one rank of a manifest to completion: for each global stage its
/// scan, reduce and cluster steps with a barrier after each, then the
/// final pass that writes the output. With `--phase`, only that step.
pub fn run(m: &LoadedManifest, opts: &RunOptions) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    if opts.world_size == 0 || opts.rank >= opts.world_size {
        return Err(RunError::BadRank {
            rank: opts.rank,
            world_size: opts.world_size,
        });
    }
    let out = opts.output.clone().unwrap_or_else(|| m.output_dir());
    let all_units = m.units()?;
    let mut stages = build_stages(m)?;
    let all_steps = steps(m, &mut stages);
    if let Some(p) = &opts.phase {
        if !all_steps.contains(p) {
            return Err(RunError::Plan(format!(
                "--phase {p}: this manifest's steps are {}",
                all_steps.join(", ")
            )));
        }
    }
    // Loading the manifest checked its own `output.dir`; `--out` and a
    // staging folder for object storage are checked here.
    if opts.output.is_some() || m.output_url().is_some() {
        let patterns = m.manifest.patterns();
        let files = m.inputs.iter().flatten().map(|(p, _)| p.as_path());
        if let Some(why) = io::output_overlap(&out, &m.base, &patterns, files) {
            return Err(RunError::Overlap(why));
        }
    }
    if !goes_on(opts, &all_steps) && !opts.force {
        if let Some(list) = owner::foreign_contents(&out)? {
            return Err(RunError::NotOurs {
                dir: out.display().to_string(),
                list,
            });
        }
    }
    let _lock = owner::lock_folder(&out, opts.rank, opts.world_size)?;
    let record = RunRecord::new(
        m,
        &all_units,
        opts.world_size,
        owner::stamp_inputs(&all_units)?,
    );
    let layout = units::Layout::new(&out, &m.manifest, opts.rank, opts.world_size);
    let result = start_and_run(
        m,
        opts,
        &record,
        &layout,
        &all_units,
        &mut stages,
        &all_steps,
        started,
    );
    match &result {
        // A refusal changes nothing in the folder (and another run may hold it).
        Err(RunError::Resume { .. } | RunError::Locked { .. }) | Ok(_) => {}
        Err(e) => layout.record_failure(&e.to_string()),
    }
    result
}

/// True when this task goes on from an earlier one in the folder: with
/// `--resume`, or running a step after the manifest's first.
fn goes_on(opts: &RunOptions, all_steps: &[String]) -> bool {
    opts.resume || opts.phase.as_deref().is_some_and(|p| p != all_steps[0])
}

#[allow(clippy::too_many_arguments)]
fn start_and_run(
    m: &LoadedManifest,
    opts: &RunOptions,
    record: &RunRecord,
    layout: &units::Layout,
    all_units: &[Unit],
    stages: &mut [Box<dyn Stage>],
    all_steps: &[String],
    started: Instant,
) -> Result<RunSummary, RunError> {
    if goes_on(opts, all_steps) {
        layout.check_record(record)?;
    } else {
        layout.check_not_foreign(record)?;
    }
    layout.write_record(record)?;
    let journal_at = layout.root.join(FORJA_DIR);
    let _journal =
        crate::files::journal::Journal::open(&layout.root, &units::journal_tag(opts.rank))
            .map_err(io_err(&journal_at))?;
    layout.clear_failure()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.max(1))
        .thread_name(|i| format!("forja-worker-{i}"))
        .build()
        .map_err(|e| RunError::Plan(format!("cannot start worker threads: {e}")))?;
    let ctx = Ctx {
        m,
        opts,
        layout,
        all_units,
        pool: &pool,
        steps: all_steps,
        run_id: format!("{}-{}", record.manifest_hash, record.inputs_hash),
        started: std::time::SystemTime::now(),
        stage_nanos: stages.iter().map(|_| AtomicU64::new(0)).collect(),
    };
    let summary = run_steps(&ctx, stages, started)?;
    let timings: Vec<(String, f64)> = stages
        .iter()
        .zip(&ctx.stage_nanos)
        .map(|(s, n)| (s.name().to_string(), n.load(Ordering::Relaxed) as f64 / 1e9))
        .collect();
    let rank_run = crate::provenance::RankRun {
        rank: opts.rank,
        world_size: opts.world_size,
        threads: opts.threads,
        phase: opts.phase.clone(),
        steps: summary.steps.clone(),
        seconds: summary.elapsed.as_secs_f64(),
        stage_seconds: timings.iter().cloned().collect(),
    };
    crate::provenance::record_rank(&layout.root, &rank_run)?;
    // Whichever task finds the run complete writes the run manifest; a task
    // that ends after it (another rank's last families) writes it again,
    // so that every rank's record is in it.
    let complete = if megatron_on(m) {
        summary.megatron.is_some()
    } else {
        summary.merged.is_some()
    };
    if complete || layout.root.join(crate::files::RUN_MANIFEST).exists() {
        complete_run(&layout.root, m, all_units)?;
    }
    Ok(summary)
}

fn run_steps(
    ctx: &Ctx,
    stages: &mut [Box<dyn Stage>],
    started: Instant,
) -> Result<RunSummary, RunError> {
    let mut ran = Vec::new();
    let globals: Vec<usize> = (0..stages.len())
        .filter(|&i| stages[i].global().is_some())
        .collect();
    // The engine's side of each phased stage in the pass under way.
    let mut passes: Vec<Option<Pass>> = stages.iter().map(|_| None).collect();
    for &g in &globals {
        ran.extend(global_steps(ctx, stages, &mut passes, g)?);
    }
    let out = ctx.layout.root.clone();
    let mut summary = RunSummary {
        stats: Stats::default(),
        output_dir: out,
        units_total: 0,
        units_resumed: 0,
        merged: None,
        elapsed: started.elapsed(),
        input_bytes: 0,
        steps: Vec::new(),
        megatron: None,
    };
    if ctx.runs("final") {
        ran.push("final".into());
        let (stats, units_total, units_resumed, input_bytes) =
            final_pass(ctx, stages, &mut passes)?;
        summary.merged = ctx.layout.merge_if_complete()?;
        summary.stats = stats;
        summary.units_total = units_total;
        summary.units_resumed = units_resumed;
        summary.input_bytes = input_bytes;
    }
    if megatron_on(ctx.m) && ctx.runs(MEGATRON_STEP) {
        ctx.barrier("the final step", || {
            ctx.all_units
                .iter()
                .filter(|u| !ctx.layout.unit_done(u.index))
                .map(|u| format!("unit {}", u.index))
                .collect()
        })?;
        summary.megatron = megatron_step(ctx)?;
        ran.push(MEGATRON_STEP.into());
    }
    summary.steps = ran;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Merges this rank's share of the families (family i goes to rank
/// i mod W); whichever rank finds every family done writes the blend, the
/// share table and a copy of the tokenizer. Returns the folder if it did.
fn megatron_step(ctx: &Ctx) -> Result<Option<PathBuf>, RunError> {
    use crate::shards::{blend, family};
    let m = &ctx.m.manifest;
    let cfg = &m.output.megatron;
    let layout = ctx.layout;
    let units: Vec<(PathBuf, &str)> = ctx
        .all_units
        .iter()
        .map(|u| (layout.parts_dir(u.index), m.sources[u.source].name.as_str()))
        .collect();
    let plans = family::plan(&units, cfg.by_source)?;
    let dir = layout.root.join(crate::files::MEGATRON_DIR);
    let (w, rank) = (ctx.opts.world_size, ctx.opts.rank);
    let mine: Vec<usize> = (rank..plans.len()).step_by(w).collect();
    tracing::info!(
        "megatron: {} families, {} on this rank, shards of {} tokens",
        plans.len(),
        mine.len(),
        cfg.shard_tokens
    );
    for i in mine {
        let marker = layout.family_marker(i);
        if ctx.opts.resume && marker.exists() {
            continue;
        }
        let fam = family::merge(&plans[i], &dir, cfg.shard_tokens)?;
        units::write_json(&marker, &fam)?;
    }
    if !(0..plans.len()).all(|i| layout.family_marker(i).exists()) {
        return Ok(None);
    }
    let mut families = Vec::with_capacity(plans.len());
    for i in 0..plans.len() {
        families.push(units::read_json::<family::Family>(
            &layout.family_marker(i),
        )?);
    }
    let fams = blend::Families {
        mixture: blend::Mixture {
            factors: cfg.factors.clone(),
            source_weights: m
                .sources
                .iter()
                .map(|s| (s.name.clone(), s.weight))
                .collect(),
        },
        families,
    };
    fams.save(&dir)?;
    blend::blend(&fams)
        .write(&dir, None)
        .map_err(io_err(&dir))?;
    // The tokenizer travels with the shards: `forja inspect` and trainers find it there.
    if let Some(tok) = m.stages.iter().find_map(|s| match s {
        crate::stages::StageConfig::Tokenize(c) => Some(ctx.m.resolve(&c.tokenizer)),
        _ => None,
    }) {
        let bytes = std::fs::read(&tok).map_err(io_err(&tok))?;
        let to = dir.join("tokenizer.json");
        crate::files::atomic_write(&to, &bytes).map_err(io_err(&to))?;
    }
    Ok(Some(dir))
}

/// The last pass: every stage, output shards, ledger and funnel.
fn final_pass(
    ctx: &Ctx,
    stages: &mut [Box<dyn Stage>],
    passes: &mut [Option<Pass>],
) -> Result<(Stats, usize, usize, u64), RunError> {
    let layout = ctx.layout;
    let mine = ctx.mine();
    let stage_names: Vec<&str> = stages.iter().map(|s| s.name()).collect();
    // Resume: restore the completed prefix of this rank's units.
    let mut rank_stats = Stats::new(&stage_names);
    let mut resumed = 0;
    if ctx.opts.resume {
        for u in &mine {
            let Some(done) = layout.load_done(u.index)? else {
                break;
            };
            rank_stats.merge(&done.stats);
            resumed += 1;
        }
    }
    layout.clear_rank()?;
    let todo: Vec<Unit> = mine[resumed..].to_vec();
    for u in &todo {
        layout.clear_unit(u)?;
    }
    let input_bytes: u64 = todo.iter().map(Unit::bytes).sum();
    tracing::info!(
        rank = ctx.opts.rank,
        world_size = ctx.opts.world_size,
        units = mine.len(),
        resumed,
        bytes = input_bytes,
        "running {}",
        ctx.m.path.display()
    );
    let unit_stats = stream(ctx, stages, passes, &todo, &Sink::Output, "final")?;
    for s in &unit_stats {
        rank_stats.merge(s);
    }
    rank_stats.check_invariant().map_err(RunError::Invariant)?;
    layout.finish_rank(&mine, &rank_stats)?;
    Ok((rank_stats, mine.len(), resumed, input_bytes))
}

/// Builds a manifest's stages (loading any model files they name) and
/// checks that their columns fit together.
pub fn build_stages(m: &LoadedManifest) -> Result<Vec<Box<dyn Stage>>, RunError> {
    let ctx = stages::BuildContext {
        base: m.base.clone(),
    };
    let stages: Vec<Box<dyn Stage>> = m
        .manifest
        .stages
        .iter()
        .map(|s| s.build(&ctx))
        .collect::<Result<_, _>>()?;
    check_columns(&stages)?;
    Ok(stages)
}

/// Refuses stage lists whose added columns would clash.
fn check_columns(stages: &[Box<dyn Stage>]) -> Result<(), RunError> {
    let mut names: Vec<String> = batch::core_fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    for s in stages {
        for f in s.fields() {
            if names.contains(f.name()) {
                return Err(RunError::Plan(format!(
                    "stage `{}` adds column `{}`, which an earlier stage already adds; use one `{}` stage",
                    s.name(),
                    f.name(),
                    s.name()
                )));
            }
            names.push(f.name().clone());
        }
    }
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct UnitMarker {
    pub unit: usize,
    pub outputs: Vec<String>,
    pub stats: Stats,
}
