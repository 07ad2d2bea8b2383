//! A fast encoder for byte-level BPE tokenizers (GPT-2 style), giving the
//! same ids as Hugging Face `tokenizers`.
//!
//! The `tokenizers` crate builds, for every word, strings for the word and
//! each of its tokens, then an `Encoding` with offsets and masks; most of its
//! time goes there, not into BPE. This encoder takes only what ids need:
//! - added tokens (`</s>`, ...) split the text first, longest match at the
//!   leftmost position, as `tokenizers` does;
//! - the GPT-2 pre-tokenizer pattern, run with the `regex` crate (the same
//!   Unicode tables `tokenizers` uses); its `\s+(?!\S)` look-ahead, which
//!   `regex` lacks, is applied by hand after the match;
//! - BPE merges on the word's bytes, lowest rank first and left to right
//!   within a rank (the order of `tokenizers`' merge heap), cached per
//!   thread, so that a frequent word costs one hash lookup.
//!
//! Only tokenizers it reproduces exactly are accepted ([`ByteLevelBpe::from_json`]
//! says why not otherwise): no normalizer, a `ByteLevel` pre-tokenizer with
//! the GPT-2 pattern and no prefix space, a plain BPE model, and added tokens
//! without strip or single-word rules. Anything else is encoded by
//! `tokenizers` itself. Tests compare both on real and random text.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;
use serde_json::Value;

use crate::hash::MixState;

/// GPT-2's pattern without the `\s+(?!\S)` alternative (see `encode_plain`).
const PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

/// Words longer than this are not cached (long runs of symbols, base64...).
const CACHE_WORD_BYTES: usize = 64;
/// A thread's cache is cleared when it holds this many words.
const CACHE_WORDS: usize = 1 << 20;

type MixMap<K, V> = HashMap<K, V, MixState>;
/// A word's bytes to its ids.
type WordCache = MixMap<Box<[u8]>, Box<[u32]>>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// (encoder id, word bytes -> ids); one encoder's words at a time.
    static CACHE: RefCell<(u64, WordCache)> = RefCell::new((0, WordCache::default()));
}

pub struct ByteLevelBpe {
    id: u64,
    pre: Regex,
    /// The id of each single byte.
    byte_ids: [u32; 256],
    /// (left << 32 | right) -> (rank << 32 | merged id).
    merges: MixMap<u64, u64>,
    added: Option<(AhoCorasick, Vec<u32>)>,
}

/// GPT-2's byte-to-character table: printable Latin-1 stays, every other
/// byte maps to U+0100 onwards, in byte order.
pub fn byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        out[b as usize] = if printable {
            b as char
        } else {
            n += 1;
            char::from_u32(255 + n).expect("valid")
        };
    }
    out
}

