//! Ending a run: the run manifest, the report and the upload that the task
//! completing a run writes, and `forja finish` for runs whose steps ran as
//! separate tasks.

use super::*;

/// What the task that completes a run writes: the run manifest, the
/// report, and with `output.dir = "s3://..."` the upload of both and of
/// every output file, the run manifest last.
pub(super) fn complete_run(
    root: &Path,
    m: &LoadedManifest,
    units: &[Unit],
) -> Result<(), RunError> {
    let rm = crate::provenance::write_run_manifest(root, m, units)?;
    let report = crate::report::write(root)?;
    if let Some(url) = m.output_url() {
        let mut files: Vec<(String, String)> = rm
            .outputs
            .iter()
            .map(|f| (f.path.clone(), f.xxh3.clone()))
            .collect();
        let (_, h) = crate::provenance::checksum(&report)?;
        files.push((crate::files::REPORT.to_string(), h));
        let n = crate::io::remote::publish(root, url, &files, crate::files::RUN_MANIFEST)?;
        tracing::info!("published {n} files to {url}");
    }
    Ok(())
}

/// What [`finish`] wrote.
pub struct Finished {
    /// The whole run's funnel, every rank merged.
    pub stats: Stats,
    /// Where the outputs are.
    pub output_dir: PathBuf,
}

/// Ends a run whose steps ran as separate tasks (`forja slurm`'s last
/// job): checks that every rank finished every step, merges the funnels
/// into `stats.json`, and writes `run-manifest.json` and `report.html`.
/// Running it again rewrites the same files.
pub fn finish(
    m: &LoadedManifest,
    out: Option<&Path>,
    world_size: usize,
) -> Result<Finished, RunError> {
    use crate::cluster::slurm::{rank_done, single_task};
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| m.output_dir());
    let all_units = m.units()?;
    let mut stages = build_stages(m)?;
    let all_steps = steps(m, &mut stages);
    let record = RunRecord::new(m, &all_units, world_size, owner::stamp_inputs(&all_units)?);
    units::Layout::new(&out, &m.manifest, 0, world_size).check_record(&record)?;
    let _journal = crate::files::journal::Journal::open(&out, "finish").map_err(io_err(&out))?;
    let mut missing = Vec::new();
    for step in &all_steps {
        let ranks = if single_task(step) { 1 } else { world_size };
        for r in 0..ranks {
            if !rank_done(&out, step, r, world_size) {
                missing.push(format!("{step} of rank {r}"));
            }
        }
    }
    if !missing.is_empty() {
        return Err(RunError::Plan(format!(
            "the run in {} is not complete: {} task(s) have not finished ({}); submit them again with `forja slurm --submit`",
            out.display(),
            missing.len(),
            missing.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let run = collect_stats(&out)?;
    if !run.missing.is_empty() {
        return Err(RunError::Plan(format!(
            "ranks {:?} of {} have no funnel in {}",
            run.missing,
            run.world_size,
            out.display()
        )));
    }
    if megatron_on(m) {
        let fams = out
            .join(crate::files::MEGATRON_DIR)
            .join(crate::shards::blend::Families::FILE);
        if !fams.is_file() {
            return Err(RunError::Plan(format!(
                "{} is missing although every megatron task finished",
                fams.display()
            )));
        }
    }
    complete_run(&out, m, &all_units)?;
    Ok(Finished {
        stats: run.stats,
        output_dir: out,
    })
}
