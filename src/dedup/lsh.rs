//! Banding of MinHash signatures (LSH) and near-duplicate clustering.
//!
//! A signature of `bands x rows` values is cut into bands; documents whose
//! band values are all equal in some band are candidates. Candidates are
//! optionally verified by exact Jaccard over their shingles, which removes
//! the false positives banding lets through, and joined in a union-find.
//! This in-memory form clusters one task's documents; the phased form
//! writes the same band keys to bucket files.

#[cfg(test)]
use std::collections::HashMap;

use xxhash_rust::xxh3::xxh3_64_with_seed;

#[cfg(test)]
use super::minhash::{jaccard, MinHasher};
#[cfg(test)]
use super::union_find::UnionFind;
#[cfg(test)]
use crate::hash::PassThroughState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Banding {
    pub bands: usize,
    pub rows: usize,
}

impl Banding {
    /// FineWeb's: 14 bands of 8 rows, 112 hashes.
    #[cfg(test)]
    pub const FINEWEB: Banding = Banding { bands: 14, rows: 8 };

    pub fn hashes(&self) -> usize {
        self.bands * self.rows
    }

    /// The key of each band of a signature (band index in the seed, so equal
    /// values in different bands do not meet).
    pub fn keys<'a>(&'a self, sig: &'a [u64]) -> impl Iterator<Item = u64> + 'a {
        sig.chunks(self.rows)
            .take(self.bands)
            .enumerate()
            .map(|(b, rows)| band_key(rows, b as u64))
    }

    /// Band keys with the band index in their top bits, so that sorting keys
    /// sorts by band first (what `keep = datatrove` replays); the hash keeps
    /// the remaining 60 or so bits.
    pub fn ordered_keys<'a>(&'a self, sig: &'a [u64]) -> impl Iterator<Item = u64> + 'a {
        let bits = usize::BITS - (self.bands.max(2) - 1).leading_zeros();
        self.keys(sig)
            .enumerate()
            .map(move |(b, k)| ((b as u64) << (64 - bits)) | (k >> bits))
    }
}

/// xxh3 of a band's values as little-endian bytes, seeded with the band
/// index. Called bands-times per document, so up to 32 rows stay on the stack.
fn band_key(rows: &[u64], band: u64) -> u64 {
    let mut stack = [0u8; 256];
    let mut heap = Vec::new();
    let bytes: &mut [u8] = if rows.len() * 8 <= stack.len() {
        &mut stack[..rows.len() * 8]
    } else {
        heap.resize(rows.len() * 8, 0);
        &mut heap
    };
    for (chunk, v) in bytes.chunks_exact_mut(8).zip(rows) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    xxh3_64_with_seed(bytes, band)
}

/// Every pair of documents that share a band key (the LSH candidates),
/// as (earlier, later) indices: the tests' reference.
#[cfg(test)]
pub fn candidate_pairs(
    docs: &[Vec<u64>],
    hasher: &MinHasher,
    banding: Banding,
) -> std::collections::HashSet<(u32, u32)> {
    let mut buckets: HashMap<(usize, u64), Vec<u32>> = HashMap::new();
    let mut sig = Vec::new();
    for (i, sh) in docs.iter().enumerate() {
        if sh.is_empty() {
            continue;
        }
        hasher.signature_of(sh, &mut sig);
        for (b, key) in banding.keys(&sig).enumerate() {
            buckets.entry((b, key)).or_default().push(i as u32);
        }
    }
    let mut pairs = std::collections::HashSet::new();
    for members in buckets.values() {
        for (x, &a) in members.iter().enumerate() {
            for &b in &members[x + 1..] {
                pairs.insert((a.min(b), a.max(b)));
            }
        }
    }
    pairs
}

/// What in-memory clustering found.
#[cfg(test)]
pub struct Clusters {
    pub sets: UnionFind,
}

