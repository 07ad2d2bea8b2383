//! Accuracy and speed of a language-ID backend on labelled text.
//!
//! `forja eval-lid` reads `lang<TAB>text` lines (newlines in the text
//! written as `\n`), identifies each text with the same document rule the
//! `lid` stage applies, and reports accuracy per language, the macro
//! average, the worst language, what each language was mistaken for, how
//! well the document's `lang_score` is calibrated (expected calibration
//! error over ten bins), and documents and megabytes per second on one
//! thread.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::{document_language, Identify};

pub struct Sample {
    pub lang: String,
    pub text: String,
}

/// Reads `lang<TAB>text` lines; `\n` in the text stands for a newline.
pub fn read_samples(path: &Path) -> Result<Vec<Sample>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let (lang, t) = l
                .split_once('\t')
                .ok_or_else(|| format!("{}:{}: no tab", path.display(), i + 1))?;
            Ok(Sample {
                lang: lang.to_string(),
                text: t.replace("\\n", "\n"),
            })
        })
        .collect()
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct LangResult {
    pub total: u64,
    pub correct: u64,
    pub unidentified: u64,
    /// What it was taken for, when wrong.
    pub confused_with: BTreeMap<String, u64>,
}

/// Documents whose `lang_score` fell in one tenth of [0, 1].
#[derive(Debug, Default, Clone, Serialize)]
pub struct ScoreBin {
    /// Identified documents in the bin.
    pub documents: u64,
    /// Their mean `lang_score`.
    pub mean_score: f64,
    /// The share of them identified correctly.
    pub accuracy: f64,
}

/// How well `lang_score` predicts a right answer.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Calibration {
    /// Ten bins of `lang_score`, lowest first.
    pub bins: Vec<ScoreBin>,
    /// Expected calibration error: the documents' mean gap between score
    /// and accuracy over the bins (0 is perfectly calibrated).
    pub ece: f64,
    /// Wrong answers.
    pub wrong: u64,
    /// Wrong answers that scored 0.99 or more.
    pub wrong_scored_high: u64,
    /// Mean score of the right answers.
    pub mean_right: f64,
    /// Mean score of the wrong answers (0 if none).
    pub mean_wrong: f64,
}

impl Calibration {
    fn of(scored: &[(f64, bool)]) -> Calibration {
        let mut sums = [(0u64, 0.0f64, 0u64); 10];
        for &(score, right) in scored {
            let b = ((score.clamp(0.0, 1.0) * 10.0) as usize).min(9);
            sums[b].0 += 1;
            sums[b].1 += score;
            sums[b].2 += u64::from(right);
        }
        let n = scored.len().max(1) as f64;
        let bins: Vec<ScoreBin> = sums
            .iter()
            .map(|&(d, s, r)| ScoreBin {
                documents: d,
                mean_score: s / d.max(1) as f64,
                accuracy: r as f64 / d.max(1) as f64,
            })
            .collect();
        let ece = bins
            .iter()
            .map(|b| b.documents as f64 / n * (b.accuracy - b.mean_score).abs())
            .sum();
        let wrong = scored.iter().filter(|s| !s.1).count() as u64;
        let wrong_scored_high = scored.iter().filter(|s| !s.1 && s.0 >= 0.99).count() as u64;
        let mean = |right: bool| {
            let (n, sum) = scored
                .iter()
                .filter(|s| s.1 == right)
                .fold((0usize, 0.0), |(n, sum), s| (n + 1, sum + s.0));
            sum / n.max(1) as f64
        };
        Calibration {
            bins,
            ece,
            wrong,
            wrong_scored_high,
            mean_right: mean(true),
            mean_wrong: mean(false),
        }
    }
}

/// How a language identifier did on labelled text.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// How well `lang_score` (the document's score, as the `lid` stage
    /// writes it) tells right answers from wrong ones.
    pub calibration: Calibration,
    /// Per language: documents, correct ones and confusions.
    pub languages: BTreeMap<String, LangResult>,
    /// Documents evaluated.
    pub documents: u64,
    /// Bytes of text evaluated.
    pub bytes: u64,
    /// Seconds spent identifying (one thread).
    pub seconds: f64,
}

