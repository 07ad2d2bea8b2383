//! C4's rules (Raffel et al. 2020), line by line.
//!
//! C4 keeps only the lines that pass (terminal punctuation, at least three
//! words, no javascript or cookie-policy boilerplate) and drops the whole
//! document for "lorem ipsum", a curly bracket, or fewer than five
//! sentences in the kept lines. With `remove_lines` the document's text
//! becomes the kept lines, as in C4; the number of lines removed is a column.

use serde::Deserialize;

use crate::ledger::Reason;
use crate::text::{sentences, splitlines, strip, whitespace_words};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct C4Params {
    pub remove_citations: bool,
    pub filter_no_terminal_punct: bool,
    /// Fewer sentences in the kept lines drops the document (None: off).
    pub min_num_sentences: Option<usize>,
    pub min_words_per_line: Option<usize>,
    pub max_word_length: Option<usize>,
    pub filter_lorem_ipsum: bool,
    pub filter_javascript: bool,
    pub filter_curly_bracket: bool,
    pub filter_policy: bool,
    /// Phrases that mark cookie and terms-of-use lines.
    pub policy_phrases: Vec<String>,
    /// Replace the text by the kept lines.
    pub remove_lines: bool,
}

pub const SIGNALS: [&str; 2] = ["c4_lines_removed", "c4_sentences"];

pub struct C4Outcome {
    pub signals: [f64; 2],
    pub fail: Option<(Reason, String)>,
    /// The kept lines, when they differ from the input and `remove_lines` is on.
    pub text: Option<String>,
}

pub struct C4 {
    p: C4Params,
}

/// Removes `[12]`, `[]`, `[edit]` and `[citation needed]`.
fn remove_citations(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let skip = if after[digits..].starts_with(']') {
            Some(digits + 1)
        } else if after.starts_with("edit]") {
            Some(5)
        } else if after.starts_with("citation needed]") {
            Some(16)
        } else {
            None
        };
        match skip {
            Some(n) => rest = &after[n..],
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

impl C4 {
    pub fn new(p: C4Params) -> Self {
        C4 { p }
    }

    pub fn check(&self, text: &str) -> C4Outcome {
        let p = &self.p;
        let lines = splitlines(text);
        let mut kept: Vec<String> = Vec::new();
        let mut n_sentences = 0usize;
        let outcome = |kept: &[String], n_sentences: usize, fail| C4Outcome {
            signals: [(lines.len() - kept.len()) as f64, n_sentences as f64],
            fail,
            text: None,
        };
        for raw in &lines {
            let line = strip(raw);
            let words: Vec<&str> = whitespace_words(line).collect();
            if let Some(max) = p.max_word_length {
                if words.iter().any(|w| w.chars().count() > max) {
                    continue;
                }
            }
            let line: String = if p.remove_citations {
                remove_citations(line)
            } else {
                line.to_string()
            };
            if p.filter_no_terminal_punct
                && (!line.ends_with(['.', '?', '!', '"', '\'']) || line.ends_with("..."))
            {
                continue;
            }
            if p.min_words_per_line.is_some_and(|m| words.len() < m) {
                continue;
            }
            let lower = line.to_lowercase();
            if p.filter_lorem_ipsum && lower.contains("lorem ipsum") {
                return outcome(
                    &kept,
                    n_sentences,
                    Some((Reason::C4LoremIpsum, "contains \"lorem ipsum\"".into())),
                );
            }
            if p.filter_javascript && lower.contains("javascript") {
                continue;
            }
            if p.filter_curly_bracket && line.contains('{') {
                return outcome(
                    &kept,
                    n_sentences,
                    Some((Reason::C4CurlyBracket, "contains \"{\"".into())),
                );
            }
            if p.filter_policy
                && p.policy_phrases
                    .iter()
                    .any(|ph| lower.contains(ph.as_str()))
            {
                continue;
            }
            if p.min_num_sentences.is_some() {
                n_sentences += sentences(&line);
            }
            kept.push(line);
        }
        if let Some(min) = p.min_num_sentences.filter(|&m| n_sentences < m) {
            return outcome(
                &kept,
                n_sentences,
                Some((
                    Reason::C4TooFewSentences,
                    format!("{n_sentences} sentences in kept lines < {min}"),
                )),
            );
        }
        let mut out = outcome(&kept, n_sentences, None);
        if p.remove_lines {
            let joined = kept.join("\n");
            let new = strip(&joined);
            if new != text {
                out.text = Some(new.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c4() -> C4 {
        c4_min(5)
    }

    fn c4_min(min_num_sentences: usize) -> C4 {
        C4::new(C4Params {
            remove_citations: true,
            filter_no_terminal_punct: true,
            min_num_sentences: Some(min_num_sentences),
            min_words_per_line: Some(3),
            max_word_length: Some(1000),
            filter_lorem_ipsum: true,
            filter_javascript: true,
            filter_curly_bracket: true,
            filter_policy: true,
            policy_phrases: vec!["privacy policy".into(), "uses cookies".into()],
            remove_lines: true,
        })
    }

    // From the Debian installation guide (data/demo), with its navigation.
    const PAGE: &str = "Prev Next\n4.2. Downloading Files from Debian Mirrors\nTo find the nearest (and thus probably the fastest) mirror, see the list of Debian mirrors. The list is updated daily.\nWhen downloading files from a Debian mirror using FTP, be sure to download the files in binary mode, not text or automatic mode.\nThe installation images are located in each Debian mirror in the directory debian/dists/bookworm/main/installer-amd64/current/images/. The MANIFEST file lists each image and its purpose.\nThis site uses cookies to remember you.\nEnable JavaScript to see the menu.\nPrev Up Next";

    #[test]
    fn keeps_sentences_and_removes_boilerplate_lines() {
        let out = c4_min(4).check(PAGE);
        assert!(out.fail.is_none(), "{:?}", out.fail);
        let text = out.text.unwrap();
        assert!(text.starts_with("To find the nearest"));
        assert!(
            !text.contains("Prev") && !text.contains("cookies") && !text.contains("JavaScript")
        );
        assert_eq!(out.signals, [5.0, 4.0]);
    }

    #[test]
    fn sentences_are_counted_as_datatrove_counts_them() {
        // `images/. The` is one sentence for spaCy's sentencizer (the full
        // stop stays on the path), so datatrove 0.10.1's C4 filter drops this
        // page with 4 sentences < 5; so does forja.
        let out = c4().check(PAGE);
        assert_eq!(out.fail.map(|f| f.0), Some(Reason::C4TooFewSentences));
    }

    #[test]
    fn document_rules_fail() {
        let few = "Everyone has the right to life, liberty and security of person.";
        assert_eq!(c4().check(few).fail.unwrap().0, Reason::C4TooFewSentences);
        let lorem = format!("{PAGE}\nLorem ipsum dolor sit amet, consectetur adipiscing elit.");
        assert_eq!(c4().check(&lorem).fail.unwrap().0, Reason::C4LoremIpsum);
        let code = "Use the following configuration file for it { a = 1 }.";
        assert_eq!(c4().check(code).fail.unwrap().0, Reason::C4CurlyBracket);
    }

    #[test]
    fn citations_are_removed() {
        assert_eq!(
            remove_citations("Paris is big.[12] Really[citation needed] [x]"),
            "Paris is big. Really [x]"
        );
    }
}
