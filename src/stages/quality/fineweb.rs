//! FineWeb's quality rules (Penedo et al. 2024): line punctuation, short
//! lines, duplicated line characters, and list-like documents.

use std::collections::HashSet;

use serde::Deserialize;

use super::Verdict;
use crate::ledger::Reason;
use crate::text::{chars, is_terminal, strip};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinewebParams {
    /// Fewer lines ending in terminal punctuation than this drops the document.
    pub line_punct_thr: Option<f64>,
    /// Do not apply the punctuation rule to documents with no such line at all.
    pub line_punct_exclude_zero: bool,
    pub short_line_thr: Option<f64>,
    pub short_line_length: usize,
    pub char_duplicates_ratio: Option<f64>,
    /// Newlines per word above this is a list, not prose.
    pub new_line_ratio: Option<f64>,
}

pub const SIGNALS: [&str; 4] = [
    "fineweb_line_punct_ratio",
    "fineweb_short_line_ratio",
    "fineweb_char_dup_ratio",
    "fineweb_newline_ratio",
];

pub struct Fineweb {
    p: FinewebParams,
}

impl Fineweb {
    pub fn new(p: FinewebParams) -> Self {
        Fineweb { p }
    }

    pub fn check(&self, text: &str, n_words: usize) -> Verdict<4> {
        let p = &self.p;
        let lines: Vec<&str> = text.split('\n').filter(|l| !strip(l).is_empty()).collect();
        if lines.is_empty() {
            return Verdict {
                signals: [f64::NAN; 4],
                fail: Some((Reason::QualityEmpty, "no non-blank line".into())),
            };
        }
        let n = lines.len() as f64;
        let punct = lines
            .iter()
            .filter(|l| l.chars().next_back().is_some_and(is_terminal))
            .count() as f64
            / n;
        let short = lines
            .iter()
            .filter(|l| chars(l) <= p.short_line_length)
            .count() as f64
            / n;
        let mut seen = HashSet::with_hasher(xxhash_rust::xxh3::Xxh3Builder::new());
        let dup_chars: usize = lines
            .iter()
            .filter(|l| !seen.insert(**l))
            .map(|l| chars(l))
            .sum();
        let non_newline = (chars(text) - text.matches('\n').count()).max(1) as f64;
        let char_dup = dup_chars as f64 / non_newline;
        let newline = text.matches('\n').count() as f64 / n_words.max(1) as f64;
        let signals = [punct, short, char_dup, newline];
        let fail = |reason, detail: String| Verdict {
            signals,
            fail: Some((reason, detail)),
        };
        if let Some(min) = p.line_punct_thr {
            if punct < min && !(punct == 0.0 && p.line_punct_exclude_zero) {
                return fail(
                    Reason::FinewebLinePunct,
                    format!("lines ending in punctuation {punct:.2} < {min}"),
                );
            }
        }
        if let Some(max) = p.short_line_thr.filter(|&m| short > m) {
            return fail(
                Reason::FinewebShortLines,
                format!(
                    "lines of at most {} chars {short:.2} > {max}",
                    p.short_line_length
                ),
            );
        }
        if let Some(max) = p.char_duplicates_ratio.filter(|&m| char_dup > m) {
            return fail(
                Reason::FinewebCharDup,
                format!("characters in repeated lines {char_dup:.3} > {max}"),
            );
        }
        if let Some(max) = p.new_line_ratio.filter(|&m| newline > m) {
            return fail(
                Reason::FinewebList,
                format!("newlines per word {newline:.2} > {max}"),
            );
        }
        Verdict {
            signals,
            fail: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::spacy::words;

    fn fw() -> Fineweb {
        Fineweb::new(FinewebParams {
            line_punct_thr: Some(0.12),
            line_punct_exclude_zero: false,
            short_line_thr: Some(0.67),
            short_line_length: 30,
            char_duplicates_ratio: Some(0.01),
            new_line_ratio: Some(0.3),
        })
    }

    fn check(t: &str) -> Option<Reason> {
        fw().check(t, words(t).len()).fail.map(|f| f.0)
    }

    const PROSE: &str = "Tots els éssers humans neixen lliures i iguals en dignitat i en drets.\nSón dotats de raó i de consciència, i han de comportar-se fraternalment els uns amb els altres.";

    #[test]
    fn prose_passes() {
        assert_eq!(check(PROSE), None);
    }

    #[test]
    fn each_rule_can_fail() {
        let menu = "Inici\nArticles\nContacte\nQui som\nAvís legal";
        assert_eq!(check(menu), Some(Reason::FinewebLinePunct));
        let short = format!("{PROSE}\nInici.\nArticles.\nContacte.\nQui som.\nAvís.");
        assert_eq!(check(&short), Some(Reason::FinewebShortLines));
        let dup = format!("{PROSE}\n{PROSE}");
        assert_eq!(check(&dup), Some(Reason::FinewebCharDup));
        let list = "pa.\nvi.\noli.\nsal.\nmel.\nou.\nsucre de canya i farina de blat integral.";
        assert_eq!(check(list), Some(Reason::FinewebShortLines));
        let list2 = "Internationalization documentation.\n".repeat(6);
        assert_eq!(check(&list2), Some(Reason::FinewebCharDup));
        let list3: String = (0..6)
            .map(|i| format!("Internationalization{i} documentationally.\n"))
            .collect();
        assert_eq!(check(&list3), Some(Reason::FinewebList));
    }
}