/// Clusters documents given as shingle-hash lists, in memory: the tests'
/// reference for the phased steps.
///
/// With `verify = Some(t)`, a candidate pair is joined only if its exact
/// Jaccard is at least `t`; each document is compared with the members of
/// its buckets, earliest first, until one passes (`max_checks` at most).
#[cfg(test)]
pub fn cluster(
    docs: &[Vec<u64>],
    hasher: &MinHasher,
    banding: Banding,
    verify: Option<f64>,
    max_checks: usize,
) -> Clusters {
    assert_eq!(
        hasher.len(),
        banding.hashes(),
        "signature length = bands x rows"
    );
    let mut buckets: Vec<HashMap<u64, Vec<u32>, PassThroughState>> =
        (0..banding.bands).map(|_| HashMap::default()).collect();
    let mut sets = UnionFind::new(docs.len());
    let mut sig = Vec::new();
    for (i, sh) in docs.iter().enumerate() {
        if sh.is_empty() {
            continue;
        }
        hasher.signature_of(sh, &mut sig);
        let i = i as u32;
        let mut checks = 0;
        for (b, key) in banding.keys(&sig).enumerate() {
            let members = buckets[b].entry(key).or_default();
            for &j in members.iter() {
                if sets.find(j) == sets.find(i) {
                    continue;
                }
                let ok = match verify {
                    None => true,
                    Some(t) => {
                        if checks >= max_checks {
                            continue;
                        }
                        checks += 1;
                        jaccard(&docs[j as usize], sh) >= t
                    }
                };
                if ok {
                    sets.union(i, j);
                }
            }
            members.push(i);
        }
    }
    Clusters { sets }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::minhash::shingles;
    use super::*;
    use std::collections::{BTreeMap, HashSet};
    use std::io::BufRead;
    use std::path::Path;

    /// Real documents of the demo corpus: each UDHR translation whole, the
    /// installation guide's pages, the licence texts.
    pub(crate) fn real_documents() -> Vec<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo");
        let mut docs = Vec::new();
        let udhr = zstd::decode_all(std::fs::File::open(root.join("udhr/udhr.jsonl.zst")).unwrap())
            .unwrap();
        let mut by_lang: BTreeMap<String, String> = BTreeMap::new();
        for line in udhr.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            let e = by_lang
                .entry(v["lang"].as_str().unwrap().to_string())
                .or_default();
            e.push_str(v["text"].as_str().unwrap());
            e.push_str("\n\n");
        }
        docs.extend(by_lang.into_values());
        for lang in ["ca", "es", "en"] {
            let f =
                std::fs::File::open(root.join(format!("install-guide/{lang}.jsonl.gz"))).unwrap();
            for line in std::io::BufReader::new(flate2::read::GzDecoder::new(f)).lines() {
                let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
                docs.push(v["text"].as_str().unwrap().to_string());
            }
        }
        for e in std::fs::read_dir(root.join("licenses")).unwrap() {
            docs.push(std::fs::read_to_string(e.unwrap().path()).unwrap());
        }
        docs.retain(|d| d.split_whitespace().count() >= 60);
        docs
    }

    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub(crate) fn next(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Edited copies: a few percent of words swapped, deleted or inserted,
    /// or a header and footer added.
    pub(crate) fn variants(doc: &str, rng: &mut Rng) -> Vec<String> {
        let words: Vec<&str> = doc.split(' ').collect();
        let edits = (words.len() / 50).max(1);
        let mut swapped = words.clone();
        for _ in 0..edits {
            let i = rng.next(swapped.len() - 1);
            swapped.swap(i, i + 1);
        }
        let mut deleted = words.clone();
        for _ in 0..edits {
            let i = rng.next(deleted.len());
            deleted.remove(i);
        }
        let mut inserted = words.clone();
        for _ in 0..edits {
            let i = rng.next(inserted.len());
            let w = words[rng.next(words.len())];
            inserted.insert(i, w);
        }
        vec![
            swapped.join(" "),
            deleted.join(" "),
            inserted.join(" "),
            format!("Home | News | Contact | Search\n{doc}\nCopyright 2024. All rights reserved. Cookie settings."),
        ]
    }

    #[test]
    fn recall_and_precision_on_edited_real_text() {
        let base = real_documents();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut texts = Vec::new();
        for d in &base {
            texts.push(d.clone());
            texts.extend(variants(d, &mut rng));
        }
        let docs: Vec<Vec<u64>> = texts.iter().map(|t| shingles(t, 5)).collect();
        // Ground truth: exact Jaccard of every pair that shares a shingle.
        let mut index: HashMap<u64, Vec<u32>> = HashMap::new();
        for (i, d) in docs.iter().enumerate() {
            let mut seen = HashSet::new();
            for &s in d {
                if seen.insert(s) {
                    index.entry(s).or_default().push(i as u32);
                }
            }
        }
        let mut truth = HashSet::new();
        let mut below = HashSet::new();
        for (i, d) in docs.iter().enumerate() {
            let mut cands = HashSet::new();
            for s in d {
                cands.extend(index[s].iter().copied().filter(|&j| (j as usize) > i));
            }
            for j in cands {
                let pair = (i as u32, j);
                if jaccard(d, &docs[j as usize]) >= 0.8 {
                    truth.insert(pair);
                } else {
                    below.insert(pair);
                }
            }
        }
        let mut results = Vec::new();
        for banding in [Banding::FINEWEB, Banding { bands: 20, rows: 5 }] {
            let hasher = MinHasher::new(banding.hashes(), 1);
            // Pairwise, as an LSH index is queried: candidates, then verified.
            let cands = candidate_pairs(&docs, &hasher, banding);
            let hit = cands.iter().filter(|p| truth.contains(p)).count();
            let raw_precision = hit as f64 / cands.len().max(1) as f64;
            let verified: HashSet<(u32, u32)> = cands
                .iter()
                .copied()
                .filter(|&(a, b)| jaccard(&docs[a as usize], &docs[b as usize]) >= 0.8)
                .collect();
            let recall =
                verified.iter().filter(|p| truth.contains(p)).count() as f64 / truth.len() as f64;
            let precision = verified.iter().filter(|p| truth.contains(p)).count() as f64
                / verified.len().max(1) as f64;
            // Clustered: a pair counts when both land in one cluster.
            let mut c = cluster(&docs, &hasher, banding, Some(0.8), 64);
            let clustered = truth
                .iter()
                .filter(|(a, b)| c.sets.find(*a) == c.sets.find(*b))
                .count() as f64
                / truth.len() as f64;
            println!(
                "{}x{}: {} documents, {} pairs with Jaccard >= 0.8, {} candidates; pairwise recall \
                 {recall:.4}, precision {raw_precision:.4} before verification, {precision:.4} after; \
                 recall through clusters {clustered:.4}",
                banding.bands,
                banding.rows,
                docs.len(),
                truth.len(),
                cands.len()
            );
            results.push((recall, precision, clustered));
        }
        assert!(
            truth.len() > 1000,
            "the set has near duplicates: {}",
            truth.len()
        );
        let (fw_recall, fw_precision, fw_clustered) = results[0];
        let (r20_recall, r20_precision, _) = results[1];
        // Verification by exact Jaccard leaves no false positive.
        assert_eq!(fw_precision, 1.0);
        assert_eq!(r20_precision, 1.0);
        // 14x8 finds a pair at exactly J = 0.8 with probability 0.92, so pairs
        // near the threshold are missed; clustering recovers most of them.
        assert!(
            fw_recall >= 0.95 && fw_clustered >= 0.98,
            "{fw_recall} {fw_clustered}"
        );
        // 20x5 finds a pair at J = 0.8 with probability 0.9997.
        assert!(r20_recall >= 0.999, "20x5 recall {r20_recall}");
    }
}
