//! The phases of global stages and the barriers between them: each global
//! stage's scan, reduce and cluster steps (reduce partitions split across
//! ranks, cluster on one), with a barrier after each that waits for every
//! rank's markers, or, with `--phase`, refuses a step whose predecessor is
//! not complete.

use super::*;
use crate::phased::{ApplyReader, PhasedError, RunInput, ScanWriter};

impl Ctx<'_> {
    /// Waits until `missing` is empty: the barrier between steps. Without
    /// `--phase` the other ranks are running too; with it, the earlier step
    /// must already be complete.
    pub(super) fn barrier(
        &self,
        what: &str,
        missing: impl Fn() -> Vec<String>,
    ) -> Result<(), RunError> {
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

/// An engine error of stage `stage`, as the run reports it.
pub(super) fn phased_err(stage: &str) -> impl FnOnce(PhasedError) -> RunError + '_ {
    move |source| {
        RunError::Stage(StageError::Phased {
            stage: stage.into(),
            source,
        })
    }
}

/// The engine's side of a phased stage in the pass under way.
pub(super) enum Pass {
    /// The scan: writes what the stage found, unit by unit.
    Scan(ScanWriter),
    /// A later pass: reads back what was decided, unit by unit.
    Apply(ApplyReader),
}

/// The scan, reduce and cluster steps of the global stage `g`; afterwards
/// the stage applies its decisions in every later pass.
pub(super) fn global_steps(
    ctx: &Ctx,
    stages: &mut [Box<dyn Stage>],
    passes: &mut [Option<Pass>],
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
        ctx.layout.root.clone(),
    );
    let parts = stages[g].global().expect("a global stage").partitions();
    let layout = stages[g].global().expect("a global stage").layout();
    let unit_ids: Vec<usize> = ctx.all_units.iter().map(|u| u.index).collect();
    let (w, rank) = (ctx.opts.world_size, ctx.opts.rank);
    let mut ran = Vec::new();
    let step = |s: &str| format!("{name}:{s}");
    let position = |s: &str| ctx.steps.iter().position(|x| x == s).expect("a known step");
    // The scanned units' sizes; read once, by the reduce or the cluster step.
    let load_plan = || Plan::load(&dir, &unit_ids, parts, ctx.opts.mem).map_err(phased_err(name));
    let mut reduced_plan = None;
    // Steps after this stage's cluster step need its decisions.
    let needs_decisions = ctx
        .opts
        .phase
        .as_deref()
        .is_none_or(|p| position(p) > position(&step("cluster")));

    if ctx.runs(&step("scan")) {
        tracing::info!("{}: hashing this rank's documents", step("scan"));
        stages[g].global().expect("a global stage").begin_scan();
        passes[g] = Some(Pass::Scan(ScanWriter::new(
            &dir,
            layout,
            parts,
            ctx.opts.mem / 2,
        )));
        let todo: Vec<Unit> = ctx
            .mine()
            .into_iter()
            .filter(|u| !(ctx.opts.resume && dir.marker_ok(&dir.scan_marker(u.index))))
            .collect();
        stream(
            ctx,
            &mut stages[..=g],
            &mut passes[..=g],
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
            let step = ctx
                .pool
                .install(|| global.reduce(&plan, p))
                .map_err(phased_err(name))?;
            if let Some(bytes) = &step.output {
                dir.write_reduced(p, bytes).map_err(phased_err(name))?;
            }
            dir.write_marker(&dir.reduce_marker(p), step.counts)
                .map_err(phased_err(name))?;
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
            let done = ctx
                .pool
                .install(|| global.cluster(&plan))
                .map_err(phased_err(name))?;
            if let Some(bytes) = &done.output {
                dir.write_summary(bytes).map_err(phased_err(name))?;
            }
            tracing::info!("{}: {:?}", step("cluster"), done.counts);
            dir.write_marker(&dir.cluster_marker(), done.counts)
                .map_err(phased_err(name))?;
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
        let run = RunInput::load(&dir, layout).map_err(phased_err(name))?;
        stages[g]
            .global()
            .expect("a global stage")
            .begin_apply(run)
            .map_err(phased_err(name))?;
        passes[g] = Some(Pass::Apply(ApplyReader::new(&dir, layout, parts)));
    }
    Ok(ran)
}
