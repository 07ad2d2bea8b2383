//! Loading a Llama-architecture model and its tokenizer from local files:
//! a Hugging Face folder (`config.json`, `*.safetensors`, `tokenizer.json`)
//! or one GGUF file with the tokenizer in its metadata.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::llama::{Layer, Llama, LlamaConfig};
use super::{LmError, Precision};

/// A model with the tokenizer it was trained with.
pub struct Loaded {
    pub llama: Llama,
    pub tokenizer: Tokenizer,
    /// Prepended to every document, so the first real token is scored too.
    pub bos: Option<u32>,
    /// Whether `tokenizer.encode(text, true)` adds the BOS itself.
    pub tokenizer_adds_bos: bool,
    /// Where the weights live and how they are stored, for logs and stats.
    pub description: String,
}

pub fn load(path: &Path, precision: Precision, device: &Device) -> Result<Loaded, LmError> {
    if !path.exists() {
        return Err(LmError::at(
            path,
            "no such model (weights are never downloaded: fetch them first, e.g. scripts/fetch-models --lm)",
        ));
    }
    if path.is_dir() {
        load_hf(path, precision, device)
    } else if path.extension().is_some_and(|e| e == "gguf") {
        load_gguf(path, precision, device)
    } else {
        Err(LmError::at(
            path,
            "expected a folder with config.json and *.safetensors, or a .gguf file",
        ))
    }
}

/// The fields of a Hugging Face `config.json` that a Llama forward needs.
#[derive(Debug, Deserialize)]
struct HfConfig {
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    torch_dtype: Option<String>,
    #[serde(default)]
    bos_token_id: Option<serde_json::Value>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_positions() -> usize {
    2048
}

fn load_hf(dir: &Path, precision: Precision, device: &Device) -> Result<Loaded, LmError> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| LmError::io(&cfg_path, e))?;
    let hf: HfConfig =
        serde_json::from_str(&text).map_err(|e| LmError::at(&cfg_path, e.to_string()))?;
    if let Some(t) = hf.model_type.as_deref() {
        if !matches!(t, "llama" | "mistral") {
            return Err(LmError::at(
                &cfg_path,
                format!("model_type `{t}` is not a Llama architecture"),
            ));
        }
    }
    if hf.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(LmError::at(
            &cfg_path,
            "rope_scaling is not supported (plain RoPE only)",
        ));
    }
    let config = LlamaConfig {
        vocab_size: hf.vocab_size,
        hidden_size: hf.hidden_size,
        intermediate_size: hf.intermediate_size,
        num_layers: hf.num_hidden_layers,
        num_heads: hf.num_attention_heads,
        num_kv_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
        head_dim: hf
            .head_dim
            .unwrap_or(hf.hidden_size / hf.num_attention_heads.max(1)),
        rms_norm_eps: hf.rms_norm_eps,
        rope_theta: hf.rope_theta,
        max_position: hf.max_position_embeddings,
        rope_interleaved: false,
    };
    config
        .check()
        .map_err(|e| LmError::at(&cfg_path, e.to_string()))?;
    let stored = match hf.torch_dtype.as_deref() {
        Some("bfloat16") => DType::BF16,
        Some("float16") => DType::F16,
        _ => DType::F32,
    };
    let dtype = precision.dtype(stored, device);

    let files = safetensors_files(dir)?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for f in &files {
        let part =
            candle_core::safetensors::load(f, device).map_err(|e| LmError::at(f, e.to_string()))?;
        tensors.extend(part);
    }
    let mut take = |name: &str| -> Result<Tensor, LmError> {
        let t = tensors.remove(name).ok_or_else(|| {
            LmError::at(
                dir,
                format!("tensor `{name}` is in none of the safetensors files"),
            )
        })?;
        Ok(t.to_dtype(dtype)?)
    };
    let embed = take("model.embed_tokens.weight")?;
    let mut layers = Vec::with_capacity(config.num_layers);
    for i in 0..config.num_layers {
        let p = format!("model.layers.{i}");
        let mut lin = |n: &str| -> Result<QMatMul, LmError> {
            Ok(QMatMul::Tensor(take(&format!("{p}.{n}.weight"))?))
        };
        layers.push(Layer {
            q: lin("self_attn.q_proj")?,
            k: lin("self_attn.k_proj")?,
            v: lin("self_attn.v_proj")?,
            o: lin("self_attn.o_proj")?,
            gate: lin("mlp.gate_proj")?,
            up: lin("mlp.up_proj")?,
            down: lin("mlp.down_proj")?,
            attn_norm: take(&format!("{p}.input_layernorm.weight"))?,
            ffn_norm: take(&format!("{p}.post_attention_layernorm.weight"))?,
        });
    }
    let norm = take("model.norm.weight")?;
    let head = if hf.tie_word_embeddings {
        QMatMul::Tensor(embed.clone())
    } else {
        QMatMul::Tensor(take("lm_head.weight")?)
    };
    check_shape(
        &embed,
        &[config.vocab_size, config.hidden_size],
        dir,
        "embeddings",
    )?;
    let llama = Llama::new(config, dtype, embed, layers, norm, head)?;

    let tok_path = dir.join("tokenizer.json");
    let tokenizer =
        Tokenizer::from_file(&tok_path).map_err(|e| LmError::at(&tok_path, e.to_string()))?;
    let bos = hf
        .bos_token_id
        .as_ref()
        .and_then(|v| v.as_u64())
        .map(|v| v as u32);
    // A Llama tokenizer adds <s> itself; see whether this one does.
    let adds = tokenizer
        .encode("a", true)
        .map(|e| bos.is_some_and(|b| e.get_ids().first() == Some(&b)))
        .unwrap_or(false);
    Ok(Loaded {
        description: format!(
            "{} ({} file(s), {:?})",
            dir.display(),
            files.len(),
            llama.dtype
        ),
        llama,
        tokenizer,
        bos: if adds { None } else { bos },
        tokenizer_adds_bos: adds,
    })
}