fn is_null(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

impl ByteLevelBpe {
    /// The fast encoder for `json` (a `tokenizer.json`), or why it cannot
    /// reproduce that tokenizer.
    pub fn from_json(json: &str) -> Result<Self, String> {
        let t: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if !is_null(t.get("normalizer")) {
            return Err("it has a normalizer".into());
        }
        let pre = &t["pre_tokenizer"];
        let pre_ok = pre["type"] == "ByteLevel"
            && pre["add_prefix_space"] == false
            && pre.get("use_regex").is_none_or(|v| v == true);
        if !pre_ok {
            return Err("its pre-tokenizer is not GPT-2's ByteLevel without prefix space".into());
        }
        let m = &t["model"];
        if m["type"] != "BPE" {
            return Err("its model is not BPE".into());
        }
        for key in [
            "dropout",
            "continuing_subword_prefix",
            "end_of_word_suffix",
            "unk_token",
        ] {
            if !is_null(m.get(key)) {
                return Err(format!("its BPE model sets `{key}`"));
            }
        }
        for key in ["ignore_merges", "byte_fallback"] {
            if m.get(key).is_some_and(|v| v == true) {
                return Err(format!("its BPE model sets `{key}`"));
            }
        }
        let vocab: MixMap<&str, u32> = m["vocab"]
            .as_object()
            .ok_or("no vocabulary")?
            .iter()
            .map(|(k, v)| Ok((k.as_str(), v.as_u64().ok_or("a vocabulary id")? as u32)))
            .collect::<Result<_, String>>()?;
        let chars = byte_chars();
        let mut byte_ids = [0u32; 256];
        for (b, c) in chars.iter().enumerate() {
            byte_ids[b] = *vocab
                .get(c.to_string().as_str())
                .ok_or_else(|| format!("byte {b:#04x} has no token"))?;
        }
        let mut merges = MixMap::default();
        for (rank, pair) in m["merges"]
            .as_array()
            .ok_or("no merges")?
            .iter()
            .enumerate()
        {
            let (a, b) = match pair {
                Value::String(s) => s.split_once(' ').ok_or("a merge without a space")?,
                Value::Array(p) if p.len() == 2 => (
                    p[0].as_str().ok_or("a merge part")?,
                    p[1].as_str().ok_or("a merge part")?,
                ),
                _ => return Err("a merge is neither \"a b\" nor [a, b]".into()),
            };
            let id = |s: &str| {
                vocab
                    .get(s)
                    .copied()
                    .ok_or(format!("merge part {s:?} not in the vocabulary"))
            };
            let merged = id(&format!("{a}{b}"))?;
            let key = (id(a)? as u64) << 32 | id(b)? as u64;
            // A repeated pair keeps its first (lowest) rank, as tokenizers does.
            merges
                .entry(key)
                .or_insert((rank as u64) << 32 | merged as u64);
        }
        let mut contents = Vec::new();
        let mut ids = Vec::new();
        for a in t["added_tokens"].as_array().into_iter().flatten() {
            for key in ["single_word", "lstrip", "rstrip"] {
                if a[key] == true {
                    return Err(format!("an added token sets `{key}`"));
                }
            }
            contents.push(
                a["content"]
                    .as_str()
                    .ok_or("added token content")?
                    .to_string(),
            );
            ids.push(a["id"].as_u64().ok_or("added token id")? as u32);
        }
        let added = if contents.is_empty() {
            None
        } else {
            let ac = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&contents)
                .map_err(|e| e.to_string())?;
            Some((ac, ids))
        };
        Ok(ByteLevelBpe {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            pre: Regex::new(PATTERN).expect("valid pattern"),
            byte_ids,
            merges,
            added,
        })
    }

    /// Appends the ids of `text` to `out`.
    pub fn encode(&self, text: &str, out: &mut Vec<u32>) {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != self.id || c.1.len() > CACHE_WORDS {
                *c = (self.id, WordCache::default());
            }
            let cache = &mut c.1;
            match &self.added {
                None => self.encode_plain(text, cache, out),
                Some((ac, ids)) => {
                    let mut at = 0;
                    for m in ac.find_iter(text) {
                        self.encode_plain(&text[at..m.start()], cache, out);
                        out.push(ids[m.pattern().as_usize()]);
                        at = m.end();
                    }
                    self.encode_plain(&text[at..], cache, out);
                }
            }
        })
    }

    fn encode_plain(&self, text: &str, cache: &mut WordCache, out: &mut Vec<u32>) {
        let mut pos = 0;
        let bytes = text.as_bytes();
        while pos < text.len() {
            let m = self
                .pre
                .find_at(text, pos)
                .expect("every character matches");
            debug_assert_eq!(m.start(), pos);
            let mut end = m.end();
            // `\s+(?!\S)`: a run of spaces followed by a word leaves its last
            // space to the word (" word"), if the run is longer than one.
            // Only a `\s+` match ends in a space; nothing follows a run but a non-space.
            if end < text.len() && end - pos > 1 {
                let last = text[pos..end].chars().next_back().expect("non-empty");
                if last.is_whitespace() && end - last.len_utf8() > pos {
                    end -= last.len_utf8();
                }
            }
            let word = &bytes[pos..end];
            if word.len() <= CACHE_WORD_BYTES {
                if let Some(ids) = cache.get(word) {
                    out.extend_from_slice(ids);
                } else {
                    let start = out.len();
                    self.bpe(word, out);
                    cache.insert(word.into(), out[start..].into());
                }
            } else {
                self.bpe(word, out);
            }
            pos = end;
        }
    }

    /// BPE over one word's bytes: the lowest-ranked adjacent pair is merged
    /// everywhere, left to right, until no pair has a merge.
    fn bpe(&self, word: &[u8], out: &mut Vec<u32>) {
        let mut syms: Vec<u32> = word.iter().map(|&b| self.byte_ids[b as usize]).collect();
        loop {
            let mut best = u64::MAX;
            for w in syms.windows(2) {
                if let Some(&v) = self.merges.get(&((w[0] as u64) << 32 | w[1] as u64)) {
                    best = best.min(v);
                }
            }
            if best == u64::MAX {
                break;
            }
            let (rank_key, merged) = (best >> 32, best as u32);
            let mut w = 0;
            let mut r = 0;
            while r < syms.len() {
                if r + 1 < syms.len() {
                    let key = (syms[r] as u64) << 32 | syms[r + 1] as u64;
                    if self.merges.get(&key).is_some_and(|&v| v >> 32 == rank_key) {
                        syms[w] = merged;
                        w += 1;
                        r += 2;
                        continue;
                    }
                }
                syms[w] = syms[r];
                w += 1;
                r += 1;
            }
            syms.truncate(w);
        }
        out.extend_from_slice(&syms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_table_is_gpt2s() {
        let c = byte_chars();
        assert_eq!(c[b' ' as usize], 'Ġ');
        assert_eq!(c[b'\n' as usize], 'Ċ');
        assert_eq!(c[b'a' as usize], 'a');
        assert_eq!(c[0], 'Ā');
        let mut all: Vec<char> = c.to_vec();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn other_tokenizers_are_refused_with_a_reason() {
        let json = r#"{"normalizer":{"type":"NFC"},"pre_tokenizer":null,"model":{"type":"BPE"}}"#;
        let e = ByteLevelBpe::from_json(json).err().unwrap();
        assert!(e.contains("normalizer"), "{e}");
    }
}
