//! Language-model scoring for the perplexity stage, on candle.
//!
//! [`Model::load`] takes a local Hugging Face folder or a GGUF file of any
//! Llama-architecture model (Salamandra, SmolLM2, ...); [`Model::score`]
//! returns each document's summed log-probability, computed over windows
//! of at most `context` tokens that slide by `stride` so that every token
//! is scored once, with at least `context - stride` tokens before it.

mod llama;
mod load;
#[cfg(test)]
pub(crate) mod reference_tests;

use std::path::Path;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

pub use llama::{shape, Llama, LlamaConfig};

#[derive(Debug, thiserror::Error)]
pub enum LmError {
    #[error("{path}: {message}")]
    At { path: String, message: String },
    #[error("model config: {0}")]
    Config(String),
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("device: {0}")]
    Device(String),
}

impl LmError {
    fn at(path: &Path, message: impl Into<String>) -> Self {
        LmError::At {
            path: path.display().to_string(),
            message: message.into(),
        }
    }

    fn io(path: &Path, e: std::io::Error) -> Self {
        Self::at(path, e.to_string())
    }
}

/// The number type of weights and activations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// f32 on the CPU (its matrix products are several times faster than
    /// candle's quantized ones when whole windows are scored); on a GPU,
    /// the checkpoint's own type, and GGUF blocks stay quantized.
    #[default]
    Auto,
    /// GGUF blocks stay quantized (Q4/Q8 matmul) on any device: a quarter
    /// of f32's memory. Hugging Face checkpoints: as `auto`.
    Quantized,
    /// 32-bit floats.
    F32,
    /// bfloat16.
    Bf16,
    /// 16-bit floats.
    F16,
}

impl Precision {
    /// The type of weights and activations for a checkpoint stored as
    /// `stored`, on `device`.
    pub fn dtype(self, stored: DType, device: &Device) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
            Precision::Auto | Precision::Quantized if device.is_cpu() => DType::F32,
            Precision::Auto | Precision::Quantized => stored,
        }
    }
}

/// Where the model runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LmDevice {
    /// The CPU.
    #[default]
    Cpu,
    /// The first NVIDIA GPU; needs a build with the `lm-cuda` feature.
    Cuda,
}

impl LmDevice {
    /// Opens the device (CUDA device 0 for `Cuda`).
    pub fn open(self) -> Result<Device, LmError> {
        match self {
            LmDevice::Cpu => Ok(Device::Cpu),
            LmDevice::Cuda => Device::new_cuda(0).map_err(|e| {
                LmError::Device(format!(
                    "cannot open CUDA device 0 ({e}); the GPU path needs a build with `--features lm-cuda` and an NVIDIA driver"
                ))
            }),
        }
    }
}

/// How documents are cut into windows and batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreOptions {
    /// Longest window, in tokens (capped by the model's positions).
    pub context: usize,
    /// Tokens a window advances by; later windows score only their new tokens.
    pub stride: usize,
    /// Windows per forward pass.
    pub batch_size: usize,
    /// Score at most this many tokens of a document (0: all).
    pub max_tokens: usize,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions {
            context: 512,
            stride: 256,
            batch_size: 8,
            max_tokens: 0,
        }
    }
}

impl ScoreOptions {
    /// Problems with the options, each with the option's name.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if self.context < 2 {
            p.push(("context", "must be at least 2 tokens".into()));
        }
        if self.stride == 0 || self.stride >= self.context.max(1) {
            p.push(("stride", "must be in 1..context".into()));
        }
        if self.batch_size == 0 {
            p.push(("batch_size", "must be at least 1".into()));
        }
        p
    }
}

/// One document's score.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DocScore {
    /// Tokens scored (the first token has no context unless a BOS precedes it).
    pub tokens: u32,
    /// Sum of the natural-log probabilities of those tokens.
    pub logprob: f64,
    /// UTF-8 bytes of the text scored.
    pub bytes: u64,
}

impl DocScore {
    /// `exp(-logprob / tokens)`; `None` without a scored token.
    pub fn perplexity(&self) -> Option<f64> {
        (self.tokens > 0).then(|| (-self.logprob / self.tokens as f64).exp())
    }
    /// Mean natural-log probability per scored token.
    pub fn per_token(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.logprob / self.tokens as f64)
    }
    /// Natural-log probability per byte of the scored text.
    pub fn per_byte(&self) -> Option<f64> {
        (self.tokens > 0 && self.bytes > 0).then(|| self.logprob / self.bytes as f64)
    }
}

/// A loaded model and tokenizer, ready to score text.
pub struct Model {
    inner: load::Loaded,
}

/// A slice of one document's tokens run as one row of a batch.
struct Window {
    doc: usize,
    start: usize,
    end: usize,
    /// First position (absolute) whose token this window scores.
    first: usize,
}

impl Model {
    /// Loads a Hugging Face folder or a `.gguf` file onto `device`.
    pub fn load(path: &Path, precision: Precision, device: LmDevice) -> Result<Self, LmError> {
        let dev = device.open()?;
        Ok(Model {
            inner: load::load(path, precision, &dev)?,
        })
    }

    /// The model's shape.
    pub fn config(&self) -> &LlamaConfig {
        &self.inner.llama.config
    }

    /// The number type the weights are computed in.
    pub fn dtype(&self) -> DType {
        self.inner.llama.dtype
    }