/// `model.safetensors`, or the files an index names, or every
/// `*.safetensors` in the folder.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, LmError> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        #[derive(Deserialize)]
        struct Index {
            weight_map: HashMap<String, String>,
        }
        let text = std::fs::read_to_string(&index).map_err(|e| LmError::io(&index, e))?;
        let idx: Index =
            serde_json::from_str(&text).map_err(|e| LmError::at(&index, e.to_string()))?;
        let names: BTreeSet<String> = idx.weight_map.into_values().collect();
        return Ok(names.into_iter().map(|n| dir.join(n)).collect());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| LmError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(LmError::at(dir, "no *.safetensors files"));
    }
    Ok(files)
}

fn check_shape(t: &Tensor, want: &[usize], at: &Path, what: &str) -> Result<(), LmError> {
    if t.dims() != want {
        return Err(LmError::at(
            at,
            format!("{what} have shape {:?}, the config says {want:?}", t.dims()),
        ));
    }
    Ok(())
}

struct Gguf {
    path: PathBuf,
    content: gguf_file::Content,
    file: BufReader<File>,
}

impl Gguf {
    fn md(&self, key: &str) -> Result<&gguf_file::Value, LmError> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| LmError::at(&self.path, format!("no `{key}` in the GGUF metadata")))
    }

    fn usize(&self, key: &str) -> Result<usize, LmError> {
        let v = self.md(key)?;
        v.to_u64()
            .or_else(|_| v.to_u32().map(u64::from))
            .map(|x| x as usize)
            .map_err(|e| LmError::at(&self.path, format!("`{key}`: {e}")))
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64, LmError> {
        match self.content.metadata.get(key) {
            None => Ok(default),
            Some(v) => v
                .to_f32()
                .map(f64::from)
                .or_else(|_| v.to_f64())
                .map_err(|e| LmError::at(&self.path, format!("`{key}`: {e}"))),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, LmError> {
        let bad = |e: String| LmError::at(&self.path, format!("`{key}`: {e}"));
        self.md(key)?
            .to_vec()
            .map_err(|e| bad(e.to_string()))?
            .iter()
            .map(|v| v.to_string().cloned().map_err(|e| bad(e.to_string())))
            .collect()
    }

    fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor, LmError> {
        self.content
            .tensor(&mut self.file, name, device)
            .map_err(|e| LmError::at(&self.path, format!("tensor `{name}`: {e}")))
    }
}

fn load_gguf(path: &Path, precision: Precision, device: &Device) -> Result<Loaded, LmError> {
    let file = File::open(path).map_err(|e| LmError::io(path, e))?;
    let mut file = BufReader::new(file);
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| LmError::at(path, format!("not a readable GGUF file: {e}")))?;
    let mut g = Gguf {
        path: path.to_path_buf(),
        content,
        file,
    };
    let arch = g
        .md("general.architecture")?
        .to_string()
        .map_err(|e| LmError::at(path, e.to_string()))?
        .clone();
    if arch != "llama" {
        return Err(LmError::at(
            path,
            format!("architecture `{arch}` is not llama"),
        ));
    }
    let hidden = g.usize("llama.embedding_length")?;
    let heads = g.usize("llama.attention.head_count")?;
    let kv_heads = g.usize("llama.attention.head_count_kv").unwrap_or(heads);
    let embd = g.tensor("token_embd.weight", device)?;
    let (vocab, _) = embd
        .shape()
        .dims2()
        .map_err(|e| LmError::at(path, e.to_string()))?;
    let ff = g.tensor("blk.0.ffn_up.weight", device)?;
    let intermediate = ff.shape().dims()[0];
    let config = LlamaConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: intermediate,
        num_layers: g.usize("llama.block_count")?,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim: g
            .usize("llama.rope.dimension_count")
            .unwrap_or(hidden / heads.max(1)),
        rms_norm_eps: g.f64_or("llama.attention.layer_norm_rms_epsilon", 1e-5)?,
        rope_theta: g.f64_or("llama.rope.freq_base", 10_000.0)?,
        max_position: g.usize("llama.context_length").unwrap_or(2048),
        rope_interleaved: true,
    };
    config
        .check()
        .map_err(|e| LmError::at(path, e.to_string()))?;
    // Quantized blocks stay quantized where that is the faster path.
    let dtype = precision.dtype(DType::F32, device);
    let keep_quantized =
        precision == Precision::Quantized || (precision == Precision::Auto && !device.is_cpu());
    let lin = |q: QTensor| -> Result<QMatMul, LmError> {
        if keep_quantized {
            Ok(QMatMul::from_qtensor(q)?)
        } else {
            Ok(QMatMul::Tensor(q.dequantize(device)?.to_dtype(dtype)?))
        }
    };
    let dense =
        |q: QTensor| -> Result<Tensor, LmError> { Ok(q.dequantize(device)?.to_dtype(dtype)?) };
    let has_output = g.content.tensor_infos.contains_key("output.weight");
    let head = if has_output {
        let t = g.tensor("output.weight", device)?;
        lin(t)?
    } else {
        lin(g.tensor("token_embd.weight", device)?)?
    };
    let embed = dense(embd)?;
    let mut layers = Vec::with_capacity(config.num_layers);
    for i in 0..config.num_layers {
        let p = format!("blk.{i}");
        let mut t = |n: &str| g.tensor(&format!("{p}.{n}.weight"), device);
        layers.push(Layer {
            attn_norm: dense(t("attn_norm")?)?,
            q: lin(t("attn_q")?)?,
            k: lin(t("attn_k")?)?,
            v: lin(t("attn_v")?)?,
            o: lin(t("attn_output")?)?,
            ffn_norm: dense(t("ffn_norm")?)?,
            gate: lin(t("ffn_gate")?)?,
            up: lin(t("ffn_up")?)?,
            down: lin(t("ffn_down")?)?,
        });
    }
    let norm = dense(g.tensor("output_norm.weight", device)?)?;
    let quant = g
        .content
        .tensor_infos
        .get("blk.0.attn_q.weight")
        .map(|t| format!("{:?}", t.ggml_dtype))
        .unwrap_or_default();
    let llama = Llama::new(config, dtype, embed, layers, norm, head)?;
    let tokenizer = gguf_tokenizer(&g)?;
    let add_bos = g
        .content
        .metadata
        .get("tokenizer.ggml.add_bos_token")
        .and_then(|v| v.to_bool().ok())
        .unwrap_or(false);
    let bos = if add_bos {
        Some(g.usize("tokenizer.ggml.bos_token_id")? as u32)
    } else {
        None
    };
    Ok(Loaded {
        description: format!(
            "{} ({}, {})",
            path.display(),
            quant,
            if keep_quantized {
                "quantized matmul".to_string()
            } else {
                format!("dequantized to {dtype:?}")
            }
        ),
        llama,
        tokenizer,
        bos,
        tokenizer_adds_bos: false,
    })
}

