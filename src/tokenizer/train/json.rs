//! The trained vocabulary as files: `tokenizer.json` for Hugging Face
//! `tokenizers` / `transformers`, and a SentencePiece-style `.vocab` listing.
//!
//! Layout, as in SentencePiece BPE models: special tokens (unk, bos, eos,
//! pad, control, reserved), the whitespace-run and other user-defined
//! pieces, the 256 byte pieces `<0x00>`…`<0xFF>`, the merged pieces in merge
//! order, then the single characters. The tokenizer is the one Llama-style
//! SentencePiece conversions use: NFC, a `▁` prepended and every space
//! made `▁` by the normalizer, no pre-tokenizer (merges never cross the
//! places where training cut the text, so none is needed), BPE with byte
//! fallback, and a decoder that undoes each step, including the `▁` that
//! `tokenizers` prepends again after every special token: every text comes
//! back exactly, special tokens' literal text included. Whitespace runs are
//! pieces reached by the first merges (ranked so a run of up to the maximum
//! becomes one piece), so they need no special matching.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_json::{json, Value};

use super::bpe::Merges;
use super::words::{run_merge, run_merge_order};
use super::{TrainConfig, SPACE};

/// What kind of piece an id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Special,
    UserDefined,
    Byte,
    Merged,
    Char,
}

/// The ids and merges of a trained tokenizer.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocabulary {
    /// Pieces in id order.
    pub pieces: Vec<(String, Kind)>,
    /// Merges in rank order, by piece.
    pub merges: Vec<(String, String)>,
    /// How many merges were learned (the rest are whitespace runs).
    pub learned: usize,
    pub config: TrainConfig,
}

impl Vocabulary {
    pub fn build(m: &Merges, cfg: &TrainConfig) -> Self {
        let mut pieces: Vec<(String, Kind)> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut add = |p: String, k: Kind, pieces: &mut Vec<(String, Kind)>| {
            if seen.insert(p.clone()) {
                pieces.push((p, k));
            }
        };
        for s in cfg.special_tokens() {
            add(s, Kind::Special, &mut pieces);
        }
        for s in cfg.run_pieces() {
            add(s, Kind::UserDefined, &mut pieces);
        }
        for s in &cfg.user_defined {
            add(s.clone(), Kind::UserDefined, &mut pieces);
        }
        if cfg.byte_fallback {
            for b in 0..=255u8 {
                add(format!("<0x{b:02X}>"), Kind::Byte, &mut pieces);
            }
        }
        for p in &m.pieces[m.alphabet_len..] {
            add(p.clone(), Kind::Merged, &mut pieces);
        }
        for p in &m.pieces[..m.alphabet_len] {
            add(p.clone(), Kind::Char, &mut pieces);
        }
        let mut merges = Vec::new();
        for (c, max) in cfg.normalized_runs() {
            let run = |n: usize| std::iter::repeat_n(c, n).collect::<String>();
            for n in run_merge_order(max) {
                let (l, r) = run_merge(n);
                merges.push((run(l), run(r)));
            }
        }
        for &(a, b) in &m.merges {
            merges.push((m.pieces[a as usize].clone(), m.pieces[b as usize].clone()));
        }
        Vocabulary {
            pieces,
            merges,
            learned: m.merges.len(),
            config: cfg.clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The Hugging Face `tokenizer.json`.
    pub fn tokenizer_json(&self) -> Value {
        let cfg = &self.config;
        let vocab: BTreeMap<&str, usize> = self
            .pieces
            .iter()
            .enumerate()
            .map(|(i, (p, _))| (p.as_str(), i))
            .collect();
        let added: Vec<Value> = self
            .pieces
            .iter()
            .enumerate()
            .filter(|(_, (_, k))| *k == Kind::Special)
            .map(|(i, (p, _))| {
                json!({"id": i, "content": p, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let space = SPACE.to_string();
        let mut normalizers = Vec::new();
        if cfg.nfc {
            normalizers.push(json!({"type": "NFC"}));
        }
        if cfg.add_dummy_prefix {
            normalizers.push(json!({"type": "Prepend", "prepend": space}));
        }
        normalizers.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": space}));
        let mut decoders =
            vec![json!({"type": "Replace", "pattern": {"String": space}, "content": " "})];
        if cfg.byte_fallback {
            decoders.push(json!({"type": "ByteFallback"}));
        }
        decoders.push(json!({"type": "Fuse"}));
        if cfg.add_dummy_prefix {
            // `tokenizers` normalizes the text between special tokens piece
            // by piece, so the piece after a special token gets a `▁` of
            // its own (its issue #1613): "x </s> y" would come back as
            // "x </s>  y". That `▁` always follows a special token directly
            // (a literal special token's text is always matched as the
            // token), so one space after each goes; the ids stay the same.
            for (p, _) in self.pieces.iter().filter(|(_, k)| *k == Kind::Special) {
                decoders.push(
                    json!({"type": "Replace", "pattern": {"String": format!("{p} ")},
                                     "content": p}),
                );
            }
            decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
        }
        let merges: Vec<[&str; 2]> = self
            .merges
            .iter()
            .map(|(a, b)| [a.as_str(), b.as_str()])
            .collect();
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": {"type": "Sequence", "normalizers": normalizers},
            "pre_tokenizer": null,
            "post_processor": null,
            "decoder": {"type": "Sequence", "decoders": decoders},
            "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": cfg.unk_token,
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": true,
                "byte_fallback": cfg.byte_fallback,
                "ignore_merges": false,
                "vocab": vocab,
                "merges": merges,
            }
        })
    }

    /// The SentencePiece-style listing: `piece<TAB>score` per id, the score
    /// 0 for fixed pieces and minus the rank for learned ones. Tabs,
    /// newlines, carriage returns and backslashes in pieces are written
    /// `\t`, `\n`, `\r`, `\\` so every piece stays on its line.
    pub fn vocab_listing(&self) -> String {
        let mut out = String::new();
        let mut rank = 0i64;
        for (p, k) in &self.pieces {
            let score = match k {
                Kind::Merged | Kind::Char => {
                    rank += 1;
                    -(rank - 1)
                }
                _ => 0,
            };
            for c in p.chars() {
                match c {
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\\' => out.push_str("\\\\"),
                    c => out.push(c),
                }
            }
            out.push('\t');
            out.push_str(&score.to_string());
            out.push('\n');
        }
        out
    }

    /// Writes `tokenizer.json` and `tokenizer.vocab` into `dir`, each
    /// atomically; returns the `tokenizer.json` path.
    pub fn write(&self, dir: &Path) -> std::io::Result<std::path::PathBuf> {
        std::fs::create_dir_all(dir)?;
        let json =
            serde_json::to_vec_pretty(&self.tokenizer_json()).map_err(std::io::Error::other)?;
        let path = dir.join("tokenizer.json");
        crate::files::atomic_write(&path, &json)?;
        crate::files::atomic_write(
            &dir.join("tokenizer.vocab"),
            self.vocab_listing().as_bytes(),
        )?;
        Ok(path)
    }
}