    /// What was loaded, for logs: file, shape, type and device.
    pub fn describe(&self) -> &str {
        &self.inner.description
    }

    /// The forward pass.
    pub fn llama(&self) -> &Llama {
        &self.inner.llama
    }

    /// Token ids as scored: the BOS (if the model uses one) and the text's
    /// tokens, cut at `max_tokens` (0: no cut).
    pub fn tokenize(&self, text: &str, max_tokens: usize) -> Result<(Vec<u32>, u64), LmError> {
        let enc = self
            .inner
            .tokenizer
            .encode(text, self.inner.tokenizer_adds_bos)
            .map_err(|e| LmError::Tokenizer(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        ids.extend(self.inner.bos);
        ids.extend_from_slice(enc.get_ids());
        let has_bos = self.inner.bos.is_some() || self.inner.tokenizer_adds_bos;
        let mut bytes = text.len() as u64;
        if max_tokens > 0 && ids.len() > max_tokens + has_bos as usize {
            let keep = max_tokens + has_bos as usize;
            // Bytes of the text the kept tokens cover, for the per-byte score.
            let last = keep - 1 - has_bos as usize;
            bytes = enc.get_offsets().get(last).map_or(bytes, |o| o.1 as u64);
            ids.truncate(keep);
        }
        Ok((ids, bytes))
    }

    /// Scores `texts`, in order. Deterministic: the windows and batches
    /// depend only on the texts and `opts`.
    pub fn score(&self, texts: &[&str], opts: &ScoreOptions) -> Result<Vec<DocScore>, LmError> {
        let mut ids = Vec::with_capacity(texts.len());
        let mut scores = Vec::with_capacity(texts.len());
        for t in texts {
            let (doc, bytes) = self.tokenize(t, opts.max_tokens)?;
            ids.push(doc);
            scores.push(DocScore {
                bytes,
                ..Default::default()
            });
        }
        self.score_ids(&ids, opts, |doc, lp| {
            scores[doc].tokens += lp.len() as u32;
            scores[doc].logprob += lp.iter().map(|&x| x as f64).sum::<f64>();
        })?;
        Ok(scores)
    }

    /// Runs every window of `docs` and hands each window's per-token
    /// log-probs to `sink(doc, logprobs)`.
    pub fn score_ids(
        &self,
        docs: &[Vec<u32>],
        opts: &ScoreOptions,
        mut sink: impl FnMut(usize, &[f32]),
    ) -> Result<(), LmError> {
        let context = opts.context.min(self.config().max_position).max(2);
        let stride = opts.stride.clamp(1, context - 1);
        let mut windows = Vec::new();
        for (d, ids) in docs.iter().enumerate() {
            windows.extend(windows_of(d, ids.len(), context, stride));
        }
        // Longest first, so each batch pads little; ties keep input order.
        windows.sort_by_key(|w| std::cmp::Reverse(w.end - w.start));
        for batch in windows.chunks(opts.batch_size.max(1)) {
            let rows: Vec<&[u32]> = batch.iter().map(|w| &docs[w.doc][w.start..w.end]).collect();
            let from: Vec<usize> = batch.iter().map(|w| w.first - w.start).collect();
            let lps = self.inner.llama.token_logprobs(&rows, &from)?;
            for (w, lp) in batch.iter().zip(&lps) {
                sink(w.doc, lp);
            }
        }
        Ok(())
    }
}

/// The windows of a document of `n` tokens: the first covers
/// `[0, context)` and scores positions 1 onwards; each next one ends
/// `stride` further and scores only what the last did not.
fn windows_of(doc: usize, n: usize, context: usize, stride: usize) -> Vec<Window> {
    let mut out = Vec::new();
    if n < 2 {
        return out;
    }
    let mut end = n.min(context);
    out.push(Window {
        doc,
        start: 0,
        end,
        first: 1,
    });
    while end < n {
        let next = (end + stride).min(n);
        out.push(Window {
            doc,
            start: next.saturating_sub(context),
            end: next,
            first: end,
        });
        end = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_score_every_token_once_with_context() {
        for n in [0, 1, 2, 5, 10, 11, 37, 100] {
            for (context, stride) in [(4, 2), (10, 5), (10, 9), (16, 1)] {
                let ws = windows_of(0, n, context, stride);
                let mut scored = vec![0; n];
                for w in &ws {
                    assert!(w.end - w.start <= context);
                    assert!(w.start < w.first && w.first < w.end);
                    for (p, c) in scored.iter_mut().enumerate().take(w.end).skip(w.first) {
                        *c += 1;
                        assert!(w.first == 1 || p - w.start >= context - stride);
                    }
                }
                if n >= 2 {
                    assert_eq!(scored[0], 0);
                    assert!(scored[1..].iter().all(|&c| c == 1), "n {n} {scored:?}");
                } else {
                    assert!(ws.is_empty());
                }
            }
        }
    }

    #[test]
    fn scores_derive_from_sums() {
        let s = DocScore {
            tokens: 4,
            logprob: -8.0,
            bytes: 16,
        };
        assert!((s.perplexity().unwrap() - 2f64.exp()).abs() < 1e-12);
        assert_eq!(s.per_token(), Some(-2.0));
        assert_eq!(s.per_byte(), Some(-0.5));
        assert_eq!(DocScore::default().perplexity(), None);
    }
}
