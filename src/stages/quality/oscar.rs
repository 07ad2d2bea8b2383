//! OSCAR / ungoliant document annotations, with ungoliant's defaults.
//!
//! OSCAR labels documents rather than dropping them: `tiny` (few lines),
//! `short_sentences` (mostly short lines), `header` / `footer` (the first /
//! last fifth of the lines mostly short, i.e. boilerplate) and `noisy`
//! (mostly characters that are not letters). Before annotating, short lines
//! at the start and end are trimmed, as ungoliant does. In filter mode a
//! document leaves when it carries one of the `drop` annotations.

use serde::Deserialize;

use crate::ledger::Reason;
use crate::text::chars;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OscarParams {
    /// Fewer lines than this: `tiny`.
    pub tiny_lines: usize,
    /// A line of at most this many characters is short.
    pub short_line_chars: usize,
    /// More than this share of short lines: `short_sentences`.
    pub short_sentences_ratio: f64,
    /// Share of lines at each end looked at for `header` / `footer`.
    pub edge_fraction: f64,
    /// A line under this many bytes counts toward `header` / `footer`.
    pub edge_line_bytes: usize,
    /// More than this share of short edge lines: `header` / `footer`.
    pub edge_ratio: f64,
    /// More than this share of characters that are not letters or marks: `noisy`.
    pub noisy_ratio: f64,
    /// Remove lines shorter than `trim_chars` from both ends first.
    pub trim: bool,
    pub trim_chars: usize,
    /// Annotations that drop a document in filter mode.
    pub drop: Vec<String>,
}

pub const SIGNALS: [&str; 4] = [
    "oscar_lines",
    "oscar_short_line_ratio",
    "oscar_noise_ratio",
    "oscar_trimmed_lines",
];

pub struct OscarOutcome {
    pub signals: [f64; 4],
    /// Comma-separated labels, e.g. `tiny,header`.
    pub annotations: Vec<&'static str>,
    pub fail: Option<(Reason, String)>,
    /// The trimmed text, when trimming removed something.
    pub text: Option<String>,
}

pub struct Oscar {
    p: OscarParams,
}

fn reason(label: &str) -> Reason {
    match label {
        "tiny" => Reason::OscarTiny,
        "short_sentences" => Reason::OscarShortSentences,
        "header" => Reason::OscarHeader,
        "footer" => Reason::OscarFooter,
        _ => Reason::OscarNoisy,
    }
}

pub const LABELS: [&str; 5] = ["tiny", "short_sentences", "header", "footer", "noisy"];

impl Oscar {
    pub fn new(p: OscarParams) -> Self {
        Oscar { p }
    }

    pub fn problems(p: &OscarParams) -> Vec<String> {
        p.drop
            .iter()
            .filter(|d| !LABELS.contains(&d.as_str()))
            .map(|d| format!("oscar.drop: unknown annotation {d:?}, expected one of {LABELS:?}"))
            .collect()
    }

