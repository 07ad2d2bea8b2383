//! The `forja` command line: `main`, exit codes, and one line per command
//! handing it to its room in [`cli`].
//!
//! Exit codes: 0 success; 1 a problem that is the user's to fix (a bad
//! manifest, a folder in use, changed inputs, a failed check); 2 an error;
//! 128 + the signal for a run stopped by SIGINT or SIGTERM.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// forja: raw open-access text in, deduplicated, filtered training data out.
#[derive(Parser, Debug)]
#[command(name = "forja", version, about, long_about = None)]
struct Cli {
    /// Print warnings and errors only, and no progress bar.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a pipeline (default manifest: manifests/demo.toml).
    Run(cli::run::RunArgs),
    /// Check a manifest and its inputs; print every problem with its location.
    Validate(cli::run::ValidateArgs),
    /// Print the funnel of a finished run, merging the ranks' stats.
    Stats(cli::run::StatsArgs),
    /// Read Megatron shards: a shard's counts and documents decoded back to
    /// text, or a whole run's families, shares and shard checks.
    Inspect(cli::shards::InspectArgs),
    /// Recompute a run's blend files and share table, with other factors or
    /// absolute shard paths.
    Blend(cli::shards::BlendArgs),
    /// Measure a language-ID backend on labelled text (`lang<TAB>text` lines).
    EvalLid(cli::lid::EvalLidArgs),
    /// Train a SentencePiece-style BPE tokenizer (Salamandra's settings by
    /// default) on a corpus: JSON Lines, Parquet or text files, or a forja
    /// output folder. Writes tokenizer.json, tokenizer.vocab, training.json.
    ///
    /// On a cluster, count in parts (`--count-only --counts-out`) and train
    /// once from all of them (`--from-counts`): counts add up exactly.
    TrainTokenizer(cli::tokenizer::TrainTokenizerArgs),
    /// Tokens per word and per byte of each language of a corpus.
    Fertility(cli::tokenizer::FertilityArgs),
    /// Writes the run as Slurm job arrays, one per step, chained by
    /// --dependency=afterok, and a last one-CPU job that runs `forja
    /// finish`. Only steps and ranks that have not finished get a job, so
    /// the same command resubmits failed or cancelled ranks.
    Slurm(cli::slurm::SlurmArgs),
    /// Ends a run whose steps ran as separate tasks: checks that every rank
    /// finished every step, merges the funnels into stats.json, and writes
    /// run-manifest.json and report.html (`forja slurm`'s last job).
    Finish(cli::run::FinishArgs),
    /// Writes OUTDIR/report.html (`forja run` does too): the funnel, drop
    /// reasons with sample ids, tokens per language against the mixture's
    /// target shares, distributions per language and duplicate clusters.
    /// One self-contained file: no network needed to view it.
    Report(cli::audit::DirArgs),
    /// Re-checksums a finished run's outputs and inputs against its
    /// run-manifest.json; exits 1 on any mismatch.
    Verify(cli::audit::DirArgs),
    /// Where a document went, or which document, source and licence a
    /// token of a shard belongs to (JSON on standard output).
    Audit(cli::audit::AuditArgs),
    /// Perplexity of documents under a Llama-architecture model.
    Perplexity(cli::lm::PerplexityArgs),
    /// Scoring throughput of a language model: tokens/s per batch size,
    /// FLOPs per token and the share of the device's matrix-multiply rate.
    BenchLm(cli::lm::BenchLmArgs),
    /// Train the close-group language model from `lang<TAB>text` lines.
    TrainLidGroups(cli::lid::TrainLidGroupsArgs),
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so println! into a closed pipe (`forja inspect |
    // head`) would panic; end quietly instead, as other Unix tools do.
    #[cfg(unix)]
    // SAFETY: called first thing, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // Progress lines (`--log-every`) are asked for explicitly: --quiet
    // keeps them.
    let level = if cli.quiet {
        "warn,forja::progress=info"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        // Colour only on a terminal, and never with NO_COLOR set: piped
        // and Slurm logs get plain text.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Hands the command to its room.
fn dispatch(cli: Cli) -> cli::Outcome {
    let quiet = cli.quiet;
    match cli.command {
        Command::Run(a) => cli::run::run(a, quiet),
        Command::Validate(a) => cli::run::validate(a),
        Command::Stats(a) => cli::run::stats(a),
        Command::Inspect(a) => cli::shards::inspect(a),
        Command::Blend(a) => cli::shards::blend(a),
        Command::EvalLid(a) => cli::lid::eval_lid(a),
        Command::TrainTokenizer(a) => cli::tokenizer::train_tokenizer(a, quiet),
        Command::Fertility(a) => cli::tokenizer::fertility(a),
        Command::Slurm(a) => cli::slurm::slurm(a),
        Command::Finish(a) => cli::run::finish(a, quiet),
        Command::Report(a) => cli::audit::report(a),
        Command::Verify(a) => cli::audit::verify(a),
        Command::Audit(a) => cli::audit::audit(a),
        Command::Perplexity(a) => cli::lm::perplexity(a, quiet),
        Command::BenchLm(a) => cli::lm::bench_lm(a),
        Command::TrainLidGroups(a) => cli::lid::train_lid_groups(a),
    }
}
