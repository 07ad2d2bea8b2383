//! The forward pass against a straightforward reference: a tiny Llama with
//! random weights is written as a Hugging Face folder (config.json,
//! model.safetensors, tokenizer.json), loaded through the real loader, and
//! its log-probs compared with plain f64 loops over the same weights.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::*;

/// A deterministic xorshift stream of weights in [-scale, scale].
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

const VOCAB: usize = 256;
const H: usize = 32;
const FF: usize = 48;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV: usize = 2;
const HD: usize = H / HEADS;
const EPS: f64 = 1e-5;
const THETA: f64 = 10_000.0;

type Weights = HashMap<String, (Vec<f32>, Vec<usize>)>;

pub(crate) fn tiny_weights(seed: u64, tied: bool) -> Weights {
    let mut r = Rng(seed);
    let mut w = Weights::new();
    let put = |w: &mut Weights, name: String, shape: Vec<usize>, scale: f32, r: &mut Rng| {
        let n = shape.iter().product();
        w.insert(name, (r.vec(n, scale), shape));
    };
    put(
        &mut w,
        "model.embed_tokens.weight".into(),
        vec![VOCAB, H],
        1.0,
        &mut r,
    );
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        put(
            &mut w,
            format!("{p}.self_attn.q_proj.weight"),
            vec![HEADS * HD, H],
            0.3,
            &mut r,
        );
        put(
            &mut w,
            format!("{p}.self_attn.k_proj.weight"),
            vec![KV * HD, H],
            0.3,
            &mut r,
        );
        put(
            &mut w,
            format!("{p}.self_attn.v_proj.weight"),
            vec![KV * HD, H],
            0.3,
            &mut r,
        );
        put(
            &mut w,
            format!("{p}.self_attn.o_proj.weight"),
            vec![H, HEADS * HD],
            0.3,
            &mut r,
        );
        put(
            &mut w,
            format!("{p}.mlp.gate_proj.weight"),
            vec![FF, H],
            0.3,
            &mut r,
        );
        put(
            &mut w,
            format!("{p}.mlp.up_proj.weight"),
            vec![FF, H],
            0.3,
            &mut r,
        );
        put(
            &mut w,
            format!("{p}.mlp.down_proj.weight"),
            vec![H, FF],
            0.3,
            &mut r,
        );
        // Norm weights near 1, as trained models have them.
        let n1: Vec<f32> = r.vec(H, 0.2).into_iter().map(|x| 1.0 + x).collect();
        let n2: Vec<f32> = r.vec(H, 0.2).into_iter().map(|x| 1.0 + x).collect();
        w.insert(format!("{p}.input_layernorm.weight"), (n1, vec![H]));
        w.insert(
            format!("{p}.post_attention_layernorm.weight"),
            (n2, vec![H]),
        );
    }
    let n: Vec<f32> = r.vec(H, 0.2).into_iter().map(|x| 1.0 + x).collect();
    w.insert("model.norm.weight".into(), (n, vec![H]));
    if !tied {
        let head = r.vec(VOCAB * H, 0.5);
        w.insert("lm_head.weight".into(), (head, vec![VOCAB, H]));
    }
    w
}

pub(crate) fn write_folder(dir: &Path, w: &Weights, tied: bool) {
    let tensors: HashMap<String, Tensor> = w
        .iter()
        .map(|(k, (v, s))| {
            (
                k.clone(),
                Tensor::from_vec(v.clone(), s.as_slice(), &Device::Cpu).unwrap(),
            )
        })
        .collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": VOCAB,
        "hidden_size": H,
        "intermediate_size": FF,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV,
        "rms_norm_eps": EPS,
        "rope_theta": THETA,
        "max_position_embeddings": 64,
        "tie_word_embeddings": tied,
        "torch_dtype": "float32",
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    // Byte-level BPE with no merges: one token per byte, ids 0..256.
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort();
    let vocab: tokenizers::models::bpe::Vocab = alphabet
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), i as u32))
        .collect();
    let bpe = tokenizers::models::bpe::BPE::builder()
        .vocab_and_merges(vocab, vec![])
        .build()
        .unwrap();
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.save(dir.join("tokenizer.json"), false).unwrap();
}

