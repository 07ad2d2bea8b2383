//! `tokenize`: token ids of every document with a Hugging Face tokenizer.
//!
//! Loads any `tokenizer.json` from a local path (the `tokenizers` crate,
//! built without its network features), appends the end-of-document token
//! the manifest names, and adds two columns: `tokens`, the count, and
//! `token_ids`, the ids the Megatron shard writer stores. It drops nothing.

use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, UInt32Builder};
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::{BuildContext, Mode, Stage, StageError, StageOutput, StageSpec};
use crate::batch::Core;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeConfig {
    /// A `tokenizer.json`, relative to the manifest's folder.
    pub tokenizer: String,
    /// Token appended to every document (e.g. `</s>`); it must be in the vocabulary.
    pub eod: Option<String>,
    /// Let the tokenizer's post-processor add its own special tokens (BOS...).
    #[serde(default)]
    pub add_special_tokens: bool,
    /// Which encoder: forja's exact byte-level BPE when it reproduces the
    /// tokenizer (`auto`), or always Hugging Face `tokenizers`.
    #[serde(default)]
    pub encoder: Encoder,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoder {
    #[default]
    Auto,
    Tokenizers,
}

impl TokenizeConfig {
    pub fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        let mut p = Vec::new();
        if self.tokenizer.is_empty() {
            p.push((Some("tokenizer"), "the path of a tokenizer.json".into()));
        }
        p
    }
}

pub struct Tokenize {
    config: TokenizeConfig,
    tokenizer: Tokenizer,
    path: PathBuf,
    eod: Option<u32>,
    vocab: usize,
    fast: Option<crate::tokenizer::ByteLevelBpe>,
}

/// Metadata keys of the `token_ids` field.
pub use crate::shards::VOCAB_SIZE;
/// The tokenizer's name, in the `token_ids` field's metadata.
pub const TOKENIZER: &str = "forja.tokenizer";

/// The item field of the `token_ids` lists.
fn id_item() -> Field {
    Field::new_list_field(DataType::UInt32, false)
}

/// The `token_ids` column's type.
pub fn ids_type() -> DataType {
    DataType::List(Arc::new(id_item()))
}

impl Tokenize {
    pub fn new(config: TokenizeConfig, ctx: &BuildContext) -> Result<Self, StageError> {
        let fail = |message: String| StageError::Failed {
            stage: <TokenizeConfig as StageSpec>::TYPE.into(),
            message,
        };
        let path: PathBuf = crate::files::resolve(&ctx.base, &config.tokenizer);
        if !path.is_file() {
            return Err(fail(format!("{}: no such tokenizer file", path.display())));
        }
        // Read once: both `tokenizers` and the fast encoder parse this text.
        let json =
            std::fs::read_to_string(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        let tokenizer: Tokenizer = json
            .parse()
            .map_err(|e| fail(format!("{}: not a tokenizer.json: {e}", path.display())))?;
        let eod = match &config.eod {
            None => None,
            Some(t) => Some(tokenizer.token_to_id(t).ok_or_else(|| {
                fail(format!(
                    "eod token `{t}` is not in the vocabulary of {}",
                    path.display()
                ))
            })?),
        };
        let vocab = tokenizer.get_vocab_size(true);
        let fast = match config.encoder {
            Encoder::Tokenizers => None,
            // A post-processor only acts when asked to add special tokens.
            Encoder::Auto
                if config.add_special_tokens && tokenizer.get_post_processor().is_some() =>
            {
                tracing::info!(
                    "tokenize: the post-processor adds tokens; encoding with tokenizers"
                );
                None
            }
            Encoder::Auto => match crate::tokenizer::ByteLevelBpe::from_json(&json) {
                Ok(f) => Some(f),
                Err(why) => {
                    tracing::info!(
                            "tokenize: {} is not plain byte-level BPE ({why}); encoding with tokenizers",
                            path.display()
                        );
                    None
                }
            },
        };
        Ok(Tokenize {
            config,
            tokenizer,
            path,
            eod,
            vocab,
            fast,
        })
    }

    /// Replaces `ids` with those of `text`, end-of-document token included
    /// (one buffer serves a whole batch).
    fn encode(&self, text: &str, ids: &mut Vec<u32>) -> Result<(), StageError> {
        ids.clear();
        if let Some(f) = &self.fast {
            f.encode(text, ids);
        } else {
            let enc = self
                .tokenizer
                .encode_fast(text, self.config.add_special_tokens)
                .map_err(|e| StageError::Failed {
                    stage: <TokenizeConfig as StageSpec>::TYPE.into(),
                    message: e.to_string(),
                })?;
            ids.extend_from_slice(enc.get_ids());
        }
        ids.extend(self.eod);
        Ok(())
    }
}

impl Stage for Tokenize {
    fn name(&self) -> &'static str {
        <TokenizeConfig as StageSpec>::TYPE
    }

