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
//! `process` in parallel, then its ordered `decide` over the window in input
//! order. The writer commits each unit (shards, ledger part, stats) under
//! temporary names and writes the unit's marker last; a resumed run keeps
//! the completed prefix of units and carries on, giving the same bytes as an
//! uninterrupted run.

mod complete;
pub mod interrupt;
#[cfg(test)]
mod near_dedup_tests;
mod owner;
mod stream;
mod units;

use complete::complete_run;
pub use complete::{finish, Finished};
pub use stream::progress_bar;
use stream::{stream, Sink};

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
use crate::dedup::{GlobalDir, Plan};
use crate::io::{self, Chunk, InputError, ReadError, ShardWriter, SourceSpec, Unit};
use crate::ledger::{self, FileStats, LedgerRow, Stats};
use crate::manifest::LoadedManifest;
use crate::stages::{self, Stage, StageError, StageOutput};

pub use units::{collect_stats, RunRecord, RunStats, FORJA_DIR};

/// How a run is executed; nothing here changes its output.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads for decoding and stages (the reader and writer have their own).
    pub threads: usize,
    pub rank: usize,
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
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Shard(#[from] crate::shards::ShardError),
    #[error(transparent)]
    Provenance(#[from] crate::provenance::ProvenanceError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error(transparent)]
    Remote(#[from] crate::io::remote::RemoteError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("--rank {rank} is not below --world-size {world_size}")]
    BadRank { rank: usize, world_size: usize },
    #[error("cannot resume in {dir}: {message}")]
    Resume { dir: String, message: String },
    #[error("{dir} is in use by another run ({holder}); wait for it to end or use another output folder")]
    Locked { dir: String, holder: String },
    #[error("{dir} exists and holds files that no forja run wrote ({list}); use a new output folder, or --force to write there anyway (forja never deletes files it did not write)")]
    NotOurs { dir: String, list: String },
    #[error("{0}")]
    Overlap(String),
    #[error("{0}")]
    Plan(String),
    #[error("documents went missing: {0}")]
    Invariant(String),
    #[error(
        "stopped by signal {signal} after the last whole unit; run again with --resume to go on"
    )]
    Interrupted { signal: i32 },
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
    pub output_dir: PathBuf,
    pub units_total: usize,
    /// Units taken from an earlier, interrupted run.
    pub units_resumed: usize,
    /// The merged funnel, once every rank of the run has finished.
    pub merged: Option<Stats>,
    pub elapsed: Duration,
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
    /// Wall nanoseconds spent in each stage (process, decide and apply), all passes.
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

    /// Waits until `missing` is empty: the barrier between steps. Without
    /// `--phase` the other ranks are running too; with it, the earlier step
    /// must already be complete.
    fn barrier(&self, what: &str, missing: impl Fn() -> Vec<String>) -> Result<(), RunError> {
        let mut delay = Duration::from_millis(20);
        let mut last_log = Instant::now();
        loop {
            let miss = missing();
            if miss.is_empty() {
                return Ok(());
            }
            if self.opts.phase.is_some() {
                return Err(RunError::Plan(format!(
                    "{what} is not complete ({} parts missing, e.g. {}); run that step first",
                    miss.len(),
                    miss[0]
                )));
            }
            if let Some(f) = self.layout.failure_since(self.started) {
                return Err(RunError::Plan(format!("stopped waiting for {what}: {f}")));
            }
            if last_log.elapsed() > Duration::from_secs(30) {
                tracing::info!(
                    "waiting for {what}: {} parts missing, e.g. {}",
                    miss.len(),
                    miss[0]
                );
                last_log = Instant::now();
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
}

fn dedup_err(stage: &str) -> impl FnOnce(crate::dedup::DedupError) -> RunError + '_ {
    move |source| {
        RunError::Stage(StageError::Dedup {
            stage: stage.into(),
            source,
        })
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
    for &g in &globals {
        ran.extend(global_steps(ctx, stages, g)?);
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
        let (stats, units_total, units_resumed, input_bytes) = final_pass(ctx, stages)?;
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

/// The scan, reduce and cluster steps of the global stage `g`; afterwards
/// the stage applies its decisions in every later pass.
fn global_steps(
    ctx: &Ctx,
    stages: &mut [Box<dyn Stage>],
    g: usize,
) -> Result<Vec<String>, RunError> {
    let name = stages[g].name();
    let dir = GlobalDir::new(
        ctx.layout
            .root
            .join(FORJA_DIR)
            .join("global")
            .join(format!("{g:02}-{name}")),
        ctx.run_id.clone(),
    );
    let parts = stages[g].global().expect("a global stage").partitions();
    let unit_ids: Vec<usize> = ctx.all_units.iter().map(|u| u.index).collect();
    let (w, rank) = (ctx.opts.world_size, ctx.opts.rank);
    let mut ran = Vec::new();
    let step = |s: &str| format!("{name}:{s}");
    let position = |s: &str| ctx.steps.iter().position(|x| x == s).expect("a known step");
    // The scanned units' sizes; read once, by the reduce or the cluster step.
    let load_plan = || Plan::load(&dir, &unit_ids, parts, ctx.opts.mem).map_err(dedup_err(name));
    let mut reduced_plan = None;
    // Steps after this stage's cluster step need its decisions.
    let needs_decisions = ctx
        .opts
        .phase
        .as_deref()
        .is_none_or(|p| position(p) > position(&step("cluster")));

    if ctx.runs(&step("scan")) {
        tracing::info!("{}: hashing this rank's documents", step("scan"));
        stages[g]
            .global()
            .expect("a global stage")
            .begin_scan(&dir, ctx.opts.mem / 2);
        let todo: Vec<Unit> = ctx
            .mine()
            .into_iter()
            .filter(|u| !(ctx.opts.resume && dir.marker_ok(&dir.scan_marker(u.index))))
            .collect();
        stream(
            ctx,
            &mut stages[..=g],
            &todo,
            &Sink::Scan(&dir),
            &step("scan"),
        )?;
        ran.push(step("scan"));
    }
    if ctx.runs(&step("reduce")) {
        ctx.barrier(&step("scan"), || {
            unit_ids
                .iter()
                .filter(|&&u| !dir.marker_ok(&dir.scan_marker(u)))
                .map(|&u| format!("unit {u}"))
                .collect()
        })?;
        let plan = load_plan()?;
        let mine: Vec<usize> = (rank..parts).step_by(w).collect();
        tracing::info!(
            "{}: {} documents, {} of {parts} partitions on this rank",
            step("reduce"),
            plan.total,
            mine.len()
        );
        let global: &dyn crate::stages::Global = stages[g].global().expect("a global stage");
        for p in mine {
            if ctx.opts.resume && dir.marker_ok(&dir.reduce_marker(p)) {
                continue;
            }
            let counts = ctx
                .pool
                .install(|| global.reduce(&plan, p))
                .map_err(dedup_err(name))?;
            dir.write_marker(&dir.reduce_marker(p), counts)
                .map_err(dedup_err(name))?;
        }
        ran.push(step("reduce"));
        reduced_plan = Some(plan);
    }
    let cluster_here = match &ctx.opts.phase {
        None => rank == 0,
        Some(p) => *p == step("cluster"),
    };
    if cluster_here {
        ctx.barrier(&step("reduce"), || {
            (0..parts)
                .filter(|&p| !dir.marker_ok(&dir.reduce_marker(p)))
                .map(|p| format!("partition {p}"))
                .collect()
        })?;
        if !(ctx.opts.resume && dir.marker_ok(&dir.cluster_marker())) {
            let plan = match reduced_plan.take() {
                Some(p) => p,
                None => load_plan()?,
            };
            let global: &dyn crate::stages::Global = stages[g].global().expect("a global stage");
            let counts = ctx
                .pool
                .install(|| global.cluster(&plan))
                .map_err(dedup_err(name))?;
            tracing::info!("{}: {counts:?}", step("cluster"));
            dir.write_marker(&dir.cluster_marker(), counts)
                .map_err(dedup_err(name))?;
        }
        ran.push(step("cluster"));
    }
    if needs_decisions {
        ctx.barrier(&step("cluster"), || {
            if dir.marker_ok(&dir.cluster_marker()) {
                Vec::new()
            } else {
                vec!["the cluster step".into()]
            }
        })?;
        stages[g]
            .global()
            .expect("a global stage")
            .begin_apply(&dir)
            .map_err(dedup_err(name))?;
    }
    Ok(ran)
}

/// The last pass: every stage, output shards, ledger and funnel.
fn final_pass(
    ctx: &Ctx,
    stages: &mut [Box<dyn Stage>],
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
    let unit_stats = stream(ctx, stages, &todo, &Sink::Output, "final")?;
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
