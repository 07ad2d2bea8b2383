//! Balancing languages: per-language counts into one weighted table.
//!
//! With n_L segment occurrences in language L, the target share is
//! q_L = n_L^alpha / sum n^alpha (alpha = 0: every language alike; 1: as
//! the corpus has them). Instead of drawing a sample with those shares,
//! which would throw text away and add noise, every count of L is scaled by
//! q_L / p_L (p_L its natural share), normalised so the smallest scale is 1:
//! the exact expectation of sampling with replacement, in whole numbers.

use super::words::WordCounts;

/// Distinct words with their weighted counts, in no particular order (the
/// merges do not depend on it; see `bpe`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WordTable<'a> {
    pub words: Vec<(&'a str, u64)>,
    /// The scale applied to each language, for the training summary.
    pub scales: Vec<(String, f64)>,
}

/// The scale of each language for the given alpha.
pub fn language_scales(counts: &WordCounts, alpha: f64) -> Vec<(String, f64)> {
    let sizes: Vec<(String, f64)> = counts
        .langs
        .iter()
        .map(|(l, c)| (l.clone(), c.occurrences() as f64))
        .filter(|(_, n)| *n > 0.0)
        .collect();
    let total: f64 = sizes.iter().map(|(_, n)| n).sum();
    let norm: f64 = sizes.iter().map(|(_, n)| n.powf(alpha)).sum();
    let raw: Vec<(String, f64)> = sizes
        .iter()
        .map(|(l, n)| (l.clone(), (n.powf(alpha) / norm) / (n / total)))
        .collect();
    let min = raw.iter().map(|(_, s)| *s).fold(f64::INFINITY, f64::min);
    raw.into_iter().map(|(l, s)| (l, s / min)).collect()
}

/// Sums the languages' counts, each scaled by its language's scale.
pub fn weighted_table(counts: &WordCounts, alpha: f64) -> WordTable<'_> {
    let scales = language_scales(counts, alpha);
    let mut all: std::collections::HashMap<&str, u64, crate::hash::MixState> = Default::default();
    for (lang, scale) in &scales {
        for (w, &n) in &counts.langs[lang].words {
            let add = if *scale == 1.0 {
                n
            } else {
                (n as f64 * scale).round() as u64
            };
            let e = all.entry(w.as_str()).or_insert(0);
            *e = e.saturating_add(add);
        }
    }
    let words: Vec<(&str, u64)> = all.into_iter().filter(|(_, n)| *n > 0).collect();
    WordTable { words, scales }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::train::{Segmenter, TrainConfig};

    #[test]
    fn alpha_zero_gives_every_language_the_same_weight() {
        let cfg = TrainConfig::default();
        let s = Segmenter::new(&cfg);
        let mut c = WordCounts::default();
        let mut norm = String::new();
        // en has 4 times ca's text.
        for _ in 0..4 {
            c.add(&s, "en", "alpha beta", &mut norm);
        }
        c.add(&s, "ca", "gamma delta", &mut norm);
        let t = weighted_table(&c, 0.0);
        let get = |w: &str| t.words.iter().find(|(x, _)| *x == w).unwrap().1;
        assert_eq!(get("▁alpha"), 4);
        assert_eq!(get("▁gamma"), 4);
        let natural = weighted_table(&c, 1.0);
        let get = |w: &str| natural.words.iter().find(|(x, _)| *x == w).unwrap().1;
        assert_eq!((get("▁alpha"), get("▁gamma")), (4, 1));
        // alpha 0.5: ca's weight is sqrt(4) = 2 times its natural one.
        let half = weighted_table(&c, 0.5);
        let get = |w: &str| half.words.iter().find(|(x, _)| *x == w).unwrap().1;
        assert_eq!((get("▁alpha"), get("▁gamma")), (4, 2));
    }
}