    fn mode(&self) -> Mode {
        Mode::Annotate
    }

    fn fields(&self) -> Vec<Field> {
        vec![
            Field::new("tokens", DataType::UInt32, false),
            // The shard writer takes its dtype from the vocabulary size; the
            // tokenizer's path says, in Parquet output, what made the ids.
            Field::new("token_ids", ids_type(), false).with_metadata(
                [
                    (VOCAB_SIZE.to_string(), self.vocab.to_string()),
                    (TOKENIZER.to_string(), self.path.display().to_string()),
                ]
                .into_iter()
                .collect::<std::collections::HashMap<String, String>>(),
            ),
        ]
    }

    fn process(&self, batch: &RecordBatch) -> Result<StageOutput, StageError> {
        let core = Core::of(batch);
        let mut counts = UInt32Builder::with_capacity(batch.num_rows());
        let mut lists = ListBuilder::new(UInt32Builder::new()).with_field(id_item());
        let mut ids = Vec::new();
        for t in core.text.iter() {
            self.encode(t.unwrap_or_default(), &mut ids)?;
            counts.append_value(ids.len() as u32);
            lists.values().append_slice(&ids);
            lists.append(true);
        }
        Ok(StageOutput {
            columns: vec![Arc::new(counts.finish()), Arc::new(lists.finish())],
            ..Default::default()
        })
    }
}

impl StageSpec for TokenizeConfig {
    const TYPE: &'static str = "tokenize";

    fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        TokenizeConfig::problems(self)
    }

    fn adds(&self) -> Vec<&'static str> {
        vec!["tokens", "token_ids"]
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Stage>, StageError> {
        Ok(Box::new(Tokenize::new(self.clone(), ctx)?))
    }

    fn example() -> Self {
        TokenizeConfig {
            tokenizer: "tok/tokenizer.json".into(),
            eod: Some("</s>".into()),
            add_special_tokens: true,
            encoder: Encoder::Tokenizers,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::UInt32Type;
    use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper};
    use tokenizers::{PreTokenizerWrapper, TokenizerBuilder};

    /// Trains a small byte-level BPE (with `</s>`) on `texts` and saves it.
    pub(crate) fn train_tokenizer(texts: &[String], vocab: usize, path: &std::path::Path) {
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab)
            .show_progress(false)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .special_tokens(vec![AddedToken::from("</s>", true)])
            .build();
        let mut tok = TokenizerBuilder::<
            BPE,
            NormalizerWrapper,
            PreTokenizerWrapper,
            PostProcessorWrapper,
            DecoderWrapper,
        >::new()
        .with_model(BPE::default())
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true).into()))
        .with_decoder(Some(ByteLevel::default().into()))
        .build()
        .unwrap();
        tok.train(&mut trainer, texts.iter()).unwrap();
        tok.save(path, false).unwrap();
    }

    #[test]
    fn tokens_decode_back_to_the_text_and_end_with_eod() {
        let dir = tempfile::tempdir().unwrap();
        let texts: Vec<String> = crate::dedup::lsh::tests::real_documents();
        train_tokenizer(&texts, 500, &dir.path().join("tok.json"));
        let ctx = BuildContext {
            base: dir.path().to_path_buf(),
        };
        let stage = Tokenize::new(
            TokenizeConfig {
                tokenizer: "tok.json".into(),
                eod: Some("</s>".into()),
                add_special_tokens: false,
                encoder: Encoder::Auto,
            },
            &ctx,
        )
        .unwrap();
        assert!(
            stage.fast.is_some(),
            "a byte-level BPE takes the fast encoder"
        );
        let eod = stage.tokenizer.token_to_id("</s>").unwrap();
        let mut b = crate::batch::CoreBuilder::with_capacity(20, 1000);
        for (i, t) in texts[..20].iter().enumerate() {
            b.push("s", "f", i as u64 + 1, t, None, None);
        }
        let batch = b.finish();
        let out = stage.process(&batch).unwrap();
        let counts = out.columns[0].as_primitive::<UInt32Type>();
        let lists = out.columns[1].as_list::<i32>();
        for (i, t) in texts[..20].iter().enumerate() {
            let ids: Vec<u32> = lists
                .value(i)
                .as_primitive::<UInt32Type>()
                .values()
                .to_vec();
            assert_eq!(ids.len() as u32, counts.value(i));
            assert_eq!(*ids.last().unwrap(), eod);
            let back = stage
                .tokenizer
                .decode(&ids[..ids.len() - 1], false)
                .unwrap();
            assert_eq!(&back, t);
            // BPE merged bytes: fewer tokens than bytes.
            assert!(
                ids.len() < t.len(),
                "{} tokens for {} bytes",
                ids.len(),
                t.len()
            );
        }
    }

    /// Texts that stress the pre-tokenizer: space runs before words and
    /// symbols, other whitespace, contractions, scripts, digits, emoji, the
    /// special token inside text, and long symbol runs.
    fn hard_texts() -> Vec<String> {
        let mut v: Vec<String> = [
            "", " ", "  ", "a", " a", "  a", "   a  b\t\tc\n\nd \n e\r\n", "x   ", "\n\n\n",
            "it's we'll I'd they're you've I'm don't 'S 'LL", "1234567 12.5%  3,000,000",
            "日本語のテキスト、中文文本。한국어", "emoji 🧪🔥👨‍👩‍👧 x", "e\u{301}\u{300} ṩ",
            "\u{a0}nbsp\u{2003}em\u{3000}ideo", "a</s>b </s> </s></s>", "<s><pad></s",
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
            "\u{0}\u{1}\u{7f} ctrl", "  \u{2028}  x\u{85}y",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Random mixes of the characters above.
        let alphabet: Vec<char> = "a bZ 9\n\t'sé日🧪!,.-\u{a0}\u{301}</>".chars().collect();
        let mut x = 0x2545f4914f6cdd1du64;
        for _ in 0..3000 {
            let mut s = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            v.push(s);
        }
        v
    }

    #[test]
    fn the_fast_encoder_gives_the_ids_tokenizers_gives() {
        let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data/demo/tokenizer/tokenizer.json");
        let dir = tempfile::tempdir().unwrap();
        let mut texts: Vec<String> = crate::dedup::lsh::tests::real_documents();
        let small = dir.path().join("small.json");
        train_tokenizer(&texts, 400, &small);
        texts.extend(hard_texts());
        for path in [demo, small] {
            let hf = Tokenizer::from_file(&path).unwrap();
            let fast =
                crate::tokenizer::ByteLevelBpe::from_json(&std::fs::read_to_string(&path).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut ids = Vec::new();
            for t in &texts {
                ids.clear();
                fast.encode(t, &mut ids);
                let want = hf.encode_fast(t.as_str(), false).unwrap();
                assert!(
                    ids == want.get_ids(),
                    "{}: other ids for {:?}...",
                    path.display(),
                    t.chars().take(60).collect::<String>()
                );
            }
        }
    }

    #[test]
    fn unknown_eod_and_missing_file_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = BuildContext {
            base: dir.path().to_path_buf(),
        };
        let cfg = |eod: &str| TokenizeConfig {
            tokenizer: "tok.json".into(),
            eod: Some(eod.into()),
            add_special_tokens: false,
            encoder: Encoder::Auto,
        };
        let e = Tokenize::new(cfg("</s>"), &ctx).err().unwrap().to_string();
        assert!(e.contains("tok.json: no such tokenizer file"), "{e}");
        train_tokenizer(
            &["some words here".into()],
            300,
            &dir.path().join("tok.json"),
        );
        let e = Tokenize::new(cfg("<eod>"), &ctx).err().unwrap().to_string();
        assert!(
            e.contains("eod token `<eod>` is not in the vocabulary"),
            "{e}"
        );
    }
}
