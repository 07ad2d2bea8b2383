//! A Llama forward pass that keeps every position.
//!
//! candle-transformers' Llama returns the last position's logits, which is
//! what generation needs; perplexity needs the log-probability of every
//! token, so this is a forward pass of our own over the same candle ops.
//! Weights are [`QMatMul`]s, so one code path serves f32/bf16 checkpoints
//! and GGUF's quantized blocks (candle's quantized matmul).

use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Tensor, D};

use super::LmError;

/// The shape of a Llama-architecture model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// The longest sequence the model was trained on.
    pub max_position: usize,
    /// GGUF files from llama.cpp store Q and K permuted for the interleaved
    /// rotation; Hugging Face checkpoints rotate the two halves.
    pub rope_interleaved: bool,
}

impl LlamaConfig {
    /// Multiply-adds per token of the matrix products, times two: the
    /// usual 2·N FLOPs per token, plus attention over `context` positions.
    pub fn flops_per_token(&self, context: usize) -> f64 {
        let h = self.hidden_size as f64;
        let kv = (self.num_kv_heads * self.head_dim) as f64;
        let q = (self.num_heads * self.head_dim) as f64;
        let per_layer = h * q * 2.0 + h * kv * 2.0 + 3.0 * h * self.intermediate_size as f64;
        let attn = 2.0 * q * context as f64;
        2.0 * (self.num_layers as f64 * (per_layer + attn) + h * self.vocab_size as f64)
    }

    pub fn check(&self) -> Result<(), LmError> {
        let bad = |m: String| Err(LmError::Config(m));
        if self.num_heads == 0
            || self.num_kv_heads == 0
            || !self.num_heads.is_multiple_of(self.num_kv_heads)
        {
            return bad(format!(
                "{} attention heads do not divide into {} key/value heads",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!("head dimension {} is not even", self.head_dim));
        }
        if self.vocab_size == 0 || self.hidden_size == 0 || self.num_layers == 0 {
            return bad("vocab, hidden size and layers must be positive".into());
        }
        Ok(())
    }
}

pub(crate) struct Layer {
    pub attn_norm: Tensor,
    pub q: QMatMul,
    pub k: QMatMul,
    pub v: QMatMul,
    pub o: QMatMul,
    pub ffn_norm: Tensor,
    pub gate: QMatMul,
    pub up: QMatMul,
    pub down: QMatMul,
}

/// A loaded model, shared read-only by every worker.
pub struct Llama {
    /// The model's shape (layers, heads, vocabulary, context).
    pub config: LlamaConfig,
    /// Activations' type: f32, or bf16/f16 for half-precision checkpoints.
    pub dtype: DType,
    pub(crate) embed: Tensor,
    pub(crate) layers: Vec<Layer>,
    pub(crate) norm: Tensor,
    pub(crate) head: QMatMul,
    cos: Tensor,
    sin: Tensor,
}

/// Most logits held at once on the CPU when turning hidden states into
/// log-probs: 16 Mi floats (64 MB), whatever the vocabulary; sixteen
/// times that on a GPU, where larger products run closer to its peak.
const LOGIT_BUDGET: usize = 16 << 20;

impl Llama {
    pub(crate) fn new(
        config: LlamaConfig,
        dtype: DType,
        embed: Tensor,
        layers: Vec<Layer>,
        norm: Tensor,
        head: QMatMul,
    ) -> Result<Self, LmError> {
        config.check()?;
        let device = embed.device().clone();
        let half = config.head_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| {
                (1.0 / config
                    .rope_theta
                    .powf(2.0 * i as f64 / config.head_dim as f64)) as f32
            })
            .collect();
        let inv = Tensor::from_vec(inv, (1, half), &device)?;
        let pos = Tensor::arange(0u32, config.max_position.max(1) as u32, &device)?
            .to_dtype(DType::F32)?
            .reshape((config.max_position.max(1), 1))?;
        let freqs = pos.broadcast_mul(&inv)?;
        Ok(Llama {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
            config,
            dtype,
            embed,
            layers,
            norm,
            head,
        })
    }

    /// The device the weights are on.
    pub fn device(&self) -> &Device {
        self.embed.device()
    }

    /// Final hidden states `[batch, seq, hidden]` of right-padded token ids
    /// `[batch, seq]`. With a causal mask, padding after a sequence's last
    /// token never reaches its real positions, so no padding mask is needed.
    pub fn hidden(&self, ids: &Tensor) -> Result<Tensor, LmError> {
        self.forward(ids, 0, None)
    }

