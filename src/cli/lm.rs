//! `forja perplexity` and `forja bench-lm`: documents scored by a
//! Llama-architecture model, and the model's scoring throughput.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::{global_threads, Outcome};

/// `forja perplexity`.
#[derive(clap::Args, Debug)]
pub struct PerplexityArgs {
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
pub struct BenchLmArgs {
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
    /// The number type of weights and activations.
    #[arg(long, value_enum, default_value_t)]
    precision: forja::Precision,
    /// Where the model runs (cuda needs the `lm-cuda` feature).
    #[arg(long, value_enum, default_value_t)]
    device: forja::LmDevice,
    /// Also time the one-token-at-a-time baseline on this many tokens.
    #[arg(long, default_value_t = 0)]
    one_by_one: usize,
    /// Append one JSON object per measurement to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// How `perplexity` runs its model.
#[derive(clap::Args, Debug)]
pub struct LmArgs {
    /// Window length in tokens.
    #[arg(long, default_value_t = forja::ScoreOptions::default().context)]
    context: usize,
    /// Tokens each further window of a long document advances by.
    #[arg(long, default_value_t = forja::ScoreOptions::default().stride)]
    stride: usize,
    /// Windows per forward pass.
    #[arg(long, default_value_t = forja::ScoreOptions::default().batch_size)]
    batch_size: usize,
    /// Score at most this many tokens per document (0: all).
    #[arg(long, default_value_t = forja::ScoreOptions::default().max_tokens)]
    max_tokens: usize,
    /// The number type: auto is f32 on the CPU and, on a GPU, the
    /// checkpoint's type (GGUF blocks quantized).
    #[arg(long, value_enum, default_value_t)]
    precision: forja::Precision,
    /// Where the model runs (cuda needs the `lm-cuda` feature).
    #[arg(long, value_enum, default_value_t)]
    device: forja::LmDevice,
    /// Worker threads for the matrix products (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

/// `forja perplexity`: scores documents, as a table or JSON lines.
pub fn perplexity(args: PerplexityArgs, quiet: bool) -> Outcome {
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
    let opts = forja::ScoreOptions {
        context: lm.context,
        stride: lm.stride,
        batch_size: lm.batch_size,
        max_tokens: lm.max_tokens,
    };
    if let Some((field, msg)) = opts.problems().into_iter().next() {
        bail!("--{}: {msg}", field.replace('_', "-"));
    }
    let (precision, device) = (lm.precision, lm.device);
    let t0 = std::time::Instant::now();
    let m = forja::Model::load(&model, precision, device)?;
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
            out.push(forja::DocScore {
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
pub fn bench_lm(b: BenchLmArgs) -> Outcome {
    let (precision, device) = (b.precision, b.device);
    let dev = device.open()?;
    let loaded;
    let random;
    let (llama, what): (&forja::Llama, String) = match forja::model_shape(&b.model) {
        Some(cfg) => {
            // Random weights stand for a bf16 checkpoint.
            let dtype = precision.dtype(candle_core::DType::BF16, &dev);
            random = forja::Llama::random(cfg, dtype, &dev)?;
            (
                &random,
                format!("{} shape, random weights, {dtype:?}", b.model),
            )
        }
        None => {
            loaded = forja::Model::load(Path::new(&b.model), precision, device)?;
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
