//! MinHash signatures over word shingles, and exact Jaccard for verification.
//!
//! Shingles are n-grams (default 5) of lower-cased Unicode words, so the
//! same code serves every language. Each shingle is hashed once with xxh3
//! to 64 bits; the k signature values come from a true universal family
//! `h_i(x) = (a_i x + b_i) mod p`, p = 2^61 - 1, whose modulo is two shifts
//! and an add, so the inner loop is a multiply, a fold and a min.

#[cfg(test)]
use std::collections::HashSet;

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::hash::sequence_key;
#[cfg(test)]
use crate::hash::PassThroughState;

const P: u64 = (1 << 61) - 1;

/// x mod (2^61 - 1) for x < 2^122: two folds of the high bits onto the low
/// ones (2^61 = 1 mod p) and one conditional subtraction.
#[inline(always)]
fn mod_p(x: u128) -> u64 {
    let s = (x as u64 & P) + (x >> 61) as u64; // < 2^62
    let s = (s & P) + (s >> 61); // <= 2^61
    if s >= P {
        s - P
    } else {
        s
    }
}

/// The shingle hashes of a text: xxh3 of each run of `n` words.
pub fn shingles(text: &str, n: usize) -> Vec<u64> {
    let lower = text.to_lowercase();
    let words: Vec<u64> = crate::text::words(&lower)
        .into_iter()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .map(|w| xxh3_64(w.as_bytes()))
        .collect();
    if words.is_empty() {
        return Vec::new();
    }
    let n = n.max(1).min(words.len());
    words.windows(n).map(sequence_key).collect()
}

/// Jaccard similarity of two shingle lists (as sets).
#[cfg(test)]
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    let sa: HashSet<u64, PassThroughState> = a.iter().copied().collect();
    let sb: HashSet<u64, PassThroughState> = b.iter().copied().collect();
    if sa.is_empty() && sb.is_empty() {
        return 1.0;
    }
    let inter = sa.iter().filter(|x| sb.contains(x)).count();
    inter as f64 / (sa.len() + sb.len() - inter) as f64
}

/// Computes signatures with `k` hash functions drawn from `seed`.
#[derive(Debug, Clone)]
pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
}

impl MinHasher {
    /// `k` hash functions drawn from `seed`.
    pub fn new(k: usize, seed: u64) -> Self {
        let draw = |i: u64, salt: u64| xxh3_64_with_seed(&i.to_le_bytes(), seed ^ salt) % P;
        MinHasher {
            // a must be non-zero for a permutation of Z_p.
            a: (0..k as u64).map(|i| draw(i, 0xA).max(1)).collect(),
            b: (0..k as u64).map(|i| draw(i, 0xB)).collect(),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.a.len()
    }

    /// The signature of a set of shingle hashes; all `u64::MAX` for an empty set.
    pub fn signature_of(&self, shingles: &[u64], out: &mut Vec<u64>) {
        out.clear();
        out.resize(self.a.len(), u64::MAX);
        for &s in shingles {
            let x = (s % P) as u128;
            for ((m, &a), &b) in out.iter_mut().zip(&self.a).zip(&self.b) {
                *m = (*m).min(mod_p(a as u128 * x + b as u128));
            }
        }
    }

    /// The signature of a text's `n`-word shingles.
    #[cfg(test)]
    pub fn signature(&self, text: &str, n: usize) -> Vec<u64> {
        let mut out = Vec::new();
        self.signature_of(&shingles(text, n), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mersenne_reduction_is_exact() {
        for x in [
            0u128,
            1,
            P as u128,
            P as u128 + 5,
            (P as u128) * (P as u128) - 1,
            u64::MAX as u128 * 3,
        ] {
            assert_eq!(mod_p(x) as u128, x % P as u128, "{x}");
        }
    }

    #[test]
    fn signature_agreement_estimates_jaccard() {
        let a = "Everyone has the right to education. Education shall be free, at least in the elementary and fundamental stages. Elementary education shall be compulsory. Technical and professional education shall be made generally available and higher education shall be equally accessible to all on the basis of merit.";
        let b = a
            .replace("compulsory", "obligatory")
            .replace("higher education", "university education");
        let m = MinHasher::new(256, 7);
        let (sa, sb) = (m.signature(a, 5), m.signature(&b, 5));
        let est = sa.iter().zip(&sb).filter(|(x, y)| x == y).count() as f64 / 256.0;
        let truth = jaccard(&shingles(a, 5), &shingles(&b, 5));
        assert!((est - truth).abs() < 0.1, "estimate {est} vs {truth}");
        assert_eq!(m.signature(a, 5), sa, "deterministic");
        assert!(
            jaccard(
                &shingles(a, 5),
                &shingles("Unrelated words entirely here now.", 5)
            ) < 0.01
        );
    }
}