    /// The layers over `ids` at positions `start..`; with a cache (one
    /// key/value pair per layer) the positions before `start` come from it
    /// and the new ones are appended, which is how generation runs a token
    /// at a time.
    fn forward(
        &self,
        ids: &Tensor,
        start: usize,
        mut cache: Option<&mut Vec<(Tensor, Tensor)>>,
    ) -> Result<Tensor, LmError> {
        let c = &self.config;
        let (b, t) = ids.dims2()?;
        if start + t > c.max_position {
            return Err(LmError::Config(format!(
                "a window of {} tokens is longer than the model's {} positions",
                start + t,
                c.max_position
            )));
        }
        let dev = self.device();
        let mut x =
            self.embed
                .index_select(&ids.flatten_all()?, 0)?
                .reshape((b, t, c.hidden_size))?;
        let cos = self.cos.narrow(0, start, t)?;
        let sin = self.sin.narrow(0, start, t)?;
        // One new token sees every cached position: no mask.
        let mask = if t > 1 {
            if start > 0 {
                return Err(LmError::Config(
                    "only one token at a time runs after cached positions".into(),
                ));
            }
            Some(causal_mask(t, dev)?)
        } else {
            None
        };
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let groups = c.num_heads / c.num_kv_heads;
        for (i, l) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &l.attn_norm, c.rms_norm_eps as f32)?;
            let heads = |w: &QMatMul, n: usize| -> Result<Tensor, LmError> {
                Ok(w.forward(&h)?
                    .reshape((b, t, n, c.head_dim))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let rot = |x: Tensor| -> Result<Tensor, LmError> {
                Ok(if c.rope_interleaved {
                    candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?
                } else {
                    candle_nn::rotary_emb::rope(&x, &cos, &sin)?
                })
            };
            let q = rot(heads(&l.q, c.num_heads)?)?;
            let mut k = rot(heads(&l.k, c.num_kv_heads)?)?;
            let mut v = heads(&l.v, c.num_kv_heads)?;
            if let Some(cache) = cache.as_deref_mut() {
                if let Some((ck, cv)) = cache.get(i) {
                    k = Tensor::cat(&[ck, &k], 2)?;
                    v = Tensor::cat(&[cv, &v], 2)?;
                }
                if cache.len() > i {
                    cache[i] = (k.clone(), v.clone());
                } else {
                    cache.push((k.clone(), v.clone()));
                }
            }
            let k = repeat_kv(k, groups)?;
            let v = repeat_kv(v, groups)?;
            // Scores and softmax in f32 whatever the weights: bf16 logits
            // over long windows lose the small differences perplexity is about.
            let mut att = (q
                .to_dtype(DType::F32)?
                .matmul(&k.to_dtype(DType::F32)?.t()?)?
                * scale)?;
            if let Some(m) = &mask {
                att = att.broadcast_add(m)?;
            }
            let att = candle_nn::ops::softmax_last_dim(&att)?.to_dtype(self.dtype)?;
            let y = att
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((b, t, c.num_heads * c.head_dim))?;
            x = (x + l.o.forward(&y)?)?;
            let h = candle_nn::ops::rms_norm(&x, &l.ffn_norm, c.rms_norm_eps as f32)?;
            let act = (candle_nn::ops::silu(&l.gate.forward(&h)?)? * l.up.forward(&h)?)?;
            x = (x + l.down.forward(&act)?)?;
        }
        Ok(candle_nn::ops::rms_norm(
            &x,
            &self.norm,
            self.config.rms_norm_eps as f32,
        )?)
    }

    /// The log-probs of `ids[1..]` computed the way generation runs: one
    /// token per forward pass, with a key/value cache. The same numbers as
    /// [`Llama::token_logprobs`]; it is the baseline the batched scorer is
    /// measured against (`scripts/bench-ppl`).
    pub fn token_logprobs_one_by_one(&self, ids: &[u32]) -> Result<Vec<f32>, LmError> {
        let dev = self.device();
        let mut cache = Vec::with_capacity(self.layers.len());
        let mut out = Vec::with_capacity(ids.len().saturating_sub(1));
        for pos in 0..ids.len().saturating_sub(1) {
            let input = Tensor::from_slice(&ids[pos..pos + 1], (1, 1), dev)?;
            let h = self
                .forward(&input, pos, Some(&mut cache))?
                .reshape((1, self.config.hidden_size))?;
            let logits = self.head.forward(&h)?.to_dtype(DType::F32)?;
            let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let target = Tensor::from_slice(&ids[pos + 1..pos + 2], (1, 1), dev)?;
            out.push(lp.gather(&target, 1)?.squeeze(1)?.to_vec1::<f32>()?[0]);
        }
        Ok(out)
    }