/// The BPE tokenizer a GGUF file describes, with the pre-tokenizer
/// llama.cpp uses for its `tokenizer.ggml.pre` (which never adds a
/// leading space, unlike the GPT-2 default).
fn gguf_tokenizer(g: &Gguf) -> Result<Tokenizer, LmError> {
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::digits::Digits;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

    let bad = |m: String| LmError::at(&g.path, m);
    let model = g
        .md("tokenizer.ggml.model")?
        .to_string()
        .map_err(|e| bad(e.to_string()))?
        .clone();
    if model != "gpt2" {
        return Err(bad(format!(
            "tokenizer model `{model}` in the GGUF metadata is not supported (only gpt2-style BPE); use the Hugging Face folder with its tokenizer.json"
        )));
    }
    let tokens = g.strings("tokenizer.ggml.tokens")?;
    let merges: Vec<(String, String)> = g
        .strings("tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| bad(format!("merge `{m}` has no space")))
        })
        .collect::<Result<_, _>>()?;
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut tok = Tokenizer::new(bpe);
    let pre = g
        .content
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_else(|| "gpt2".into());
    let byte_level = ByteLevel::new(false, true, true);
    const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    let pt: PreTokenizerWrapper = match pre.as_str() {
        "gpt2" | "default" => byte_level.into(),
        // SmolLM2's tokenizer.json: each digit apart, then GPT-2's regex.
        "smollm" | "starcoder" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
        "llama3" | "llama-bpe" | "smaug-bpe" => {
            let split = Split::new(SplitPattern::Regex(LLAMA3.into()), SplitDelimiterBehavior::Isolated, false)
                .map_err(|e| bad(e.to_string()))?;
            Sequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()]).into()
        }
        other => {
            return Err(bad(format!(
                "pre-tokenizer `{other}` in the GGUF metadata is not known; use the Hugging Face folder with its tokenizer.json"
            )))
        }
    };
    tok.with_pre_tokenizer(Some(pt));
    tok.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
    Ok(tok)
}
