//! Fertility: how many tokens a tokenizer spends per word and per byte of
//! each language. Words are Unicode (UAX #29) words with a letter or digit,
//! so the count means the same in every script.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use unicode_segmentation::UnicodeSegmentation;

use super::corpus::{fold_docs, CorpusError, CorpusSpec, Doc};

/// Counts for one language.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LangFertility {
    pub docs: u64,
    pub words: u64,
    pub bytes: u64,
    pub tokens: u64,
    pub tokens_per_word: f64,
    pub tokens_per_byte: f64,
}

impl LangFertility {
    fn add(&mut self, o: &LangFertility) {
        self.docs += o.docs;
        self.words += o.words;
        self.bytes += o.bytes;
        self.tokens += o.tokens;
    }

    /// Sets the ratios from the counts.
    fn finish(&mut self) {
        self.tokens_per_word = self.tokens as f64 / self.words.max(1) as f64;
        self.tokens_per_byte = self.tokens as f64 / self.bytes.max(1) as f64;
    }
}

/// Fertility per language, plus the whole corpus under `"all"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Fertility {
    pub tokenizer: String,
    pub languages: BTreeMap<String, LangFertility>,
}

#[derive(Debug, thiserror::Error)]
pub enum FertilityError {
    #[error("cannot load tokenizer {path}: {message}")]
    Tokenizer { path: String, message: String },
    #[error(transparent)]
    Corpus(#[from] CorpusError),
}

/// Words in `text` by the Unicode rule.
pub fn count_words(text: &str) -> u64 {
    text.unicode_words().count() as u64
}

/// Encodes every document of `files` (no special tokens added) and counts.
pub fn measure(
    tokenizer: &std::path::Path,
    files: &[PathBuf],
    spec: &CorpusSpec,
) -> Result<Fertility, FertilityError> {
    let tok =
        tokenizers::Tokenizer::from_file(tokenizer).map_err(|e| FertilityError::Tokenizer {
            path: tokenizer.display().to_string(),
            message: e.to_string(),
        })?;
    type Acc = BTreeMap<Arc<str>, LangFertility>;
    let fold = |acc: &mut Acc, docs: Vec<Doc>| {
        for d in docs {
            let n = tok
                .encode_fast(d.text.as_str(), false)
                .map(|e| e.len() as u64)
                .unwrap_or(0);
            let e = acc.entry(d.lang).or_default();
            e.docs += 1;
            e.words += count_words(&d.text);
            e.bytes += d.text.len() as u64;
            e.tokens += n;
        }
    };
    let merge = |mut a: Acc, b: Acc| {
        for (l, f) in b {
            a.entry(l).or_default().add(&f);
        }
        a
    };
    let per = fold_docs(
        files,
        spec,
        &indicatif::ProgressBar::hidden(),
        Acc::new,
        fold,
        merge,
    )?;
    let mut out = Fertility {
        tokenizer: tokenizer.display().to_string(),
        languages: BTreeMap::new(),
    };
    let mut all = LangFertility::default();
    for (l, mut f) in per {
        all.add(&f);
        f.finish();
        out.languages.insert(l.to_string(), f);
    }
    all.finish();
    out.languages.insert("all".into(), all);
    Ok(out)
}

impl Fertility {
    /// A fixed-width table, one language per row.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<6} {:>8} {:>11} {:>12} {:>12} {:>11} {:>11}\n",
            "lang", "docs", "words", "bytes", "tokens", "tok/word", "tok/byte"
        );
        for (l, f) in &self.languages {
            s.push_str(&format!(
                "{:<6} {:>8} {:>11} {:>12} {:>12} {:>11.4} {:>11.4}\n",
                l, f.docs, f.words, f.bytes, f.tokens, f.tokens_per_word, f.tokens_per_byte
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_follow_unicode_rules() {
        assert_eq!(count_words("Hello, world! 42 l'homme"), 4);
        assert_eq!(count_words("Καλημέρα κόσμε"), 2);
        assert_eq!(count_words("  ... "), 0);
    }
}
