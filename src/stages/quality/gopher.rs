//! Gopher's quality and repetition rules (Rae et al. 2021, table A1).
//!
//! Checks run in the order of the reference implementation and a document
//! fails on the first one it breaks, so the ledger reason matches what
//! datatrove reports for the same text and thresholds. N-grams are hashed
//! instead of joined into strings: same counts, no allocation per n-gram.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use xxhash_rust::xxh3::{xxh3_64, Xxh3Builder};

use super::Verdict;
use crate::hash::{sequence_key, PassThroughState};
use crate::ledger::Reason;
use crate::text::{chars, is_punct, splitlines, strip};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GopherQualityParams {
    pub min_doc_words: Option<u64>,
    pub max_doc_words: Option<u64>,
    pub min_avg_word_length: Option<f64>,
    pub max_avg_word_length: Option<f64>,
    pub max_symbol_word_ratio: Option<f64>,
    pub max_bullet_lines_ratio: Option<f64>,
    pub max_ellipsis_lines_ratio: Option<f64>,
    pub min_alpha_words_ratio: Option<f64>,
    pub min_stop_words: Option<u64>,
    /// Explicit stop words; otherwise the first `stop_words_top` of the
    /// language's list in `filters/stopwords/`.
    #[serde(default)]
    pub stop_words: Option<Vec<String>>,
    #[serde(default)]
    pub stop_words_top: Option<usize>,
}

pub struct GopherQuality {
    p: GopherQualityParams,
    stop_words: HashSet<String>,
}

/// Signals, in column order.
pub const QUALITY_SIGNALS: [&str; 8] = [
    "gopher_words",
    "gopher_mean_word_length",
    "gopher_hash_ratio",
    "gopher_ellipsis_ratio",
    "gopher_bullet_lines_ratio",
    "gopher_ellipsis_lines_ratio",
    "gopher_alpha_words_ratio",
    "gopher_stop_words",
];

impl GopherQuality {
    pub fn new(p: GopherQualityParams, stop_words: HashSet<String>) -> Self {
        GopherQuality { p, stop_words }
    }

