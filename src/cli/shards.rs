//! `forja inspect` and `forja blend`: reading Megatron shards back, and
//! recomputing a run's blend with other factors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::{parse_factor, print_mixture, print_shares, Outcome};

/// `forja inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// A shard (`prefix`, `prefix.bin` or `prefix.idx`), or an output
    /// folder (or its `megatron` folder) for the whole run.
    pub path: PathBuf,
    /// Documents to decode, from the first (with a shard).
    #[arg(long, default_value_t = 3)]
    pub docs: usize,
    /// Decode this document only.
    #[arg(long)]
    pub doc: Option<usize>,
    /// Characters of each document to print (0: all).
    #[arg(long, default_value_t = 400)]
    pub chars: usize,
    /// The tokenizer (default: the tokenizer.json the run copied beside the shards).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

/// `forja inspect`: a shard's counts and documents decoded back to text,
/// or a whole run's families, shares and shard checks.
pub fn inspect(a: InspectArgs) -> Outcome {
    let InspectArgs {
        path,
        docs,
        doc,
        chars,
        tokenizer,
    } = a;
    let path = path.as_path();
    if path.is_dir() {
        let Some(dir) = forja::megatron_dir(path) else {
            bail!(
                "{}: no megatron/families.json (a run with the megatron format writes it when its last step is done)",
                path.display()
            );
        };
        let fams = forja::Families::load(&dir)?;
        for split in forja::Split::ALL {
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
        let bad = forja::check_families(&dir, &fams);
        if !bad.is_empty() {
            for b in &bad {
                println!("mismatch: {b}");
            }
            return Ok(ExitCode::from(1));
        }
        println!("\nevery shard's index matches families.json");
        return Ok(ExitCode::SUCCESS);
    }
    let prefix = forja::shard_prefix(path);
    let mut r = forja::IndexedReader::open(&prefix)?;
    let s = forja::shard_summary(&r);
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
    let tok_path = match tokenizer.or_else(|| forja::find_tokenizer(&prefix)) {
        Some(t) => t,
        None => {
            println!("(no tokenizer.json beside the shard; pass --tokenizer to decode)");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let t = forja::load_tokenizer(&tok_path)?;
    let which: Vec<usize> = match doc {
        Some(i) if i >= r.len() => bail!("--doc {i}: the shard has {} documents", r.len()),
        Some(i) => vec![i],
        None => (0..docs.min(r.len())).collect(),
    };
    for i in which {
        let ids = r.get(i)?;
        let text = forja::decode_tokens(&t, &ids)?;
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

/// `forja blend`.
#[derive(clap::Args, Debug)]
pub struct BlendArgs {
    /// The run's output folder (or its `megatron` folder).
    pub dir: PathBuf,
    /// A language factor, e.g. `--factor en=0.5` (repeatable).
    #[arg(long, value_parser = parse_factor)]
    pub factor: Vec<(String, f64)>,
    /// Write shard paths under this folder instead of relative ones.
    #[arg(long)]
    pub root: Option<PathBuf>,
}

/// `forja blend`: writes the blend files and share table again.
pub fn blend(a: BlendArgs) -> Outcome {
    let BlendArgs { dir, factor, root } = a;
    let Some(mdir) = forja::megatron_dir(&dir) else {
        bail!("{}: no megatron/families.json", dir.display());
    };
    let mut fams = forja::Families::load(&mdir)?;
    for (l, f) in factor {
        fams.mixture.factors.insert(l, f);
    }
    let b = forja::blend(&fams);
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