impl Report {
    /// The share of a language's documents identified correctly.
    pub fn accuracy(r: &LangResult) -> f64 {
        r.correct as f64 / r.total.max(1) as f64
    }

    /// The mean of the languages' accuracies.
    pub fn macro_accuracy(&self) -> f64 {
        let n = self.languages.len().max(1) as f64;
        self.languages.values().map(Self::accuracy).sum::<f64>() / n
    }

    /// The language with the lowest accuracy.
    pub fn worst(&self) -> Option<(&str, f64)> {
        self.languages
            .iter()
            .map(|(l, r)| (l.as_str(), Self::accuracy(r)))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)))
    }
}

/// Identifies every sample with `backend` (lines below `line_threshold`
/// count as unidentified) and tallies the results per language.
pub fn evaluate(
    backend: &dyn Identify,
    samples: &[Sample],
    line_threshold: f64,
    min_line_letters: usize,
) -> Report {
    let mut languages: BTreeMap<String, LangResult> = BTreeMap::new();
    let start = Instant::now();
    let mut bytes = 0u64;
    let mut scored = Vec::with_capacity(samples.len());
    for s in samples {
        bytes += s.text.len() as u64;
        let got = document_language(backend, &s.text, line_threshold, min_line_letters, 1);
        let r = languages.entry(s.lang.clone()).or_default();
        r.total += 1;
        match got {
            Some(g) if g.lang == s.lang => {
                r.correct += 1;
                scored.push((g.score, true));
            }
            Some(g) => {
                *r.confused_with.entry(g.lang).or_default() += 1;
                scored.push((g.score, false));
            }
            None => r.unidentified += 1,
        }
    }
    Report {
        calibration: Calibration::of(&scored),
        languages,
        documents: samples.len() as u64,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lid::WhatlangLid;

    #[test]
    fn counts_hits_misses_and_unidentified() {
        let samples = vec![
            Sample {
                lang: "en".into(),
                text: "All human beings are born free and equal in dignity and rights.".into(),
            },
            Sample {
                lang: "gl".into(),
                text: "Toda persoa ten dereito á vida, á liberdade e á seguridade da súa persoa."
                    .into(),
            },
            Sample {
                lang: "en".into(),
                text: "12345".into(),
            },
        ];
        let r = evaluate(&WhatlangLid, &samples, 0.0, 10);
        assert_eq!(r.languages["en"].total, 2);
        assert_eq!(r.languages["en"].correct, 1);
        assert_eq!(r.languages["en"].unidentified, 1);
        // whatlang has no Galician: it must be taken for something else.
        assert_eq!(r.languages["gl"].correct, 0);
        assert_eq!(r.worst().unwrap().0, "gl");
        assert!((r.macro_accuracy() - 0.25).abs() < 1e-9);
    }

    #[test]
    fn calibration_bins_scores_and_measures_the_gap() {
        // Scores of 0.95 right half the time: a gap of 0.45 on half the
        // documents; scores of 0.55 right half the time: a gap of 0.05.
        let scored = [(0.95, true), (0.95, false), (0.55, true), (0.55, false)];
        let c = Calibration::of(&scored);
        assert_eq!(c.bins[9].documents, 2);
        assert_eq!(c.bins[5].documents, 2);
        assert!(
            (c.ece - (0.5 * 0.45 + 0.5 * 0.05)).abs() < 1e-9,
            "{}",
            c.ece
        );
        assert_eq!((c.wrong, c.wrong_scored_high), (2, 0));
        assert!((c.mean_right - 0.75).abs() < 1e-9 && (c.mean_wrong - 0.75).abs() < 1e-9);
        let perfect = Calibration::of(&[(1.0, true), (1.0, true)]);
        assert_eq!(perfect.ece, 0.0);
    }
}
