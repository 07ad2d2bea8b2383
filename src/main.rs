//! The `forja` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
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
    Run {
        /// The manifest; the bundled demo when omitted.
        manifest: Option<PathBuf>,
        /// Worker threads for decoding and stages (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// This task's rank in 0..world-size: it takes units rank, rank+W, ...
        #[arg(long, default_value_t = 0)]
        rank: usize,
        /// Number of tasks the run is split across.
        #[arg(long, default_value_t = 1)]
        world_size: usize,
        /// Continue an interrupted run from its completed units (refused if
        /// the manifest or any input changed since).
        #[arg(long, conflicts_with = "restart")]
        resume: bool,
        /// Start over in a folder that holds an earlier run, deleting the
        /// files that run wrote (and nothing else); the default without --resume.
        #[arg(long)]
        restart: bool,
        /// Write into an existing, non-empty folder that holds no forja run
        /// (forja still deletes nothing there that it did not write).
        #[arg(long)]
        force: bool,
        /// Output folder (overrides the manifest's).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Memory budget of the global dedup steps (e.g. 512M, 8G); they
        /// spill to disk past it.
        #[arg(long, default_value = "2G", value_parser = parse_bytes)]
        mem: usize,
        /// Run one step only, e.g. `near_dedup:scan`, `near_dedup:reduce`,
        /// `near_dedup:cluster` or `final` (for job arrays; every step of
        /// a global stage needs the one before it complete).
        #[arg(long)]
        phase: Option<String>,
    },
    /// Check a manifest and its inputs; print every problem with its location.
    Validate { manifest: PathBuf },
    /// Print the funnel of a finished run, merging the ranks' stats.
    Stats {
        /// The run's output folder.
        dir: PathBuf,
    },
    /// Read Megatron shards: a shard's counts and documents decoded back to
    /// text, or a whole run's families, shares and shard checks.
    Inspect {
        /// A shard (`prefix`, `prefix.bin` or `prefix.idx`), or an output
        /// folder (or its `megatron` folder) for the whole run.
        path: PathBuf,
        /// Documents to decode, from the first (with a shard).
        #[arg(long, default_value_t = 3)]
        docs: usize,
        /// Decode this document only.
        #[arg(long)]
        doc: Option<usize>,
        /// Characters of each document to print (0: all).
        #[arg(long, default_value_t = 400)]
        chars: usize,
        /// The tokenizer (default: the tokenizer.json the run copied beside the shards).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
    },
    /// Recompute a run's blend files and share table, with other factors or
    /// absolute shard paths.
    Blend {
        /// The run's output folder (or its `megatron` folder).
        dir: PathBuf,
        /// A language factor, e.g. `--factor en=0.5` (repeatable).
        #[arg(long, value_parser = parse_factor)]
        factor: Vec<(String, f64)>,
        /// Write shard paths under this folder instead of relative ones.
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Measure a language-ID backend on labelled text (`lang<TAB>text` lines).
    EvalLid {
        /// Files of `lang<TAB>text` lines (`\n` in the text for a newline).
        data: Vec<PathBuf>,
        /// fasttext, whatlang, or lingua (with `--features lingua`).
        #[arg(long, default_value = "fasttext")]
        backend: String,
        /// Another fastText model (default: the compiled-in lid.176).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Line confidence threshold of the document rule.
        #[arg(long, default_value_t = 0.8)]
        line_threshold: f64,
        /// Add the second opinion for close languages, from this model
        /// (`models/lid-groups.bin` is the compiled-in one).
        #[arg(long)]
        groups: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Train a SentencePiece-style BPE tokenizer (Salamandra's settings by
    /// default) on a corpus: JSON Lines, Parquet or text files, or a forja
    /// output folder. Writes tokenizer.json, tokenizer.vocab, training.json.
    ///
    /// On a cluster, count in parts (`--count-only --counts-out`) and train
    /// once from all of them (`--from-counts`): counts add up exactly.
    TrainTokenizer {
        /// Input files or folders (not needed with --from-counts).
        inputs: Vec<PathBuf>,
        /// Output folder.
        #[arg(long, default_value = "tokenizer")]
        out: PathBuf,
        /// Settings as TOML (the fields of a `train_tokenizer` stage's
        /// `[stage.tokenizer]` table: vocab_size, alpha, split_digits, ...).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Vocabulary size (default 256000, Salamandra's).
        #[arg(long)]
        vocab_size: Option<usize>,
        /// Language sampling exponent: 0 uniform (default), 1 natural.
        #[arg(long)]
        alpha: Option<f64>,
        #[command(flatten)]
        corpus: CorpusArgs,
        /// Only count words and write them to --counts-out.
        #[arg(long, requires = "counts_out")]
        count_only: bool,
        /// Where to write the word counts.
        #[arg(long)]
        counts_out: Option<PathBuf>,
        /// Train from these counts files instead of reading a corpus.
        #[arg(long, num_args = 1..)]
        from_counts: Vec<PathBuf>,
        /// Merge loop on `cpu` or `cuda` (needs the `cuda` feature).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Tokens per word and per byte of each language of a corpus.
    Fertility {
        /// A tokenizer.json.
        tokenizer: PathBuf,
        /// Input files or folders, as for train-tokenizer.
        #[arg(required = true)]
        corpus: Vec<PathBuf>,
        /// Also write the numbers as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        #[command(flatten)]
        corpus_args: CorpusArgs,
    },
    /// Writes the run as Slurm job arrays, one per step, chained by
    /// --dependency=afterok, and a last one-CPU job that runs `forja
    /// finish`. Only steps and ranks that have not finished get a job, so
    /// the same command resubmits failed or cancelled ranks.
    Slurm(SlurmArgs),
    /// Ends a run whose steps ran as separate tasks: checks that every rank
    /// finished every step, merges the funnels into stats.json, and writes
    /// run-manifest.json and report.html (`forja slurm`'s last job).
    Finish {
        manifest: PathBuf,
        /// Output folder (default: the manifest's).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        world_size: usize,
    },
    /// Writes OUTDIR/report.html (`forja run` does too): the funnel, drop
    /// reasons with sample ids, tokens per language against the mixture's
    /// target shares, distributions per language and duplicate clusters.
    /// One self-contained file: no network needed to view it.
    Report {
        /// The output folder.
        dir: PathBuf,
    },
    /// Re-checksums a finished run's outputs and inputs against its
    /// run-manifest.json; exits 1 on any mismatch.
    Verify {
        /// The output folder.
        dir: PathBuf,
    },
    /// Where a document went, or which document, source and licence a
    /// token of a shard belongs to (JSON on standard output).
    Audit {
        /// The output folder.
        dir: PathBuf,
        /// A document id: dropped (stage, reason, detail) or kept (shards and token ranges).
        #[arg(long, conflicts_with_all = ["shard", "token"])]
        doc: Option<String>,
        /// A shard: its prefix under megatron/ (train/en/00000) or a path to it.
        #[arg(long, requires = "token")]
        shard: Option<String>,
        /// A token's 0-based position in the shard.
        #[arg(long, requires = "shard")]
        token: Option<u64>,
        /// Documents and tokens per licence and per source, in the shards and dropped.
        #[arg(long, conflicts_with_all = ["doc", "shard"])]
        licences: bool,
    },
    /// Perplexity of documents under a Llama-architecture model.
    Perplexity(PerplexityArgs),
    /// Scoring throughput of a language model: tokens/s per batch size,
    /// FLOPs per token and the share of the device's matrix-multiply rate.
    BenchLm(BenchLmArgs),
    /// Train the close-group language model from `lang<TAB>text` lines.
    TrainLidGroups {
        /// Files of `lang<TAB>text` lines.
        data: Vec<PathBuf>,
        /// Where to write the model.
        #[arg(long, default_value = "models/lid-groups.bin")]
        out: PathBuf,
        /// N-grams kept per language.
        #[arg(long, default_value_t = 6000)]
        keep: usize,
    },
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
    let level = if cli.quiet { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `512M`, `8G`, `1.5G` or a plain byte count.
fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("{s:?}: use a number with K, M, G or T")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: use a number with K, M, G or T"))?;
    if v.is_nan() || v <= 0.0 {
        return Err(format!("{s:?}: must be positive"));
    }
    Ok((v * mult as f64) as usize)
}

/// `lang=factor`.
fn parse_factor(s: &str) -> Result<(String, f64), String> {
    let (l, f) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: use LANG=FACTOR, e.g. en=0.5"))?;
    let f: f64 = f
        .parse()
        .map_err(|_| format!("{s:?}: {f:?} is not a number"))?;
    if !(f.is_finite() && f >= 0.0) {
        return Err(format!("{s:?}: a factor is a number >= 0"));
    }
    Ok((l.to_string(), f))
}

/// Prints the training mixture's language shares with aligned columns.
fn print_shares(rows: &[forja::shards::blend::Share]) {
    println!(
        "{:<10} {:>9} {:>12} {:>7} {:>8} {:>9}",
        "language", "documents", "tokens", "factor", "natural", "weighted"
    );
    let pct = |v: f64| format!("{:.2}%", v * 100.0);
    for r in rows {
        println!(
            "{:<10} {:>9} {:>12} {:>7} {:>8} {:>9}",
            r.lang,
            r.documents,
            r.tokens,
            r.factor,
            pct(r.natural),
            pct(r.weighted)
        );
    }
    let docs: u64 = rows.iter().map(|r| r.documents).sum();
    let tokens: u64 = rows.iter().map(|r| r.tokens).sum();
    println!(
        "{:<10} {docs:>9} {tokens:>12} {:>7} {:>8} {:>9}",
        "total",
        "",
        pct(1.0),
        pct(1.0)
    );
}

/// Prints the share table of the run whose `megatron` folder is `dir`.
fn print_mixture(dir: &Path, fams: &forja::shards::blend::Families) {
    println!(
        "\ntraining mixture ({}):",
        dir.join("train.blend").display()
    );
    print_shares(&forja::shards::blend::blend(fams).language_shares());
}

fn inspect(
    path: &Path,
    docs: usize,
    doc: Option<usize>,
    chars: usize,
    tokenizer: Option<PathBuf>,
) -> Result<ExitCode> {
    use forja::shards::inspect as si;
    if path.is_dir() {
        let Some(dir) = si::megatron_dir(path) else {
            bail!(
                "{}: no megatron/families.json (a run with the megatron format writes it when its last step is done)",
                path.display()
            );
        };
        let fams = forja::shards::blend::Families::load(&dir)?;
        for split in forja::shards::Split::ALL {
            let members: Vec<_> = fams
                .families
                .iter()
                .filter(|f| f.split == split.name())
                .collect();
            let shards: usize = members.iter().map(|f| f.shards.len()).sum();
            let documents: u64 = members.iter().map(|f| f.documents()).sum();
            let tokens: u64 = members.iter().map(|f| f.tokens()).sum();
            println!(
                "{:<5}  {:>3} families  {:>4} shards  {documents:>9} documents  {tokens:>12} tokens",
                split.name(),
                members.len(),
                shards
            );
        }
        print_mixture(&dir, &fams);
        let bad = si::check_families(&dir, &fams);
        if !bad.is_empty() {
            for b in &bad {
                println!("mismatch: {b}");
            }
            return Ok(ExitCode::from(1));
        }
        println!("\nevery shard's index matches families.json");
        return Ok(ExitCode::SUCCESS);
    }
    let prefix = si::shard_prefix(path);
    let mut r = forja::shards::IndexedReader::open(&prefix)?;
    let s = si::summary(&r);
    println!(
        "{}: {} documents, {} tokens ({:?}), document lengths {}..{} tokens, mean {:.1}",
        prefix.display(),
        s.documents,
        s.tokens,
        r.dtype,
        s.min_len,
        s.max_len,
        s.tokens as f64 / s.documents.max(1) as f64
    );
    let tok_path = match tokenizer.or_else(|| si::find_tokenizer(&prefix)) {
        Some(t) => t,
        None => {
            println!("(no tokenizer.json beside the shard; pass --tokenizer to decode)");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let t = si::load_tokenizer(&tok_path)?;
    let which: Vec<usize> = match doc {
        Some(i) if i >= r.len() => bail!("--doc {i}: the shard has {} documents", r.len()),
        Some(i) => vec![i],
        None => (0..docs.min(r.len())).collect(),
    };
    for i in which {
        let ids = r.get(i)?;
        let text = si::decode(&t, &ids)?;
        let shown: String = if chars == 0 {
            text.clone()
        } else {
            text.chars().take(chars).collect()
        };
        let more = if shown.len() < text.len() {
            " [...]"
        } else {
            ""
        };
        println!("--- document {i}: {} tokens\n{shown}{more}", ids.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// The manifest at `path`, or `None` once its problems are printed
/// (exit code 1).
fn load(path: &Path) -> Option<forja::LoadedManifest> {
    forja::load_manifest(path)
        .map_err(|problems| eprint!("{problems}"))
        .ok()
}

fn default_manifest() -> PathBuf {
    let local = PathBuf::from("manifests/demo.toml");
    if local.exists() {
        return local;
    }
    // Running the installed binary from elsewhere: fall back to the source tree.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/demo.toml")
}

/// `forja perplexity`.
#[derive(clap::Args, Debug)]
struct PerplexityArgs {
    /// A Hugging Face folder (config.json, *.safetensors, tokenizer.json) or a .gguf file.
    model: PathBuf,
    /// Text files, one document each (`-` for standard input).
    files: Vec<PathBuf>,
    /// Score each line of the files as a document.
    #[arg(long)]
    lines: bool,
    /// Score this text (repeatable).
    #[arg(long)]
    text: Vec<String>,
    #[command(flatten)]
    lm: LmArgs,
    /// Run one token per forward pass with a key/value cache, as
    /// generation does (the baseline of scripts/bench-ppl).
    #[arg(long)]
    one_by_one: bool,
    /// Write one JSON object per document here instead of a table.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// `forja bench-lm`.
#[derive(clap::Args, Debug)]
struct BenchLmArgs {
    /// A model folder or .gguf file, or a shape with random weights:
    /// salamandra-2b, salamandra-7b, smollm2-135m.
    model: String,
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    batch_sizes: Vec<usize>,
    /// Tokens per window.
    #[arg(long, default_value_t = 512)]
    context: usize,
    /// Scored tokens per measurement (at least one batch).
    #[arg(long, default_value_t = 8192)]
    tokens: usize,
    /// auto, quantized, f32, bf16 or f16.
    #[arg(long, default_value = "auto")]
    precision: String,
    /// cpu or cuda (needs the `lm-cuda` feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also time the one-token-at-a-time baseline on this many tokens.
    #[arg(long, default_value_t = 0)]
    one_by_one: usize,
    /// Append one JSON object per measurement to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// How `perplexity` runs its model.
#[derive(clap::Args, Debug)]
struct LmArgs {
    /// Window length in tokens.
    #[arg(long, default_value_t = 512)]
    context: usize,
    /// Tokens each further window of a long document advances by.
    #[arg(long, default_value_t = 256)]
    stride: usize,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Score at most this many tokens per document (0: all).
    #[arg(long, default_value_t = 0)]
    max_tokens: usize,
    /// auto (f32 on the CPU; on a GPU the checkpoint's type, GGUF quantized), quantized, f32, bf16 or f16.
    #[arg(long, default_value = "auto")]
    precision: String,
    /// cpu or cuda (needs the `lm-cuda` feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Worker threads for the matrix products (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

fn parse_enum<T: serde::de::DeserializeOwned>(flag: &str, v: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(v.into()))
        .map_err(|_| anyhow::anyhow!("--{flag} {v}: not a known value"))
}

/// Sizes the global rayon pool (all cores when `None`).
fn global_threads(n: Option<usize>) -> Result<()> {
    if let Some(n) = n {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .context("setting up the thread pool")?;
    }
    Ok(())
}

/// How `train-tokenizer` and `fertility` read a corpus.
#[derive(clap::Args, Debug)]
struct CorpusArgs {
    /// JSON field or Parquet column holding the text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// JSON field or Parquet column holding the language.
    #[arg(long, default_value = "lang")]
    lang_field: String,
    /// Language of documents without one (text files: their name).
    #[arg(long)]
    lang: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

impl CorpusArgs {
    /// Sizes the global rayon pool and returns the reader's settings.
    fn setup(self) -> Result<forja::tokenizer::corpus::CorpusSpec> {
        global_threads(self.threads)?;
        Ok(forja::tokenizer::corpus::CorpusSpec {
            text_field: self.text_field,
            lang_field: self.lang_field,
            default_lang: self.lang,
        })
    }
}

struct TrainArgs {
    inputs: Vec<PathBuf>,
    out: PathBuf,
    cfg: forja::tokenizer::train::TrainConfig,
    spec: forja::tokenizer::corpus::CorpusSpec,
    count_only: bool,
    counts_out: Option<PathBuf>,
    from_counts: Vec<PathBuf>,
    device: forja::tokenizer::train::Device,
    quiet: bool,
}

fn train_tokenizer(a: TrainArgs) -> Result<ExitCode> {
    use forja::tokenizer::train::{self, WordCounts};
    let t = std::time::Instant::now();
    let counts = if !a.from_counts.is_empty() {
        if !a.inputs.is_empty() {
            bail!("give either input files or --from-counts, not both");
        }
        let mut all = WordCounts::default();
        for p in &a.from_counts {
            all.merge(WordCounts::read_file(p)?);
        }
        all
    } else {
        if a.inputs.is_empty() {
            bail!("no input: give files or folders, or --from-counts");
        }
        let files = forja::tokenizer::corpus::list_files(&a.inputs)?;
        let total: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum();
        let bar = forja::progress_bar(!a.quiet, total, "counting words");
        let counts = train::count_files(&files, &a.spec, &a.cfg, &bar)?;
        bar.finish_and_clear();
        counts
    };
    let counting = t.elapsed().as_secs_f64();
    eprintln!(
        "counted {} documents, {} distinct words in {} languages ({counting:.1}s)",
        counts.docs(),
        counts.distinct(),
        counts.langs.len()
    );
    if let Some(p) = &a.counts_out {
        let mut buf = Vec::new();
        counts.write_to(&mut buf)?;
        forja::atomic_write(p, &buf).with_context(|| format!("writing {}", p.display()))?;
        eprintln!("wrote {}", p.display());
        if a.count_only {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let (vocab, report) = train::train_to_dir(&counts, &a.cfg, a.device, &a.out, counting)?;
    println!(
        "{}: {} pieces ({} merges learned, last pair count {}), {} characters, merges in {:.1}s",
        a.out.join("tokenizer.json").display(),
        vocab.len(),
        report.merges_learned,
        report.last_merge_count,
        report.alphabet,
        report.seconds_merging
    );
    Ok(ExitCode::SUCCESS)
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate { manifest } => match forja::load_manifest(&manifest) {
            Ok(m) => {
                let units = m.units()?;
                // Stages load their models and data here, so a bad path fails now.
                let mut stages = forja::build_stages(&m)?;
                println!(
                    "{}: ok ({} sources, {} stages, {} units of input)",
                    manifest.display(),
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
        },
        Command::Run {
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
        } => {
            let path = manifest.unwrap_or_else(default_manifest);
            let Some(m) = load(&path) else {
                return Ok(ExitCode::from(1));
            };
            let mut opts = forja::RunOptions {
                rank,
                world_size,
                resume,
                progress: !cli.quiet,
                output: out,
                mem,
                phase,
                force,
                ..Default::default()
            };
            if let Some(t) = threads {
                if t == 0 {
                    bail!("--threads must be at least 1");
                }
                opts.threads = t;
            }
            forja::interrupt::install();
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
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("running {}", path.display())))
                }
            };
            if !cli.quiet && !summary.steps.iter().any(|s| s == "final") {
                println!(
                    "rank {rank}/{world_size}: ran {} in {:.2}s",
                    summary.steps.join(", "),
                    summary.elapsed.as_secs_f64()
                );
            } else if !cli.quiet {
                let secs = summary.elapsed.as_secs_f64();
                println!("{}", summary.stats.funnel());
                println!(
                    "rank {rank}/{world_size}: {} units ({} resumed) in {secs:.2}s, {:.1} MB/s of input",
                    summary.units_total,
                    summary.units_resumed,
                    summary.input_bytes as f64 / 1e6 / secs.max(1e-9)
                );
                if let Some(dir) = &summary.megatron {
                    print_mixture(dir, &forja::shards::blend::Families::load(dir)?);
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
        Command::EvalLid {
            data,
            backend,
            model,
            line_threshold,
            groups,
            json,
        } => {
            // The same construction as the `lid` stage's, so what is measured is what runs.
            let backend = match backend.as_str() {
                "fasttext" => forja::LidBackend::Fasttext,
                "whatlang" => forja::LidBackend::Whatlang,
                "lingua" => forja::LidBackend::Lingua,
                other => bail!("unknown backend {other:?}: fasttext, whatlang or lingua"),
            };
            let path_text = |p: PathBuf| p.display().to_string();
            let config = forja::LidConfig {
                mode: forja::Mode::Annotate,
                backend,
                model: model.map(path_text),
                second_opinion: groups.is_some(),
                groups: groups.map(path_text),
                line_threshold,
                doc_threshold: 0.6,
                languages: Vec::new(),
                code_sources: Vec::new(),
                top: 1,
            };
            let lid = forja::Lid::new(config, &forja::BuildContext { base: ".".into() })?;
            let mut samples = Vec::new();
            for d in &data {
                samples.extend(forja::lid::eval::read_samples(d).map_err(anyhow::Error::msg)?);
            }
            if samples.is_empty() {
                bail!("no labelled text in {data:?}");
            }
            let report = forja::lid::eval::evaluate(lid.identifier(), &samples, line_threshold);
            if json {
                println!("{}", serde_json::to_string(&report)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<6} {:>6} {:>9} {:>13}  mistaken for",
                "lang", "docs", "accuracy", "unidentified"
            );
            for (lang, r) in &report.languages {
                let confused: Vec<String> = r
                    .confused_with
                    .iter()
                    .map(|(l, n)| format!("{l}:{n}"))
                    .collect();
                println!(
                    "{lang:<6} {:>6} {:>9.3} {:>13}  {}",
                    r.total,
                    forja::lid::eval::Report::accuracy(r),
                    r.unidentified,
                    confused.join(" ")
                );
            }
            let (worst, wacc) = report.worst().unwrap_or(("-", 0.0));
            println!(
                "macro accuracy {:.4}, worst {worst} {wacc:.3}; {:.0} docs/s, {:.2} MB/s on one thread",
                report.macro_accuracy(),
                report.documents as f64 / report.seconds.max(1e-9),
                report.bytes as f64 / 1e6 / report.seconds.max(1e-9)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::TrainTokenizer {
            inputs,
            out,
            config,
            vocab_size,
            alpha,
            corpus,
            count_only,
            counts_out,
            from_counts,
            device,
        } => {
            let spec = corpus.setup()?;
            let mut cfg: forja::tokenizer::train::TrainConfig = match &config {
                Some(p) => {
                    let t = std::fs::read_to_string(p)
                        .with_context(|| format!("reading {}", p.display()))?;
                    toml::from_str(&t).with_context(|| format!("{}", p.display()))?
                }
                None => Default::default(),
            };
            if let Some(v) = vocab_size {
                cfg.vocab_size = v;
            }
            if let Some(a) = alpha {
                cfg.alpha = a;
            }
            cfg.check()?;
            let device = match device.as_str() {
                "cpu" => forja::tokenizer::train::Device::Cpu,
                "cuda" | "gpu" => forja::tokenizer::train::Device::Cuda,
                d => bail!("--device {d:?}: expected cpu or cuda"),
            };
            train_tokenizer(TrainArgs {
                inputs,
                out,
                cfg,
                spec,
                count_only,
                counts_out,
                from_counts,
                device,
                quiet: cli.quiet,
            })
        }
        Command::Fertility {
            tokenizer,
            corpus,
            json,
            corpus_args,
        } => {
            let spec = corpus_args.setup()?;
            let files = forja::tokenizer::corpus::list_files(&corpus)?;
            let f = forja::tokenizer::fertility::measure(&tokenizer, &files, &spec)?;
            print!("{}", f.table());
            if let Some(j) = json {
                let bytes = serde_json::to_vec_pretty(&f)?;
                forja::atomic_write(&j, &bytes)
                    .with_context(|| format!("writing {}", j.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            dir,
            doc,
            shard,
            token,
            licences,
        } => {
            let json = match (doc, shard, token) {
                _ if licences => {
                    serde_json::to_string_pretty(&forja::provenance::audit::licences(&dir)?)?
                }
                (Some(id), _, _) => {
                    let fate = forja::provenance::audit::doc_fate(&dir, &id)?;
                    if fate.dropped.is_none() && fate.shards.is_empty() && fate.parquet.is_none() {
                        bail!(
                            "{}: no document {id} in the ledger, the Parquet output or the shards",
                            dir.display()
                        );
                    }
                    serde_json::to_string_pretty(&fate)?
                }
                (None, Some(s), Some(t)) => serde_json::to_string_pretty(
                    &forja::provenance::audit::token_origin(&dir, &s, t)?,
                )?,
                _ => bail!("give --doc ID, --shard S with --token N, or --licences"),
            };
            println!("{json}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Slurm(args) => slurm(args),
        Command::Finish {
            manifest,
            out,
            world_size,
        } => {
            let Some(m) = load(&manifest) else {
                return Ok(ExitCode::from(1));
            };
            let f = forja::finish(&m, out.as_deref(), world_size)?;
            if !cli.quiet {
                print!("{}", f.stats.funnel());
                println!("output: {}", f.output_dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { dir } => {
            let path = forja::report::write(&dir)?;
            println!("wrote {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { dir } => {
            let v = forja::provenance::verify(&dir)?;
            for m in &v.mismatches {
                println!("{m}");
            }
            println!(
                "{}: {} outputs and {} inputs checked, {} mismatch(es)",
                dir.display(),
                v.outputs_checked,
                v.inputs_checked,
                v.mismatches.len()
            );
            Ok(if v.mismatches.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Perplexity(args) => perplexity(args, cli.quiet),
        Command::BenchLm(args) => bench_lm(args),
        Command::TrainLidGroups { data, out, keep } => {
            let mut samples = Vec::new();
            for d in &data {
                samples.extend(forja::lid::eval::read_samples(d).map_err(anyhow::Error::msg)?);
            }
            let model = forja::lid::groups::GroupModel::train(
                samples.iter().map(|s| (s.lang.as_str(), s.text.as_str())),
                keep,
            );
            model
                .save(&out)
                .with_context(|| format!("writing {}", out.display()))?;
            let mut per_lang = std::collections::BTreeMap::<&str, usize>::new();
            for s in &samples {
                *per_lang.entry(s.lang.as_str()).or_default() += s.text.len();
            }
            println!(
                "{}: languages {}",
                out.display(),
                model.languages().join(" ")
            );
            forja::lid::groups::describe(&model, std::io::stdout())?;
            for l in model.languages() {
                println!("  {l}: {:.2} MB of training text", per_lang[l] as f64 / 1e6);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect {
            path,
            docs,
            doc,
            chars,
            tokenizer,
        } => inspect(&path, docs, doc, chars, tokenizer),
        Command::Blend { dir, factor, root } => {
            use forja::shards::{blend, inspect as si};
            let Some(mdir) = si::megatron_dir(&dir) else {
                bail!("{}: no megatron/families.json", dir.display());
            };
            let mut fams = blend::Families::load(&mdir)?;
            for (l, f) in factor {
                fams.mixture.factors.insert(l, f);
            }
            let b = blend::blend(&fams);
            let files = b
                .write(&mdir, root.as_deref())
                .with_context(|| format!("writing into {}", mdir.display()))?;
            fams.save(&mdir)?;
            print_shares(&b.language_shares());
            for f in files {
                println!("wrote {}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Stats { dir } => {
            let run = match forja::collect_stats(&dir) {
                Err(forja::RunError::Invariant(e)) => {
                    println!("invariant broken: {e}");
                    return Ok(ExitCode::from(1));
                }
                other => other.with_context(|| {
                    format!("{} is not a finished forja output folder", dir.display())
                })?,
            };
            print!("{}", run.stats.funnel());
            if !run.missing.is_empty() {
                println!(
                    "incomplete: ranks {:?} of {} have not finished",
                    run.missing, run.world_size
                );
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn perplexity(args: PerplexityArgs, quiet: bool) -> Result<ExitCode> {
    let PerplexityArgs {
        model,
        files,
        lines,
        text: mut docs,
        lm,
        one_by_one,
        json,
    } = args;
    use std::io::Read;
    global_threads(lm.threads)?;
    let mut names: Vec<String> = (0..docs.len())
        .map(|i| format!("--text {}", i + 1))
        .collect();
    for f in &files {
        let mut text = String::new();
        if f.as_os_str() == "-" {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
        } else {
            let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            text = String::from_utf8(bytes)
                .map_err(|e| anyhow::anyhow!("{}: not UTF-8 ({e})", f.display()))?;
        }
        if lines {
            for (i, l) in text.lines().enumerate() {
                if !l.trim().is_empty() {
                    names.push(format!("{}:{}", f.display(), i + 1));
                    docs.push(l.to_string());
                }
            }
        } else {
            names.push(f.display().to_string());
            docs.push(text);
        }
    }
    if docs.is_empty() {
        bail!("nothing to score: give files or --text");
    }
    let opts = forja::lm::ScoreOptions {
        context: lm.context,
        stride: lm.stride,
        batch_size: lm.batch_size,
        max_tokens: lm.max_tokens,
    };
    if let Some((field, msg)) = opts.problems().into_iter().next() {
        bail!("--{}: {msg}", field.replace('_', "-"));
    }
    let precision: forja::lm::Precision = parse_enum("precision", &lm.precision)?;
    let device: forja::lm::LmDevice = parse_enum("device", &lm.device)?;
    let t0 = std::time::Instant::now();
    let m = forja::lm::Model::load(&model, precision, device)?;
    let load_s = t0.elapsed().as_secs_f64();
    if !quiet {
        eprintln!("loaded {} in {load_s:.2} s", m.describe());
    }
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let t1 = std::time::Instant::now();
    let scores = if one_by_one {
        let mut out = Vec::with_capacity(refs.len());
        for t in &refs {
            let (ids, bytes) = m.tokenize(t, opts.max_tokens)?;
            let lp = m.llama().token_logprobs_one_by_one(&ids)?;
            out.push(forja::lm::DocScore {
                tokens: lp.len() as u32,
                logprob: lp.iter().map(|&x| x as f64).sum(),
                bytes,
            });
        }
        out
    } else {
        m.score(&refs, &opts)?
    };
    let secs = t1.elapsed().as_secs_f64();
    let tokens: u64 = scores.iter().map(|s| s.tokens as u64).sum();
    let mut out = String::new();
    if json.is_none() {
        out.push_str("perplexity\ttokens\tlogprob/token\tlogprob/byte\tdocument\n");
    }
    for (s, name) in scores.iter().zip(&names) {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        if json.is_some() {
            out.push_str(&serde_json::to_string(&serde_json::json!({
                "document": name,
                "perplexity": s.perplexity(),
                "tokens": s.tokens,
                "logprob": s.logprob,
                "bytes": s.bytes,
            }))?);
            out.push('\n');
        } else {
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\t{name}\n",
                f(s.perplexity()),
                s.tokens,
                f(s.per_token()),
                f(s.per_byte())
            ));
        }
    }
    match json {
        Some(j) => forja::atomic_write(&j, out.as_bytes())
            .with_context(|| format!("writing {}", j.display()))?,
        None => print!("{out}"),
    }
    if !quiet {
        eprintln!(
            "scored {} documents, {tokens} tokens in {secs:.2} s: {:.1} tokens/s",
            docs.len(),
            tokens as f64 / secs.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Times the forward pass on random token ids (the speed does not depend
/// on them), and a plain matrix product of the model's type for the
/// device's attainable rate.
fn bench_lm(b: BenchLmArgs) -> Result<ExitCode> {
    use forja::lm::{LmDevice, Precision};
    let precision: Precision = parse_enum("precision", &b.precision)?;
    let device: LmDevice = parse_enum("device", &b.device)?;
    let dev = device.open()?;
    let loaded;
    let random;
    let (llama, what): (&forja::lm::Llama, String) = match forja::lm::shape(&b.model) {
        Some(cfg) => {
            // Random weights stand for a bf16 checkpoint.
            let dtype = precision.dtype(candle_core::DType::BF16, &dev);
            random = forja::lm::Llama::random(cfg, dtype, &dev)?;
            (
                &random,
                format!("{} shape, random weights, {dtype:?}", b.model),
            )
        }
        None => {
            loaded = forja::lm::Model::load(Path::new(&b.model), precision, device)?;
            let d = loaded.describe().to_string();
            (loaded.llama(), d)
        }
    };
    let cfg = llama.config.clone();
    let context = b.context.min(cfg.max_position);
    // Causal attention: a token attends to half the window on average.
    let flops = cfg.flops_per_token(context / 2);
    println!(
        "{what}: {:.3} GFLOP per token at context {context}",
        flops / 1e9
    );
    let matmul = matmul_rate(&dev, llama.dtype)?;
    println!(
        "{:?} {:?} matmul: {:.2} TFLOP/s",
        dev.location(),
        llama.dtype,
        matmul / 1e12
    );
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut ids = |n: usize| -> Vec<u32> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed % cfg.vocab_size as u64) as u32
            })
            .collect()
    };
    let mut lines = Vec::new();
    let mut report = |mode: String, bs: usize, tokens: usize, secs: f64| {
        let tps = tokens as f64 / secs;
        let frac = tps * flops / matmul;
        println!(
            "{mode:>12} batch {bs:>3}: {tokens:>7} tokens in {secs:>7.2} s = {tps:>9.1} tokens/s, {:.2} TFLOP/s, {:.1}% of matmul",
            tps * flops / 1e12,
            100.0 * frac
        );
        lines.push(serde_json::json!({
            "model": what, "mode": mode, "batch_size": bs, "context": context,
            "tokens": tokens, "seconds": secs, "tokens_per_s": tps,
            "flops_per_token": flops, "matmul_flops": matmul, "matmul_fraction": frac,
        }));
    };
    for &bs in &b.batch_sizes {
        let batch: Vec<Vec<u32>> = (0..bs.max(1)).map(|_| ids(context)).collect();
        let from = vec![1; batch.len()];
        llama.token_logprobs(&batch, &from)?; // warm-up
        let per_batch = batch.len() * (context - 1);
        let rounds = b.tokens.div_ceil(per_batch).max(1);
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            llama.token_logprobs(&batch, &from)?;
        }
        report(
            "windows".into(),
            bs,
            rounds * per_batch,
            t.elapsed().as_secs_f64(),
        );
    }
    if b.one_by_one > 1 {
        let seq = ids(b.one_by_one);
        let t = std::time::Instant::now();
        let n = llama.token_logprobs_one_by_one(&seq)?.len();
        report("one-by-one".into(), 1, n, t.elapsed().as_secs_f64());
    }
    if let Some(j) = b.json {
        let mut text = String::new();
        for l in lines {
            text.push_str(&l.to_string());
            text.push('\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&j)
            .with_context(|| format!("opening {}", j.display()))?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// FLOP/s of square matrix products in `dtype` on `dev` (2048 on the CPU,
/// 8192 on a GPU), the best of several runs.
fn matmul_rate(dev: &candle_core::Device, dtype: candle_core::DType) -> Result<f64> {
    let n = if dev.is_cpu() { 2048 } else { 8192 };
    let a = candle_core::Tensor::randn(0f32, 1.0, (n, n), dev)?.to_dtype(dtype)?;
    let bm = candle_core::Tensor::randn(0f32, 1.0, (n, n), dev)?.to_dtype(dtype)?;
    let mut best = f64::MAX;
    for _ in 0..5 {
        dev.synchronize()?;
        let t = std::time::Instant::now();
        let reps = if dev.is_cpu() { 1 } else { 10 };
        for _ in 0..reps {
            let _c = a.matmul(&bm)?;
        }
        dev.synchronize()?;
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    Ok(2.0 * (n as f64).powi(3) / best)
}

#[derive(clap::Args, Debug)]
struct SlurmArgs {
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

fn slurm(a: SlurmArgs) -> Result<ExitCode> {
    use forja::cluster::slurm;
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
    let spec = slurm::RunSpec {
        name: &name,
        manifest: &manifest,
        out: &out,
        steps: &steps,
        world_size: cfg.world_size,
        forja: &forja_bin,
    };
    let jobs = slurm::plan(&spec, &cfg);
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
    slurm::write_scripts(&jobs)?;
    let ids = if a.submit {
        slurm::submit(&jobs, &a.sbatch)?
    } else {
        Vec::new()
    };
    for (i, j) in jobs.iter().enumerate() {
        let ranks = if slurm::single_task(&j.step) {
            "1 task".to_string()
        } else {
            format!("ranks {}", slurm::array_spec(&j.ranks))
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