    /// Natural-log probability of `ids[r][j]` given `ids[r][..j]`, for
    /// every row `r` and every `j` in `from[r]..len[r]`: the scores of the
    /// windows in one padded batch.
    pub fn token_logprobs<R: AsRef<[u32]>>(
        &self,
        ids: &[R],
        from: &[usize],
    ) -> Result<Vec<Vec<f32>>, LmError> {
        let ids: Vec<&[u32]> = ids.iter().map(AsRef::as_ref).collect();
        let t = ids.iter().map(|r| r.len()).max().unwrap_or(0);
        if t == 0 {
            return Ok(vec![Vec::new(); ids.len()]);
        }
        let mut flat = Vec::with_capacity(ids.len() * t);
        for row in &ids {
            flat.extend_from_slice(row);
            flat.resize(flat.len() + t - row.len(), 0);
        }
        let dev = self.device();
        let input = Tensor::from_vec(flat, (ids.len(), t), dev)?;
        let hidden = self
            .hidden(&input)?
            .reshape((ids.len() * t, self.config.hidden_size))?;
        // Only the positions that predict a scored token go through the
        // head: with a large vocabulary it costs as much as several layers.
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        for (r, row) in ids.iter().enumerate() {
            let first = from[r].max(1);
            for (j, &tok) in row.iter().enumerate().skip(first) {
                rows.push((r * t + j - 1) as u32);
                targets.push(tok);
            }
        }
        let budget = if dev.is_cpu() {
            LOGIT_BUDGET
        } else {
            16 * LOGIT_BUDGET
        };
        let at_once = (budget / self.config.vocab_size).max(1);
        let mut picked = Vec::with_capacity(rows.len().div_ceil(at_once));
        for (rs, ts) in rows.chunks(at_once).zip(targets.chunks(at_once)) {
            let idx = Tensor::from_slice(rs, rs.len(), dev)?;
            let h = hidden.index_select(&idx, 0)?;
            let logits = self.head.forward(&h)?.to_dtype(DType::F32)?;
            let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let target = Tensor::from_slice(ts, (ts.len(), 1), dev)?;
            picked.push(lp.gather(&target, 1)?.squeeze(1)?);
        }
        let all: Vec<f32> = if picked.is_empty() {
            Vec::new()
        } else {
            Tensor::cat(&picked, 0)?.to_vec1()?
        };
        let mut out = Vec::with_capacity(ids.len());
        let mut at = 0;
        for (r, row) in ids.iter().enumerate() {
            let n = row.len().saturating_sub(from[r].max(1));
            out.push(all[at..at + n].to_vec());
            at += n;
        }
        Ok(out)
    }
}

fn causal_mask(t: usize, dev: &Device) -> Result<Tensor, LmError> {
    let m: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(m, (1, 1, t, t), dev)?)
}

/// Grouped-query attention: each key/value head serves `n` query heads.
fn repeat_kv(x: Tensor, n: usize) -> Result<Tensor, LmError> {
    if n == 1 {
        return Ok(x);
    }
    let (b, kv, t, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .expand((b, kv, n, t, d))?
        .reshape((b, kv * n, t, d))?)
}

/// Shapes of known models, for throughput benchmarks on random weights.
pub fn shape(name: &str) -> Option<LlamaConfig> {
    let base = |vocab, hidden, inter, layers, heads, kv, theta: f64| LlamaConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: inter,
        num_layers: layers,
        num_heads: heads,
        num_kv_heads: kv,
        head_dim: hidden / heads,
        rms_norm_eps: 1e-5,
        rope_theta: theta,
        max_position: 8192,
        rope_interleaved: false,
    };
    match name {
        // BSC-LT/salamandra-2b's config.json.
        "salamandra-2b" => Some(base(256_000, 2048, 5440, 24, 16, 16, 10_000.0)),
        "salamandra-7b" => Some(base(256_000, 4096, 11_008, 32, 32, 8, 10_000.0)),
        // HuggingFaceTB/SmolLM2-135M's config.json.
        "smollm2-135m" => Some(base(49_152, 576, 1536, 30, 9, 3, 100_000.0)),
        _ => None,
    }
}

impl Llama {
    /// A model of `config`'s shape with random weights (N(0, 0.02), norms
    /// at 1), built on `device`: throughput does not depend on the values.
    pub fn random(config: LlamaConfig, dtype: DType, device: &Device) -> Result<Self, LmError> {
        let w = |rows: usize, cols: usize| -> Result<Tensor, LmError> {
            Ok(Tensor::randn(0f32, 0.02, (rows, cols), device)?.to_dtype(dtype)?)
        };
        let ones = |n: usize| -> Result<Tensor, LmError> { Ok(Tensor::ones(n, dtype, device)?) };
        let c = &config;
        let (q, kv) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let mut layers = Vec::with_capacity(c.num_layers);
        for _ in 0..c.num_layers {
            layers.push(Layer {
                attn_norm: ones(c.hidden_size)?,
                q: QMatMul::Tensor(w(q, c.hidden_size)?),
                k: QMatMul::Tensor(w(kv, c.hidden_size)?),
                v: QMatMul::Tensor(w(kv, c.hidden_size)?),
                o: QMatMul::Tensor(w(c.hidden_size, q)?),
                ffn_norm: ones(c.hidden_size)?,
                gate: QMatMul::Tensor(w(c.intermediate_size, c.hidden_size)?),
                up: QMatMul::Tensor(w(c.intermediate_size, c.hidden_size)?),
                down: QMatMul::Tensor(w(c.hidden_size, c.intermediate_size)?),
            });
        }
        let embed = w(c.vocab_size, c.hidden_size)?;
        let head = QMatMul::Tensor(w(c.vocab_size, c.hidden_size)?);
        let norm = ones(c.hidden_size)?;
        Llama::new(config, dtype, embed, layers, norm, head)
    }
}