    pub fn check(&self, text: &str, words: &[&str]) -> Verdict<8> {
        let p = &self.p;
        let n_words = words.len() as f64;
        let non_symbol: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| w.chars().any(|c| !is_punct(c)))
            .collect();
        let n_ns = non_symbol.len() as u64;
        let mean_len = if non_symbol.is_empty() {
            f64::NAN
        } else {
            non_symbol.iter().map(|w| chars(w)).sum::<usize>() as f64 / n_ns as f64
        };
        let hashes = text.matches('#').count() as f64 / n_words;
        let ellipses = (text.matches("...").count() + text.matches('…').count()) as f64 / n_words;
        let lines = splitlines(text);
        let n_lines = lines.len().max(1) as f64;
        let bullets = lines
            .iter()
            .filter(|l| {
                let l = l.trim_start();
                l.starts_with('•') || l.starts_with('-')
            })
            .count() as f64
            / n_lines;
        let end_ellipsis = lines
            .iter()
            .filter(|l| {
                let l = l.trim_end();
                l.ends_with("...") || l.ends_with('…')
            })
            .count() as f64
            / n_lines;
        let alpha = words
            .iter()
            .filter(|w| w.chars().any(char::is_alphabetic))
            .count() as f64
            / n_words;
        let mut distinct = HashSet::with_capacity_and_hasher(words.len(), Xxh3Builder::new());
        distinct.extend(words.iter().copied());
        let stops = distinct
            .iter()
            .filter(|w| self.stop_words.contains(**w))
            .count() as u64;
        let signals = [
            n_ns as f64,
            mean_len,
            hashes,
            ellipses,
            bullets,
            end_ellipsis,
            alpha,
            stops as f64,
        ];
        let fail = |reason, detail: String| Verdict {
            signals,
            fail: Some((reason, detail)),
        };
        if let Some(min) = p.min_doc_words.filter(|&m| n_ns < m) {
            return fail(Reason::GopherShortDoc, format!("{n_ns} words < {min}"));
        }
        if let Some(max) = p.max_doc_words.filter(|&m| n_ns > m) {
            return fail(Reason::GopherLongDoc, format!("{n_ns} words > {max}"));
        }
        if let Some(min) = p.min_avg_word_length.filter(|&m| mean_len < m) {
            return fail(
                Reason::GopherShortWords,
                format!("mean word length {mean_len:.2} < {min}"),
            );
        }
        if let Some(max) = p.max_avg_word_length.filter(|&m| mean_len > m) {
            return fail(
                Reason::GopherLongWords,
                format!("mean word length {mean_len:.2} > {max}"),
            );
        }
        if let Some(max) = p.max_symbol_word_ratio {
            if hashes > max {
                return fail(
                    Reason::GopherHashes,
                    format!("# per word {hashes:.3} > {max}"),
                );
            }
            if ellipses > max {
                return fail(
                    Reason::GopherEllipses,
                    format!("ellipses per word {ellipses:.3} > {max}"),
                );
            }
        }
        if let Some(max) = p.max_bullet_lines_ratio.filter(|&m| bullets > m) {
            return fail(
                Reason::GopherBulletLines,
                format!("bullet lines {bullets:.2} > {max}"),
            );
        }
        if let Some(max) = p.max_ellipsis_lines_ratio.filter(|&m| end_ellipsis > m) {
            return fail(
                Reason::GopherEllipsisLines,
                format!("lines ending in an ellipsis {end_ellipsis:.2} > {max}"),
            );
        }
        if let Some(min) = p.min_alpha_words_ratio.filter(|&m| alpha < m) {
            return fail(
                Reason::GopherAlphaWords,
                format!("words with a letter {alpha:.2} < {min}"),
            );
        }
        if let Some(min) = p.min_stop_words.filter(|&m| stops < m) {
            return fail(
                Reason::GopherStopWords,
                format!("{stops} distinct stop words < {min}"),
            );
        }
        Verdict {
            signals,
            fail: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GopherRepetitionParams {
    pub dup_para_frac: Option<f64>,
    pub dup_para_char_frac: Option<f64>,
    pub dup_line_frac: Option<f64>,
    pub dup_line_char_frac: Option<f64>,
    /// (n, max fraction of characters in the most frequent n-gram), n in 2..=4.
    pub top_n_grams: Vec<(usize, f64)>,
    /// (n, max fraction of characters in repeated n-grams), n in 5..=10.
    pub dup_n_grams: Vec<(usize, f64)>,
}

impl GopherRepetitionParams {
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (n, _) in &self.top_n_grams {
            if !(2..=4).contains(n) {
                p.push(format!("top_n_grams: n = {n} is outside 2..=4"));
            }
        }
        for (n, _) in &self.dup_n_grams {
            if !(5..=10).contains(n) {
                p.push(format!("dup_n_grams: n = {n} is outside 5..=10"));
            }
        }
        p
    }
}

pub const REPETITION_SIGNALS: [&str; 4] = [
    "gopher_dup_para_frac",
    "gopher_dup_para_char_frac",
    "gopher_dup_line_frac",
    "gopher_dup_line_char_frac",
];

/// Keys that are already hashes need no hashing again.
type HashKeyed<V> = HashMap<u64, V, PassThroughState>;
type HashKeySet = HashSet<u64, PassThroughState>;

/// Duplicate elements and their characters, counting every repeat after the first.
pub(super) fn duplicates<'a>(items: impl Iterator<Item = &'a str>) -> (usize, usize, usize) {
    let mut seen = HashSet::with_capacity_and_hasher(64, Xxh3Builder::new());
    let (mut n, mut dup, mut dup_chars) = (0, 0, 0);
    for it in items {
        n += 1;
        if !seen.insert(it) {
            dup += 1;
            dup_chars += chars(it);
        }
    }
    (n, dup, dup_chars)
}

