//! `forja run`, `validate`, `finish` and `stats`: running a manifest and
//! reading back how the run went.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::{default_manifest, load, parse_bytes, print_mixture, Outcome};

/// `forja run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The manifest; the bundled demo when omitted.
    pub manifest: Option<PathBuf>,
    /// Worker threads for decoding and stages (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// This task's rank in 0..world-size: it takes units rank, rank+W, ...
    #[arg(long, default_value_t = 0)]
    pub rank: usize,
    /// Number of tasks the run is split across.
    #[arg(long, default_value_t = 1)]
    pub world_size: usize,
    /// Continue an interrupted run from its completed units (refused if
    /// the manifest or any input changed since).
    #[arg(long, conflicts_with = "restart")]
    pub resume: bool,
    /// Start over in a folder that holds an earlier run, deleting the
    /// files that run wrote (and nothing else); the default without --resume.
    #[arg(long)]
    pub restart: bool,
    /// Write into an existing, non-empty folder that holds no forja run
    /// (forja still deletes nothing there that it did not write).
    #[arg(long)]
    pub force: bool,
    /// Output folder (overrides the manifest's).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Memory budget of the global dedup steps (e.g. 512M, 8G; default
    /// 2G); they spill to disk past it.
    #[arg(long, value_parser = parse_bytes)]
    pub mem: Option<usize>,
    /// Run one step only, e.g. `near_dedup:scan`, `near_dedup:reduce`,
    /// `near_dedup:cluster` or `final` (for job arrays; every step of
    /// a global stage needs the one before it complete).
    #[arg(long)]
    pub phase: Option<String>,
    /// Log a progress line (units, documents, MB/s, ETA) every this many
    /// seconds, also with --quiet: for batch jobs and piped output, where
    /// no bar is drawn. Default: 30 when stderr is not a terminal and
    /// --quiet is not given, otherwise none; 0 turns it off.
    #[arg(long, value_name = "SECS")]
    pub log_every: Option<u64>,
}