    pub fn check(&self, text: &str) -> OscarOutcome {
        let p = &self.p;
        let all: Vec<&str> = text.lines().collect();
        let (mut start, mut end) = (0, all.len());
        if p.trim {
            while start < end && chars(all[start]) < p.trim_chars {
                start += 1;
            }
            while end > start && chars(all[end - 1]) < p.trim_chars {
                end -= 1;
            }
            // A document of nothing but short lines is not trimmed to nothing.
            if start == end {
                (start, end) = (0, all.len());
            }
        }
        let lines = &all[start..end];
        let trimmed = all.len() - lines.len();
        let n = lines.len().max(1) as f64;
        let short = lines
            .iter()
            .filter(|l| chars(l) <= p.short_line_chars)
            .count() as f64
            / n;
        let edge = ((lines.len() as f64 * p.edge_fraction).ceil() as usize).max(1);
        let edge_short = |ls: &[&str]| {
            ls.iter().filter(|l| l.len() < p.edge_line_bytes).count() as f64
                / ls.len().max(1) as f64
        };
        let head = edge_short(&lines[..edge.min(lines.len())]);
        let tail = edge_short(&lines[lines.len().saturating_sub(edge)..]);
        let (mut letters, mut total) = (0usize, 0usize);
        for c in lines.iter().flat_map(|l| l.chars()) {
            if c.is_whitespace() {
                continue;
            }
            total += 1;
            // Letters and combining marks (is_alphabetic covers both).
            if c.is_alphabetic() {
                letters += 1;
            }
        }
        let noise = if total == 0 {
            1.0
        } else {
            1.0 - letters as f64 / total as f64
        };
        let mut annotations = Vec::new();
        if lines.len() < p.tiny_lines {
            annotations.push("tiny");
        }
        if short > p.short_sentences_ratio {
            annotations.push("short_sentences");
        }
        if head > p.edge_ratio {
            annotations.push("header");
        }
        if tail > p.edge_ratio {
            annotations.push("footer");
        }
        if noise > p.noisy_ratio {
            annotations.push("noisy");
        }
        let fail = annotations
            .iter()
            .find(|a| p.drop.iter().any(|d| d == *a))
            .map(|a| (reason(a), format!("annotated {}", annotations.join(","))));
        OscarOutcome {
            signals: [lines.len() as f64, short, noise, trimmed as f64],
            annotations,
            fail,
            text: (trimmed > 0).then(|| lines.join("\n")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oscar(drop: &[&str]) -> Oscar {
        Oscar::new(OscarParams {
            tiny_lines: 5,
            short_line_chars: 100,
            short_sentences_ratio: 0.5,
            edge_fraction: 0.2,
            edge_line_bytes: 100,
            edge_ratio: 0.5,
            noisy_ratio: 0.5,
            trim: true,
            trim_chars: 30,
            drop: drop.iter().map(|s| s.to_string()).collect(),
        })
    }

    // Paragraphs of the Debian installation guide (data/demo), one per line.
    const GUIDE: [&str; 6] = [
        "If you are installing on a system with an existing operating system, you should shut down that system before you start the installation.",
        "The installer will guide you through partitioning, installing the base system and configuring the boot loader; each step is described in this chapter.",
        "Make sure that you have backed up every file on the hard disk that you want to keep, because partitioning may destroy all data on it.",
        "You need the installation images for your architecture; they can be downloaded from any Debian mirror, as described in the section on mirrors.",
        "When the installer asks for a network configuration, you may choose to configure it automatically with DHCP or to enter the addresses by hand.",
        "After the installation completes, remove the installation media and reboot into your new system, where you can log in with the user you created.",
    ];

    #[test]
    fn clean_prose_has_no_annotation() {
        let out = oscar(&["tiny"]).check(&GUIDE.join("\n"));
        assert!(out.annotations.is_empty(), "{:?}", out.annotations);
        assert!(out.fail.is_none() && out.text.is_none());
    }

    #[test]
    fn navigation_is_trimmed_and_short_documents_are_tiny() {
        let page = format!("Prev\nNext\n{}\n{}\nUp\nHome", GUIDE[0], GUIDE[1]);
        let out = oscar(&["tiny"]).check(&page);
        assert_eq!(out.signals[3], 4.0, "four short edge lines trimmed");
        assert_eq!(
            out.text.as_deref(),
            Some(&*format!("{}\n{}", GUIDE[0], GUIDE[1]))
        );
        assert_eq!(out.annotations, vec!["tiny"]);
        assert_eq!(out.fail.unwrap().0, Reason::OscarTiny);
    }

    #[test]
    fn header_footer_short_sentences_and_noise() {
        let menu = "Inici | Notícies | Contacte | Qui som | Avís legal";
        let mut lines = vec![menu; 4];
        lines.extend(GUIDE);
        lines.extend([menu; 4]);
        let out = oscar(&[]).check(&lines.join("\n").replace(menu, &format!("{menu} ·")));
        assert!(out.annotations.contains(&"header"), "{:?}", out.annotations);
        assert!(out.annotations.contains(&"footer"));
        assert!(out.annotations.contains(&"short_sentences"));
        assert!(out.fail.is_none(), "nothing to drop when `drop` is empty");
        let noise = "4  8 15 16 23 42 -- ## %% 3.14 2.71 ** 100% 0xFF == != <= >= ++ --".repeat(3);
        let out = oscar(&["noisy"]).check(&noise);
        assert_eq!(out.fail.unwrap().0, Reason::OscarNoisy);
    }
}
