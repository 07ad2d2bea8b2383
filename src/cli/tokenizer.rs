//! `forja train-tokenizer` and `forja fertility`: a BPE tokenizer trained
//! from a corpus (or from word counts made in parts), and its tokens per
//! word and byte per language.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::{CorpusArgs, Outcome};

/// `forja train-tokenizer`.
#[derive(clap::Args, Debug)]
pub struct TrainTokenizerArgs {
    /// Input files or folders (not needed with --from-counts).
    pub inputs: Vec<PathBuf>,
    /// Output folder.
    #[arg(long, default_value = "tokenizer")]
    pub out: PathBuf,
    /// Settings as TOML (the fields of a `train_tokenizer` stage's
    /// `[stage.tokenizer]` table: vocab_size, alpha, split_digits, ...).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Vocabulary size (default 256000, Salamandra's).
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// Language sampling exponent: 0 uniform (default), 1 natural.
    #[arg(long)]
    pub alpha: Option<f64>,
    #[command(flatten)]
    pub corpus: CorpusArgs,
    /// Only count words and write them to --counts-out.
    #[arg(long, requires = "counts_out")]
    pub count_only: bool,
    /// Where to write the word counts.
    #[arg(long)]
    pub counts_out: Option<PathBuf>,
    /// Train from these counts files instead of reading a corpus.
    #[arg(long, num_args = 1..)]
    pub from_counts: Vec<PathBuf>,
    /// Merge loop on `cpu` or `cuda` (needs the `cuda` feature).
    #[arg(long, value_enum, default_value_t)]
    pub device: forja::TrainDevice,
}

/// `forja train-tokenizer`: counts words (or reads counts) and trains.
pub fn train_tokenizer(a: TrainTokenizerArgs, quiet: bool) -> Outcome {
    let TrainTokenizerArgs {
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
    } = a;
    let spec = corpus.setup()?;
    let mut cfg: forja::TrainConfig = match &config {
        Some(p) => {
            let t =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
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
    train(Train {
        inputs,
        out,
        cfg,
        spec,
        count_only,
        counts_out,
        from_counts,
        device,
        quiet,
    })
}

/// What [`train`] needs, settled from the arguments.
struct Train {
    inputs: Vec<PathBuf>,
    out: PathBuf,
    cfg: forja::TrainConfig,
    spec: forja::CorpusSpec,
    count_only: bool,
    counts_out: Option<PathBuf>,
    from_counts: Vec<PathBuf>,
    device: forja::TrainDevice,
    quiet: bool,
}

fn train(a: Train) -> Result<ExitCode> {
    use forja::WordCounts;
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
        let files = forja::list_corpus_files(&a.inputs)?;
        let total: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum();
        let bar = forja::progress_bar(!a.quiet, total, "counting words");
        let counts = forja::count_words(&files, &a.spec, &a.cfg, &bar)?;
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
    let (vocab, report) = forja::train_tokenizer(&counts, &a.cfg, a.device, &a.out, counting)?;
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

/// `forja fertility`.
#[derive(clap::Args, Debug)]
pub struct FertilityArgs {
    /// A tokenizer.json.
    pub tokenizer: PathBuf,
    /// Input files or folders, as for train-tokenizer.
    #[arg(required = true)]
    pub corpus: Vec<PathBuf>,
    /// Also write the numbers as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub corpus_args: CorpusArgs,
}

/// `forja fertility`: tokens per word and per byte of each language.
pub fn fertility(a: FertilityArgs) -> Outcome {
    let FertilityArgs {
        tokenizer,
        corpus,
        json,
        corpus_args,
    } = a;
    let spec = corpus_args.setup()?;
    let files = forja::list_corpus_files(&corpus)?;
    let f = forja::measure_fertility(&tokenizer, &files, &spec)?;
    print!("{}", f.table());
    if let Some(j) = json {
        let bytes = serde_json::to_vec_pretty(&f)?;
        forja::atomic_write(&j, &bytes).with_context(|| format!("writing {}", j.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