/// The model in plain f64 loops: log p(ids[j] | ids[..j]) for j >= 1.
fn reference(w: &Weights, tied: bool, ids: &[u32]) -> Vec<f64> {
    let g = |n: &str| -> Vec<f64> { w[n].0.iter().map(|&x| x as f64).collect() };
    let matvec = |m: &[f64], x: &[f64], rows: usize| -> Vec<f64> {
        let cols = x.len();
        (0..rows)
            .map(|r| (0..cols).map(|c| m[r * cols + c] * x[c]).sum())
            .collect()
    };
    let rms = |x: &[f64], wt: &[f64]| -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        let s = 1.0 / (ms + EPS).sqrt();
        x.iter().zip(wt).map(|(v, w)| v * s * w).collect()
    };
    let rope = |v: &mut [f64], pos: usize| {
        for i in 0..HD / 2 {
            let ang = pos as f64 * THETA.powf(-2.0 * i as f64 / HD as f64);
            let (a, b) = (v[i], v[i + HD / 2]);
            v[i] = a * ang.cos() - b * ang.sin();
            v[i + HD / 2] = b * ang.cos() + a * ang.sin();
        }
    };
    let emb = g("model.embed_tokens.weight");
    let t = ids.len();
    let mut x: Vec<Vec<f64>> = ids
        .iter()
        .map(|&i| emb[i as usize * H..(i as usize + 1) * H].to_vec())
        .collect();
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        let wq = g(&format!("{p}.self_attn.q_proj.weight"));
        let wk = g(&format!("{p}.self_attn.k_proj.weight"));
        let wv = g(&format!("{p}.self_attn.v_proj.weight"));
        let wo = g(&format!("{p}.self_attn.o_proj.weight"));
        let n1 = g(&format!("{p}.input_layernorm.weight"));
        let n2 = g(&format!("{p}.post_attention_layernorm.weight"));
        let (wg, wu, wd) = (
            g(&format!("{p}.mlp.gate_proj.weight")),
            g(&format!("{p}.mlp.up_proj.weight")),
            g(&format!("{p}.mlp.down_proj.weight")),
        );
        let hs: Vec<Vec<f64>> = x.iter().map(|v| rms(v, &n1)).collect();
        let mut q: Vec<Vec<f64>> = hs.iter().map(|h| matvec(&wq, h, HEADS * HD)).collect();
        let mut k: Vec<Vec<f64>> = hs.iter().map(|h| matvec(&wk, h, KV * HD)).collect();
        let v: Vec<Vec<f64>> = hs.iter().map(|h| matvec(&wv, h, KV * HD)).collect();
        for pos in 0..t {
            for hh in 0..HEADS {
                rope(&mut q[pos][hh * HD..(hh + 1) * HD], pos);
            }
            for hh in 0..KV {
                rope(&mut k[pos][hh * HD..(hh + 1) * HD], pos);
            }
        }
        for pos in 0..t {
            let mut y = vec![0.0; HEADS * HD];
            for hh in 0..HEADS {
                let kh = hh / (HEADS / KV);
                let qv = &q[pos][hh * HD..(hh + 1) * HD];
                let s: Vec<f64> = (0..=pos)
                    .map(|j| {
                        let kv = &k[j][kh * HD..(kh + 1) * HD];
                        qv.iter().zip(kv).map(|(a, b)| a * b).sum::<f64>() / (HD as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, ej) in e.iter().enumerate() {
                    for d in 0..HD {
                        y[hh * HD + d] += ej / z * v[j][kh * HD + d];
                    }
                }
            }
            let o = matvec(&wo, &y, H);
            for d in 0..H {
                x[pos][d] += o[d];
            }
            let h2 = rms(&x[pos], &n2);
            let gt = matvec(&wg, &h2, FF);
            let up = matvec(&wu, &h2, FF);
            let a: Vec<f64> = gt
                .iter()
                .zip(&up)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let dn = matvec(&wd, &a, H);
            for d in 0..H {
                x[pos][d] += dn[d];
            }
        }
    }
    let nf = g("model.norm.weight");
    let head = if tied {
        g("model.embed_tokens.weight")
    } else {
        g("lm_head.weight")
    };
    (1..t)
        .map(|j| {
            let logits = matvec(&head, &rms(&x[j - 1], &nf), VOCAB);
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
            logits[ids[j] as usize] - lse
        })
        .collect()
}

fn rel_close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn forward_matches_reference_on_a_tiny_checkpoint() {
    for tied in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let w = tiny_weights(0x5eed + tied as u64, tied);
        write_folder(dir.path(), &w, tied);
        let m = Model::load(dir.path(), Precision::Auto, LmDevice::Cpu).unwrap();
        assert_eq!(m.config().num_kv_heads, KV);
        let texts = ["Hello, world! A tiny Llama.", "ab", "Zß€ — 12 34"];
        for t in texts {
            let (ids, _) = m.tokenize(t, 0).unwrap();
            assert_eq!(ids.len(), t.len(), "one token per byte");
            let want = reference(&w, tied, &ids);
            // One window, one batch.
            let got = m
                .llama()
                .token_logprobs(std::slice::from_ref(&ids), &[1])
                .unwrap();
            assert_eq!(got[0].len(), want.len());
            for (g, w) in got[0].iter().zip(&want) {
                assert!(rel_close(*g as f64, *w, 1e-3), "{t:?}: {g} vs {w}");
            }
            // Generation-style, a token at a time with a key/value cache.
            let step = m.llama().token_logprobs_one_by_one(&ids).unwrap();
            assert_eq!(step.len(), want.len());
            for (g, w) in step.iter().zip(&want) {
                assert!(rel_close(*g as f64, *w, 1e-3), "{t:?}: {g} vs {w}");
            }
        }
        // Batched with padding, in any order, the same numbers as one by one.
        let opts = ScoreOptions {
            batch_size: 3,
            ..Default::default()
        };
        let together = m.score(&texts, &opts).unwrap();
        for (t, s) in texts.iter().zip(&together) {
            let (ids, _) = m.tokenize(t, 0).unwrap();
            let want: f64 = reference(&w, tied, &ids).iter().sum();
            assert_eq!(s.tokens as usize, ids.len() - 1);
            assert!(
                rel_close(s.logprob, want, 1e-3),
                "{t}: {} vs {want}",
                s.logprob
            );
        }
    }
}