/// `forja run`: runs a manifest (the bundled demo when none is given).
pub fn run(a: RunArgs, quiet: bool) -> Outcome {
    let RunArgs {
        manifest,
        threads,
        rank,
        world_size,
        resume,
        restart: _,
        force,
        out,
        mem,
        phase,
        log_every,
    } = a;
    let (path, out) = match manifest {
        Some(p) => (p, out),
        None => {
            let d = default_manifest()?;
            (d.path, out.or(d.out))
        }
    };
    let Some(m) = load(&path) else {
        return Ok(ExitCode::from(1));
    };
    let mut opts = forja::RunOptions {
        rank,
        world_size,
        resume,
        progress: !quiet,
        output: out,
        phase,
        force,
        log_every: progress_interval(log_every, quiet),
        ..Default::default()
    };
    if let Some(m) = mem {
        opts.mem = m;
    }
    if let Some(t) = threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        opts.threads = t;
    }
    forja::install_signal_handlers();
    let summary = match forja::run(&m, &opts) {
        Ok(s) => s,
        Err(e @ forja::RunError::Interrupted { signal }) => {
            eprintln!("{e}");
            // As a shell reports a process ended by that signal.
            return Ok(ExitCode::from(128 + signal.clamp(1, 127) as u8));
        }
        // The user's to fix (a folder in use, changed inputs, an
        // output over the inputs): exit 1, as for a bad manifest.
        Err(
            e @ (forja::RunError::Resume { .. }
            | forja::RunError::Locked { .. }
            | forja::RunError::NotOurs { .. }
            | forja::RunError::Overlap(_)),
        ) => {
            eprintln!("error: running {}: {e}", path.display());
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("running {}", path.display()))),
    };
    // Warnings need every rank's counts: one rank may rightly keep
    // nothing of a source.
    if let Some(merged) = &summary.merged {
        warn_of(merged);
    }
    if !quiet && !summary.steps.iter().any(|s| s == "final") {
        println!(
            "rank {rank}/{world_size}: ran {} in {:.2}s",
            summary.steps.join(", "),
            summary.elapsed.as_secs_f64()
        );
    } else if !quiet {
        let secs = summary.elapsed.as_secs_f64();
        println!("{}", summary.stats.funnel());
        println!(
            "rank {rank}/{world_size}: {} units ({} resumed) in {secs:.2}s, {:.1} MB/s of input",
            summary.units_total,
            summary.units_resumed,
            summary.input_bytes as f64 / 1e6 / secs.max(1e-9)
        );
        if let Some(dir) = &summary.megatron {
            print_mixture(dir, &forja::Families::load(dir)?);
            println!();
        }
        let report = summary.output_dir.join(forja::REPORT);
        match &summary.merged {
            Some(_) if report.is_file() => println!(
                "output: {}\nreport: {}",
                summary.output_dir.display(),
                report.display()
            ),
            Some(_) => println!("output: {}", summary.output_dir.display()),
            None => println!(
                "output: {} (other ranks still running; `forja stats` merges them)",
                summary.output_dir.display()
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `forja validate`.
#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// The manifest.
    pub manifest: PathBuf,
    /// Print the manifest with every default filled in, as TOML that
    /// `forja run` accepts unchanged (relative paths stay relative to the
    /// manifest's folder), instead of the summary.
    #[arg(long)]
    pub print: bool,
}

/// `forja validate`: checks a manifest and its inputs, printing every
/// problem with its line and column (exit 1).
pub fn validate(a: ValidateArgs) -> Outcome {
    match forja::load_manifest(&a.manifest) {
        Ok(m) => {
            let units = m.units()?;
            // Stages load their models and data here, so a bad path fails now.
            let mut stages = forja::build_stages(&m)?;
            if a.print {
                let text = toml::to_string_pretty(&m.manifest)
                    .context("writing the resolved manifest as TOML")?;
                print!("{text}");
                return Ok(ExitCode::SUCCESS);
            }
            for w in &m.warnings {
                println!(
                    "warning: {}:{}:{}: {}",
                    a.manifest.display(),
                    w.line,
                    w.column,
                    w.message
                );
            }
            println!(
                "{}: ok ({} sources, {} stages, {} units of input)",
                a.manifest.display(),
                m.manifest.sources.len(),
                m.manifest.stages.len(),
                units.len()
            );
            println!(
                "steps (for --phase): {}",
                forja::steps(&m, &mut stages).join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            eprint!("{problems}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `forja finish`.
#[derive(clap::Args, Debug)]
pub struct FinishArgs {
    /// The manifest of the run.
    pub manifest: PathBuf,
    /// Output folder (default: the manifest's).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The number of ranks the run's steps ran with.
    #[arg(long, default_value_t = 1)]
    pub world_size: usize,
}

/// `forja finish`: ends a run whose steps ran as separate tasks.
pub fn finish(a: FinishArgs, quiet: bool) -> Outcome {
    let Some(m) = load(&a.manifest) else {
        return Ok(ExitCode::from(1));
    };
    let f = forja::finish(&m, a.out.as_deref(), a.world_size)?;
    if !quiet {
        print!("{}", f.stats.funnel());
        println!("output: {}", f.output_dir.display());
    }
    warn_of(&f.stats);
    Ok(ExitCode::SUCCESS)
}

/// `forja stats`.
#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// The run's output folder.
    pub dir: PathBuf,
}

/// `forja stats`: the funnel of a run, its ranks' stats merged; exit 1
/// while ranks are missing or when the counts do not add up.
pub fn stats(a: StatsArgs) -> Outcome {
    let run = match forja::collect_stats(&a.dir) {
        Err(forja::RunError::Invariant(e)) => {
            println!("invariant broken: {e}");
            return Ok(ExitCode::from(1));
        }
        other => other.with_context(|| {
            format!("{} is not a finished forja output folder", a.dir.display())
        })?,
    };
    print!("{}", run.stats.funnel());
    warn_of(&run.stats);
    if !run.missing.is_empty() {
        println!(
            "incomplete: ranks {:?} of {} have not finished",
            run.missing, run.world_size
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Logs what a finished run's counts say a user should not miss (a
/// source that kept nothing), as warnings, which `--quiet` keeps.
fn warn_of(stats: &forja::Stats) {
    for w in stats.warnings() {
        tracing::warn!("{w}");
    }
}

/// How often a run logs progress: `--log-every` when given (0: never),
/// else every 30 s when no bar can be drawn and the user did not ask for
/// quiet.
fn progress_interval(log_every: Option<u64>, quiet: bool) -> Option<std::time::Duration> {
    let secs = log_every.unwrap_or(
        if quiet || std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            0
        } else {
            30
        },
    );
    (secs > 0).then(|| std::time::Duration::from_secs(secs))
}
