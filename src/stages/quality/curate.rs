//! A CURATE-style document score in [0, 1], thresholded as Salamandra does.
//!
//! Each line gets one score in [0, 1] per heuristic: how much of it is
//! letters, whether it ends a sentence, how long it is, how much of it is
//! upper case and how much digits. A heuristic's document score is the
//! geometric mean of its line scores, weighted by line length, so a few bad
//! lines in a long document cost little and a document of bad lines scores
//! low; the document's score is the product of the heuristics' scores. The
//! Salamandra model card keeps documents scoring at least 0.8.

use serde::Deserialize;

use crate::ledger::Reason;
use crate::text::{chars, is_terminal};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurateParams {
    /// Documents scoring below this are dropped.
    pub threshold: f64,
    /// Share of letters (and spaces) at which a line scores 1.
    pub letter_ratio: f64,
    /// Score of a line that does not end a sentence.
    pub no_terminal_score: f64,
    /// Characters at which a line's length scores 1.
    pub full_line_chars: usize,
    /// Share of upper-case letters above which a line loses score.
    pub max_upper_ratio: f64,
    /// Share of digits above which a line loses score.
    pub max_digit_ratio: f64,
    /// No line scores below this for any heuristic (keeps log finite).
    pub floor: f64,
}

pub const SIGNALS: [&str; 6] = [
    "curate_score",
    "curate_letters",
    "curate_terminal",
    "curate_length",
    "curate_upper",
    "curate_digits",
];

/// The per-line heuristics, each in [0, 1].
fn line_scores(line: &str, p: &CurateParams) -> [f64; 5] {
    let (mut n, mut letters, mut upper, mut digits) = (0usize, 0usize, 0usize, 0usize);
    for c in line.chars() {
        n += 1;
        if c.is_alphabetic() || c == ' ' {
            letters += 1;
        }
        if c.is_uppercase() {
            upper += 1;
        }
        if c.is_numeric() {
            digits += 1;
        }
    }
    let n = n.max(1) as f64;
    let letter = (letters as f64 / n / p.letter_ratio).min(1.0);
    let terminal = if line
        .trim_end()
        .chars()
        .next_back()
        .is_some_and(|c| is_terminal(c) || c == '"' || c == '»' || c == '”')
    {
        1.0
    } else {
        p.no_terminal_score
    };
    let length = (chars(line) as f64 / p.full_line_chars as f64)
        .min(1.0)
        .sqrt();
    let over = |ratio: f64, max: f64| {
        if ratio <= max {
            1.0
        } else {
            1.0 - (ratio - max) / (1.0 - max)
        }
    };
    let upper = over(upper as f64 / letters.max(1) as f64, p.max_upper_ratio);
    let digit = over(digits as f64 / n, p.max_digit_ratio);
    [letter, terminal, length, upper, digit].map(|s| s.max(p.floor))
}

pub struct Curate {
    p: CurateParams,
}

impl Curate {
    pub fn new(p: CurateParams) -> Self {
        Curate { p }
    }

    pub fn check(&self, text: &str) -> super::Verdict<6> {
        let mut log_sum = [0f64; 5];
        let mut weight = 0f64;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let w = chars(line) as f64;
            for (acc, s) in log_sum.iter_mut().zip(line_scores(line, &self.p)) {
                *acc += w * s.ln();
            }
            weight += w;
        }
        let per: [f64; 5] = if weight == 0.0 {
            [0.0; 5]
        } else {
            log_sum.map(|l| (l / weight).exp())
        };
        let score: f64 = per.iter().product();
        let signals = [score, per[0], per[1], per[2], per[3], per[4]];
        let fail = (score < self.p.threshold).then(|| {
            (
                Reason::CurateLowScore,
                format!("score {score:.3} < {}", self.p.threshold),
            )
        });
        super::Verdict { signals, fail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curate() -> Curate {
        Curate::new(CurateParams {
            threshold: 0.8,
            letter_ratio: 0.8,
            no_terminal_score: 0.6,
            full_line_chars: 40,
            max_upper_ratio: 0.3,
            max_digit_ratio: 0.1,
            floor: 0.01,
        })
    }

    #[test]
    fn prose_scores_high() {
        let t = "Tots els éssers humans neixen lliures i iguals en dignitat i en drets.\nSón dotats de raó i de consciència, i han de comportar-se fraternalment els uns amb els altres.";
        let v = curate().check(t);
        assert!(v.fail.is_none(), "{:?}", v.signals);
        assert!(v.signals[0] > 0.9);
    }

    #[test]
    fn boilerplate_scores_low() {
        let t = "HOME | NEWS | CONTACT\nCopyright 2019-2024 ACME S.L. Tel. 93 123 45 67\nLOGIN";
        let v = curate().check(t);
        assert_eq!(v.fail.unwrap().0, Reason::CurateLowScore);
        assert!(v.signals[0] < 0.5, "{:?}", v.signals);
    }

    #[test]
    fn a_bad_line_in_a_long_document_costs_little() {
        let good = "Everyone has the right to take part in the government of his country, directly or through freely chosen representatives.\n".repeat(10);
        let v = curate().check(&format!("{good}MENU"));
        assert!(v.fail.is_none(), "{:?}", v.signals);
    }
}
