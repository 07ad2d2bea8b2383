//! `banned_words`: the share of a document's words that are on its
//! language's banned-word list (LDNOOBW, the list C4 and dolma filter
//! with; `filters/banned/`), the adult-content signal the anchors' toxicity
//! heuristics use.
//!
//! Words are UAX #29 words (punctuation is not a word), lower-cased; list
//! entries with spaces match as phrases, and each word counts once however
//! many entries cover it. The language comes from the `lid` stage's `lang`
//! column. By default the English list also applies to every language, as
//! adult spam in European crawls is mostly English, and a language without
//! a list of its own is checked against English alone.
//!
//! Columns: `banned_words` (words matched) and `banned_word_ratio` (over
//! all words; null for a document without words). The stage annotates by
//! default; in filter mode a document above `max_ratio` is dropped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, UInt32Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field};
use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;

use super::{BuildContext, Drop, Mode, Reads, Stage, StageError, StageOutput, StageSpec};
use crate::batch::Core;
use crate::ledger::Reason;

macro_rules! banned_lists {
    ($($code:literal),*) => {
        /// (language, its list), from `filters/banned/`.
        pub const BANNED: &[(&str, &str)] = &[
            $(($code, include_str!(concat!("../../filters/banned/", $code, ".txt")))),*
        ];
    };
}

banned_lists!(
    "cs", "da", "de", "en", "es", "fi", "fr", "hu", "it", "nl", "no", "pl", "pt", "ru", "sv"
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BannedWordsConfig {
    #[serde(default = "annotate")]
    pub mode: Mode,
    /// In filter mode, documents whose ratio is above this are dropped.
    #[serde(default = "default_max_ratio")]
    pub max_ratio: f64,
    /// Check every language against the English list too.
    #[serde(default = "yes")]
    pub with_english: bool,
    /// A folder of `<lang>.txt` lists to use instead of the bundled ones
    /// (relative to the manifest's folder).
    #[serde(default)]
    pub lists: Option<String>,
}

fn annotate() -> Mode {
    Mode::Annotate
}

fn default_max_ratio() -> f64 {
    0.01
}

fn yes() -> bool {
    true
}

impl Default for BannedWordsConfig {
    fn default() -> Self {
        BannedWordsConfig {
            mode: annotate(),
            max_ratio: default_max_ratio(),
            with_english: true,
            lists: None,
        }
    }
}

impl BannedWordsConfig {
    pub fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        if !(0.0..=1.0).contains(&self.max_ratio) {
            return vec![(
                Some("max_ratio"),
                format!("`max_ratio` is {}; it must be in 0..=1", self.max_ratio),
            )];
        }
        Vec::new()
    }
}

/// One language's list: single words and phrases.
#[derive(Debug, Default, Clone)]
struct List {
    words: HashSet<String>,
    phrases: HashSet<String>,
    /// Words in the longest phrase.
    longest: usize,
}

impl List {
    fn parse(text: &str) -> List {
        let mut l = List::default();
        for line in text.lines() {
            let words: Vec<String> = line.unicode_words().map(str::to_lowercase).collect();
            match words.len() {
                0 => {}
                1 => {
                    l.words.extend(words);
                }
                n => {
                    l.longest = l.longest.max(n);
                    l.phrases.insert(words.join(" "));
                }
            }
        }
        l
    }

    fn merge(&mut self, other: &List) {
        self.words.extend(other.words.iter().cloned());
        self.phrases.extend(other.phrases.iter().cloned());
        self.longest = self.longest.max(other.longest);
    }

    /// (words matched, words) of a text.
    fn count(&self, text: &str) -> (u32, u32) {
        let words: Vec<String> = text.unicode_words().map(str::to_lowercase).collect();
        let mut hit = vec![false; words.len()];
        let mut key = String::new();
        for i in 0..words.len() {
            if self.words.contains(&words[i]) {
                hit[i] = true;
            }
            for n in 2..=self.longest.min(words.len() - i) {
                key.clear();
                for (k, w) in words[i..i + n].iter().enumerate() {
                    if k > 0 {
                        key.push(' ');
                    }
                    key.push_str(w);
                }
                if self.phrases.contains(&key) {
                    hit[i..i + n].iter_mut().for_each(|h| *h = true);
                }
            }
        }
        (
            hit.iter().filter(|h| **h).count() as u32,
            words.len() as u32,
        )
    }
}

pub struct BannedWords {
    config: BannedWordsConfig,
    lists: HashMap<String, Arc<List>>,
    /// For languages without a list (English, or nothing).
    fallback: Option<Arc<List>>,
}