#[test]
fn sliding_windows_score_long_documents() {
    let dir = tempfile::tempdir().unwrap();
    let w = tiny_weights(7, false);
    write_folder(dir.path(), &w, false);
    let m = Model::load(dir.path(), Precision::Auto, LmDevice::Cpu).unwrap();
    let text = "The windows slide over a text longer than the context of the model. ".repeat(2);
    let (ids, _) = m.tokenize(&text, 0).unwrap();
    assert!(ids.len() > 100);
    let opts = ScoreOptions {
        context: 32,
        stride: 16,
        batch_size: 4,
        max_tokens: 0,
    };
    let s = m.score(&[&text], &opts).unwrap()[0];
    assert_eq!(s.tokens as usize, ids.len() - 1);
    // Every token is scored with the window's own context: the reference on
    // the window that scores it.
    let mut want = 0.0;
    let mut end = 32;
    want += reference(&w, false, &ids[..end]).iter().sum::<f64>();
    while end < ids.len() {
        let next = (end + 16).min(ids.len());
        let start = next - 32;
        let lp = reference(&w, false, &ids[start..next]);
        want += lp[end - start - 1..].iter().sum::<f64>();
        end = next;
    }
    assert!(rel_close(s.logprob, want, 1e-3), "{} vs {want}", s.logprob);
    // max_tokens cuts the document.
    let cut = m
        .score(
            &[&text],
            &ScoreOptions {
                max_tokens: 20,
                ..opts
            },
        )
        .unwrap()[0];
    assert_eq!(cut.tokens, 19);
    assert_eq!(cut.bytes, 20);
}

#[test]
fn loader_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = Model::load(&dir.path().join("nope"), Precision::Auto, LmDevice::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("nope") && err.contains("no such model"),
        "{err}"
    );
    std::fs::write(dir.path().join("config.json"), "{\"model_type\": \"gpt2\"}").unwrap();
    let err = Model::load(dir.path(), Precision::Auto, LmDevice::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("config.json"), "{err}");
    let bad = dir.path().join("m.gguf");
    std::fs::write(&bad, b"GGUF but not really").unwrap();
    let err = Model::load(&bad, Precision::Auto, LmDevice::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("m.gguf") && err.contains("GGUF"), "{err}");
    let w = tiny_weights(1, false);
    let mut missing = w.clone();
    missing.remove("model.layers.1.mlp.up_proj.weight");
    write_folder(dir.path(), &missing, false);
    let err = Model::load(dir.path(), Precision::Auto, LmDevice::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("model.layers.1.mlp.up_proj.weight"), "{err}");
}

#[test]
fn sharded_checkpoints_with_an_index_and_bf16_load() {
    let w = tiny_weights(11, false);
    let one = tempfile::tempdir().unwrap();
    write_folder(one.path(), &w, false);
    // The same weights in two files named by model.safetensors.index.json.
    let two = tempfile::tempdir().unwrap();
    write_folder(two.path(), &w, false);
    std::fs::remove_file(two.path().join("model.safetensors")).unwrap();
    let mut names: Vec<&String> = w.keys().collect();
    names.sort();
    let mut map = serde_json::Map::new();
    for (part, chunk) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", part + 1);
        let tensors: HashMap<String, Tensor> = chunk
            .iter()
            .map(|k| {
                let (v, s) = &w[*k];
                let t = Tensor::from_vec(v.clone(), s.as_slice(), &Device::Cpu).unwrap();
                ((*k).clone(), t)
            })
            .collect();
        candle_core::safetensors::save(&tensors, two.path().join(&file)).unwrap();
        for k in chunk {
            map.insert((*k).clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        two.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let text = ["Sharded weights give the same numbers."];
    let a = Model::load(one.path(), Precision::Auto, LmDevice::Cpu).unwrap();
    let b = Model::load(two.path(), Precision::Auto, LmDevice::Cpu).unwrap();
    let opts = ScoreOptions::default();
    let (sa, sb) = (
        a.score(&text, &opts).unwrap(),
        b.score(&text, &opts).unwrap(),
    );
    assert_eq!(sa, sb);
    assert!(b.describe().contains("2 file(s)"), "{}", b.describe());
    // bf16 weights and activations: close to f32, not equal.
    let h = Model::load(one.path(), Precision::Bf16, LmDevice::Cpu).unwrap();
    assert_eq!(h.dtype(), candle_core::DType::BF16);
    let sh = h.score(&text, &opts).unwrap();
    assert!(
        rel_close(sh[0].logprob, sa[0].logprob, 0.05),
        "{sh:?} {sa:?}"
    );
    assert_ne!(sh[0].logprob, sa[0].logprob);
}
