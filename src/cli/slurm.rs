//! `forja slurm`: a run written (and submitted) as Slurm job arrays.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::{load, Outcome};

/// `forja slurm`.
#[derive(clap::Args, Debug)]
pub struct SlurmArgs {
    /// The manifest of the run.
    manifest: PathBuf,
    /// Ranks of every step (default: the manifest's slurm.world_size, else 1).
    #[arg(long)]
    world_size: Option<usize>,
    /// Largest array index + 1 the cluster accepts (default: the manifest's, else 1001).
    #[arg(long)]
    max_array_size: Option<usize>,
    /// Output folder (default: the manifest's).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Submit the jobs with sbatch and print their ids.
    #[arg(long)]
    submit: bool,
    /// Print the scripts; write and submit nothing.
    #[arg(long, conflicts_with = "submit")]
    dry_run: bool,
    /// The sbatch command.
    #[arg(long, default_value = "sbatch")]
    sbatch: String,
}

/// `forja slurm`: writes the job scripts, and submits them with `--submit`.
pub fn slurm(a: SlurmArgs) -> Outcome {
    let Some(m) = load(&a.manifest) else {
        return Ok(ExitCode::from(1));
    };
    let mut cfg = m.manifest.slurm.clone();
    if let Some(w) = a.world_size {
        cfg.world_size = w;
    }
    if let Some(n) = a.max_array_size {
        cfg.max_array_size = n;
    }
    if let Some((field, message)) = cfg.problems().into_iter().next() {
        bail!("slurm.{field}: {message}");
    }
    // Jobs run elsewhere, from another folder: every path is absolute.
    let manifest = std::path::absolute(&a.manifest)?;
    let out = std::path::absolute(a.out.unwrap_or_else(|| m.output_dir()))?;
    let forja_bin = match &cfg.forja {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe().context("finding the forja binary")?,
    };
    let mut stages = forja::build_stages(&m)?;
    let steps = forja::steps(&m, &mut stages);
    let name = if m.manifest.name.is_empty() {
        "run".to_string()
    } else {
        m.manifest.name.clone()
    };
    let spec = forja::RunSpec {
        name: &name,
        manifest: &manifest,
        out: &out,
        steps: &steps,
        world_size: cfg.world_size,
        forja: &forja_bin,
    };
    let jobs = forja::plan_slurm_jobs(&spec, &cfg);
    if jobs.is_empty() {
        println!("{}: the run is complete; nothing to submit", out.display());
        return Ok(ExitCode::SUCCESS);
    }
    if a.dry_run {
        for j in &jobs {
            println!("# {}\n{}", j.file.display(), j.script);
        }
        return Ok(ExitCode::SUCCESS);
    }
    forja::write_slurm_scripts(&jobs)?;
    let ids = if a.submit {
        forja::submit_slurm_jobs(&jobs, &a.sbatch)?
    } else {
        Vec::new()
    };
    for (i, j) in jobs.iter().enumerate() {
        let ranks = if forja::single_task(&j.step) {
            "1 task".to_string()
        } else {
            format!("ranks {}", forja::array_spec(&j.ranks))
        };
        match ids.get(i) {
            Some(id) => println!("job {id:<10} {:<28} {ranks}", j.step),
            None => println!("{:<28} {ranks:<20} {}", j.step, j.file.display()),
        }
    }
    if !a.submit {
        println!("scripts written; the same command with --submit submits them");
    }
    Ok(ExitCode::SUCCESS)
}
