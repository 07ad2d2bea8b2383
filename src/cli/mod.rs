//! The subcommands of the `forja` command line, one room each: its
//! arguments (a clap `Args` struct) and its body. `main.rs` parses the
//! command line and hands each command to its room.
//!
//! Every closed set of values is a clap `ValueEnum` of the library's own
//! type, and every default is the library's, so the command line and a
//! manifest mean the same thing.

pub mod audit;
pub mod lid;
pub mod lm;
pub mod run;
pub mod shards;
pub mod slurm;
pub mod tokenizer;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

/// What a command returns: its exit code, or an error (exit 2).
pub type Outcome = Result<ExitCode>;

/// `512M`, `8G`, `1.5G` or a plain byte count.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
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
pub fn parse_factor(s: &str) -> Result<(String, f64), String> {
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
pub fn print_shares(rows: &[forja::Share]) {
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
pub fn print_mixture(dir: &Path, fams: &forja::Families) {
    println!(
        "\ntraining mixture ({}):",
        dir.join("train.blend").display()
    );
    print_shares(&forja::blend(fams).language_shares());
}

/// The manifest at `path`, or `None` once its problems are printed
/// (exit code 1).
pub fn load(path: &Path) -> Option<forja::LoadedManifest> {
    let m = forja::load_manifest(path)
        .map_err(|problems| eprint!("{problems}"))
        .ok()?;
    for w in &m.warnings {
        tracing::warn!("{}:{}:{}: {}", path.display(), w.line, w.column, w.message);
    }
    Some(m)
}

/// The manifest `forja run` runs when given none: the bundled demo.
pub fn default_manifest() -> Result<DefaultManifest> {
    let local = PathBuf::from("manifests/demo.toml");
    if local.exists() {
        return Ok(DefaultManifest {
            path: local,
            out: None,
        });
    }
    // The installed binary run from elsewhere: the demo in forja's source
    // tree, but its output here, never inside that tree.
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/demo.toml");
    if !source.exists() {
        bail!(
            "no manifest given, and no manifests/demo.toml here or in forja's source tree \
             ({}): name one, `forja run MANIFEST`",
            source.display()
        );
    }
    let out = PathBuf::from("forja-demo-out");
    tracing::info!(
        "no manifest given: running the bundled demo {} into {}",
        source.display(),
        out.display()
    );
    Ok(DefaultManifest {
        path: source,
        out: Some(out),
    })
}

/// The manifest `forja run` takes when given none, and where its output
/// goes (`None`: where the manifest says).
pub struct DefaultManifest {
    /// The demo manifest.
    pub path: PathBuf,
    /// The output folder to use instead of the manifest's.
    pub out: Option<PathBuf>,
}

/// Sizes the global rayon pool (all cores when `None`).
pub fn global_threads(n: Option<usize>) -> Result<()> {
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
pub struct CorpusArgs {
    /// JSON field or Parquet column holding the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// JSON field or Parquet column holding the language.
    #[arg(long, default_value = "lang")]
    pub lang_field: String,
    /// Language of documents without one (text files: their name).
    #[arg(long)]
    pub lang: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl CorpusArgs {
    /// Sizes the global rayon pool and returns the reader's settings.
    pub fn setup(self) -> Result<forja::CorpusSpec> {
        global_threads(self.threads)?;
        Ok(forja::CorpusSpec {
            text_field: self.text_field,
            lang_field: self.lang_field,
            default_lang: self.lang,
        })
    }
}