pub struct GopherRepetition {
    p: GopherRepetitionParams,
}

impl GopherRepetition {
    pub fn new(p: GopherRepetitionParams) -> Self {
        GopherRepetition { p }
    }

    pub fn check(&self, text: &str, words: &[&str]) -> Verdict<4> {
        let p = &self.p;
        let total = chars(text) as f64;
        if text.is_empty() {
            return Verdict {
                signals: [f64::NAN; 4],
                fail: Some((Reason::QualityEmpty, "empty text".into())),
            };
        }
        let paragraphs = split_paragraphs(strip(text));
        let (np, pd, pc) = duplicates(paragraphs.into_iter());
        let lines = text.split('\n').filter(|l| !l.is_empty());
        // `\n+` splitting keeps a leading/trailing empty piece; count them as Python does.
        let edge = usize::from(text.starts_with('\n')) + usize::from(text.ends_with('\n'));
        let (nl, ld, lc) = duplicates(lines.chain(std::iter::repeat_n("", edge)));
        let signals = [
            pd as f64 / np as f64,
            pc as f64 / total,
            ld as f64 / nl as f64,
            lc as f64 / total,
        ];
        let fail = |reason, detail: String| Verdict {
            signals,
            fail: Some((reason, detail)),
        };
        let checks = [
            (p.dup_para_frac, signals[0], Reason::GopherDupParagraphs),
            (
                p.dup_para_char_frac,
                signals[1],
                Reason::GopherDupParagraphChars,
            ),
            (p.dup_line_frac, signals[2], Reason::GopherDupLines),
            (p.dup_line_char_frac, signals[3], Reason::GopherDupLineChars),
        ];
        for (max, v, reason) in checks {
            if let Some(max) = max.filter(|&m| v > m) {
                return fail(reason, format!("{v:.3} > {max}"));
            }
        }
        let lens: Vec<usize> = words.iter().map(|w| chars(w)).collect();
        let hashes: Vec<u64> = words.iter().map(|w| xxh3_64(w.as_bytes())).collect();
        // Sized once, cleared per n: growing them was a seventh of the time.
        let mut counts: HashKeyed<(usize, usize)> =
            HashKeyed::with_capacity_and_hasher(words.len(), Default::default());
        let mut seen = HashKeySet::with_capacity_and_hasher(words.len(), Default::default());
        for &(n, max) in &p.top_n_grams {
            if words.len() < n {
                continue;
            }
            // Most frequent n-gram; among equals, the one that occurs first.
            counts.clear();
            for i in 0..=words.len() - n {
                counts
                    .entry(sequence_key(&hashes[i..i + n]))
                    .or_insert((0, i))
                    .0 += 1;
            }
            let (best, first) = counts
                .values()
                .map(|&(count, first)| (count, std::cmp::Reverse(first)))
                .max()
                .map(|(c, f)| (c, f.0))
                .expect("at least one n-gram");
            let gram_chars: usize = lens[first..first + n].iter().sum::<usize>() + (n - 1);
            let frac = (gram_chars * best) as f64 / total;
            if frac > max {
                return fail(
                    Reason::top_n_gram(n),
                    format!("top {n}-gram covers {frac:.3} > {max}"),
                );
            }
        }
        for &(n, max) in &p.dup_n_grams {
            seen.clear();
            let (mut repeated, mut i) = (0usize, 0usize);
            while i + n <= words.len() {
                if seen.insert(sequence_key(&hashes[i..i + n])) {
                    i += 1;
                } else {
                    repeated += lens[i..i + n].iter().sum::<usize>();
                    i += n;
                }
            }
            let frac = repeated as f64 / total;
            if frac > max {
                return fail(
                    Reason::dup_n_grams(n),
                    format!("repeated {n}-grams cover {frac:.3} > {max}"),
                );
            }
        }
        Verdict {
            signals,
            fail: None,
        }
    }
}