impl BannedWords {
    pub fn new(config: BannedWordsConfig, ctx: &BuildContext) -> Result<Self, StageError> {
        let fail = |message: String| StageError::Failed {
            stage: <BannedWordsConfig as StageSpec>::TYPE.into(),
            message,
        };
        let mut raw: Vec<(String, List)> = Vec::new();
        match &config.lists {
            None => {
                for (code, text) in BANNED {
                    raw.push((code.to_string(), List::parse(text)));
                }
            }
            Some(dir) => {
                let dir = crate::files::resolve(&ctx.base, dir);
                let entries = std::fs::read_dir(&dir)
                    .map_err(|e| fail(format!("cannot read {}: {e}", dir.display())))?;
                for e in entries {
                    let p = e.map_err(|e| fail(e.to_string()))?.path();
                    let Some(code) = p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_suffix(".txt"))
                    else {
                        continue;
                    };
                    let text = std::fs::read_to_string(&p)
                        .map_err(|e| fail(format!("{}: {e}", p.display())))?;
                    raw.push((code.to_string(), List::parse(&text)));
                }
                raw.sort_by(|a, b| a.0.cmp(&b.0));
                if raw.is_empty() {
                    return Err(fail(format!("{} holds no <lang>.txt lists", dir.display())));
                }
            }
        }
        let english = raw.iter().find(|(c, _)| c == "en").map(|(_, l)| l.clone());
        let mut lists = HashMap::new();
        for (code, mut list) in raw {
            if config.with_english && code != "en" {
                if let Some(en) = &english {
                    list.merge(en);
                }
            }
            lists.insert(code, Arc::new(list));
        }
        let fallback = if config.with_english {
            english.map(Arc::new)
        } else {
            None
        };
        Ok(BannedWords {
            config,
            lists,
            fallback,
        })
    }
}

impl Stage for BannedWords {
    fn name(&self) -> &'static str {
        <BannedWordsConfig as StageSpec>::TYPE
    }

    fn mode(&self) -> Mode {
        self.config.mode
    }

    fn fields(&self) -> Vec<Field> {
        vec![
            Field::new("banned_words", DataType::UInt32, true),
            Field::new("banned_word_ratio", DataType::Float64, true),
        ]
    }

    fn process(&self, batch: &RecordBatch) -> Result<StageOutput, StageError> {
        let text = Core::of(batch).text;
        let lang = crate::batch::langs(batch);
        let n = batch.num_rows();
        let mut count = UInt32Builder::with_capacity(n);
        let mut ratio = Float64Builder::with_capacity(n);
        let mut drops = Vec::new();
        for row in 0..n {
            let list = self.lists.get(lang(row)).or(self.fallback.as_ref());
            let Some(list) = list else {
                count.append_null();
                ratio.append_null();
                continue;
            };
            let (hits, words) = list.count(text.value(row));
            count.append_value(hits);
            if words == 0 {
                ratio.append_null();
                continue;
            }
            let r = f64::from(hits) / f64::from(words);
            ratio.append_value(r);
            if r > self.config.max_ratio {
                drops.push(Drop {
                    row,
                    reason: Reason::BannedWords,
                    detail: format!(
                        "{hits} of {words} words banned ({r:.4} > max_ratio {})",
                        self.config.max_ratio
                    ),
                });
            }
        }
        Ok(StageOutput {
            columns: vec![
                Arc::new(count.finish()) as ArrayRef,
                Arc::new(ratio.finish()) as ArrayRef,
            ],
            drops,
            ..Default::default()
        })
    }
}

impl StageSpec for BannedWordsConfig {
    const TYPE: &'static str = "banned_words";

    fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        BannedWordsConfig::problems(self)
    }

    fn reads(&self) -> Vec<Reads> {
        let without = if self.with_english {
            "only the English list applies"
        } else {
            "no list applies"
        };
        vec![Reads::lang(None, !self.with_english, without)]
    }

    fn adds(&self) -> Vec<&'static str> {
        vec!["banned_words", "banned_word_ratio"]
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Stage>, StageError> {
        Ok(Box::new(BannedWords::new(self.clone(), ctx)?))
    }

    fn example() -> Self {
        BannedWordsConfig {
            mode: Mode::Filter,
            max_ratio: 0.05,
            with_english: false,
            lists: Some("lists".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_lists_load_and_phrases_count_each_word_once() {
        for (code, text) in BANNED {
            let l = List::parse(text);
            assert!(l.words.len() + l.phrases.len() >= 15, "{code}");
        }
        let l = List::parse("bad\nvery bad thing\nbad thing\n");
        assert_eq!(l.longest, 3);
        // "very bad thing" covers three words; "bad" and "bad thing" overlap it.
        assert_eq!(l.count("A very BAD thing, bad."), (4, 5));
        assert_eq!(l.count("Nothing here."), (0, 2));
        assert_eq!(l.count("!!!"), (0, 0));
    }

    fn stage(config: BannedWordsConfig) -> BannedWords {
        let ctx = BuildContext {
            base: std::path::PathBuf::from("."),
        };
        BannedWords::new(config, &ctx).unwrap()
    }

    #[test]
    fn languages_use_their_list_plus_english_and_others_english_alone() {
        let s = stage(BannedWordsConfig::default());
        let de = &s.lists["de"];
        // German's own entry and an English one.
        assert_eq!(de.count("so ein Arschloch").0, 1);
        assert_eq!(de.count("a blowjob").0, 1);
        // Catalan has no list: English only.
        assert!(!s.lists.contains_key("ca"));
        assert!(s.fallback.as_ref().unwrap().words.contains("blowjob"));
        let only_own = stage(BannedWordsConfig {
            with_english: false,
            ..Default::default()
        });
        assert_eq!(only_own.lists["de"].count("a blowjob").0, 0);
        assert!(only_own.fallback.is_none());
    }
}