/// Splits at runs of two or more newlines.
fn split_paragraphs(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        if b[i] == b'\n' && b.get(i + 1) == Some(&b'\n') {
            out.push(&text[start..i]);
            while i < b.len() && b[i] == b'\n' {
                i += 1;
            }
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(&text[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::spacy::words;

    fn quality() -> GopherQuality {
        let p = GopherQualityParams {
            min_doc_words: Some(50),
            max_doc_words: Some(100_000),
            min_avg_word_length: Some(3.0),
            max_avg_word_length: Some(10.0),
            max_symbol_word_ratio: Some(0.1),
            max_bullet_lines_ratio: Some(0.9),
            max_ellipsis_lines_ratio: Some(0.3),
            min_alpha_words_ratio: Some(0.8),
            min_stop_words: Some(2),
            stop_words: None,
            stop_words_top: None,
        };
        let stops = ["the", "be", "to", "of", "and", "that", "have", "with"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        GopherQuality::new(p, stops)
    }

    // Article 29 of the UDHR, English (data/demo).
    const PROSE: &str = "Everyone has duties to the community in which alone the free and full development of his personality is possible. In the exercise of his rights and freedoms, everyone shall be subject only to such limitations as are determined by law solely for the purpose of securing due recognition and respect for the rights and freedoms of others and of meeting the just requirements of morality, public order and the general welfare in a democratic society. These rights and freedoms may in no case be exercised contrary to the purposes and principles of the United Nations.";

    fn q(text: &str) -> Option<Reason> {
        quality().check(text, &words(text)).fail.map(|f| f.0)
    }

    #[test]
    fn real_prose_passes_quality() {
        assert_eq!(q(PROSE), None);
    }

    #[test]
    fn each_quality_rule_can_fail() {
        assert_eq!(
            q("Everyone has duties to the community."),
            Some(Reason::GopherShortDoc)
        );
        let hashes = format!("{PROSE} {}", "#tag ".repeat(30));
        assert_eq!(q(&hashes), Some(Reason::GopherHashes));
        let bullets = PROSE
            .split(", ")
            .map(|s| format!("- {s}"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(q(&bullets), Some(Reason::GopherBulletLines));
        let stops = ["the", "be", "to", "of", "and", "that", "have", "with"];
        let no_stops = PROSE
            .split(' ')
            .map(|w| if stops.contains(&w) { "a" } else { w })
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(q(&no_stops), Some(Reason::GopherStopWords));
        let numbers = format!("{PROSE} {}", "1234 5678 ".repeat(40));
        assert_eq!(q(&numbers), Some(Reason::GopherAlphaWords));
    }

    #[test]
    fn length_and_symbol_rules_fail_on_their_own_cases() {
        // 100,000 words is Gopher's ceiling: the article, 1,200 times.
        let long = vec![PROSE; 1200].join(" ");
        assert_eq!(q(&long), Some(Reason::GopherLongDoc));
        // Catalan function words only: a mean word length under 3.
        let tiny = "El pa i el vi a la taula, i tu i jo a casa. ".repeat(8);
        assert_eq!(q(&tiny), Some(Reason::GopherShortWords));
        // German compounds: a mean word length over 10.
        let compounds = "Menschenrechtsverletzungen Staatsangehörigkeit Diskriminierungsverbot Rechtsstaatlichkeit Gleichberechtigung Meinungsfreiheit Versammlungsfreiheit Religionsfreiheit Unschuldsvermutung Persönlichkeitsentfaltung ".repeat(6);
        assert_eq!(q(&compounds), Some(Reason::GopherLongWords));
        let ellipses: String = PROSE
            .split(' ')
            .enumerate()
            .map(|(i, w)| {
                if i % 4 == 3 {
                    format!("{w}...")
                } else {
                    w.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(q(&ellipses), Some(Reason::GopherEllipses));
        let trailing = PROSE.replace(". ", "…\n");
        assert_eq!(q(&trailing), Some(Reason::GopherEllipsisLines));
    }

    fn only(p: GopherRepetitionParams) -> GopherRepetition {
        GopherRepetition::new(p)
    }

    fn no_rules() -> GopherRepetitionParams {
        GopherRepetitionParams {
            dup_para_frac: None,
            dup_para_char_frac: None,
            dup_line_frac: None,
            dup_line_char_frac: None,
            top_n_grams: vec![],
            dup_n_grams: vec![],
        }
    }

    #[test]
    fn each_repetition_rule_alone_passes_prose_and_fails_repeats() {
        let cases: Vec<(GopherRepetitionParams, String, Reason)> = vec![
            (
                GopherRepetitionParams {
                    dup_para_char_frac: Some(0.2),
                    ..no_rules()
                },
                format!("{PROSE}\n\nOne.\n\nTwo.\n\nThree.\n\n{PROSE}"),
                Reason::GopherDupParagraphChars,
            ),
            (
                GopherRepetitionParams {
                    dup_line_char_frac: Some(0.2),
                    ..no_rules()
                },
                format!("{PROSE}\nOne.\nTwo.\nThree.\n{PROSE}"),
                Reason::GopherDupLineChars,
            ),
            (
                GopherRepetitionParams {
                    top_n_grams: vec![(3, 0.18)],
                    ..no_rules()
                },
                format!("{PROSE} {}", "rights and freedoms, ".repeat(25)),
                Reason::GopherTop3Gram,
            ),
            (
                GopherRepetitionParams {
                    top_n_grams: vec![(4, 0.16)],
                    ..no_rules()
                },
                format!("{PROSE} {}", "the United Nations organisation ".repeat(20)),
                Reason::GopherTop4Gram,
            ),
            (
                GopherRepetitionParams {
                    dup_n_grams: vec![(10, 0.10)],
                    ..no_rules()
                },
                format!("{PROSE} {PROSE}"),
                Reason::GopherDup10Grams,
            ),
        ];
        for (params, text, reason) in cases {
            let rule = only(params);
            assert_eq!(
                rule.check(PROSE, &words(PROSE)).fail,
                None,
                "{reason:?} passes prose"
            );
            let got = rule.check(&text, &words(&text)).fail.map(|f| f.0);
            assert_eq!(got, Some(reason));
        }
    }

    fn repetition() -> GopherRepetition {
        GopherRepetition::new(GopherRepetitionParams {
            dup_para_frac: Some(0.3),
            dup_para_char_frac: Some(0.2),
            dup_line_frac: Some(0.3),
            dup_line_char_frac: Some(0.2),
            top_n_grams: vec![(2, 0.2), (3, 0.18), (4, 0.16)],
            dup_n_grams: (5..=10)
                .map(|n| (n, 0.15 - 0.01 * (n - 5) as f64))
                .collect(),
        })
    }

    fn r(text: &str) -> Option<Reason> {
        repetition().check(text, &words(text)).fail.map(|f| f.0)
    }

    #[test]
    fn real_prose_passes_repetition() {
        assert_eq!(r(PROSE), None);
    }

    #[test]
    fn repetition_rules_fail_on_repeated_text() {
        let paras = format!("{PROSE}\n\n{PROSE}\n\nA short closing line.");
        assert_eq!(r(&paras), Some(Reason::GopherDupParagraphs));
        let boiler = "Home | About | Contact\n".repeat(3) + PROSE;
        assert_eq!(r(&boiler), Some(Reason::GopherDupLines));
        let grams = format!("{PROSE} {}", "the rights and freedoms ".repeat(12));
        assert!(matches!(
            r(&grams),
            Some(Reason::GopherTop2Gram | Reason::GopherTop3Gram | Reason::GopherTop4Gram)
                | Some(Reason::GopherDup5Grams)
        ));
    }

    #[test]
    fn paragraphs_split_on_blank_lines() {
        assert_eq!(split_paragraphs("a\n\n\nb\nc\n\nd"), vec!["a", "b\nc", "d"]);
    }
}
