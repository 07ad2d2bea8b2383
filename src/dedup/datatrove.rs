//! MinHash signatures exactly as datatrove 0.10 computes them, so that a
//! near-dup run can be compared with (or continue) a datatrove one.
//!
//! datatrove's `MinhashDedupSignature` with its default config:
//! 1. `simplify_text`: lower case, every run of digits (with one decimal
//!    separator) to `0`, a fixed punctuation set to spaces, whitespace runs
//!    to one space, NFD with the non-spacing marks (Mn) removed;
//! 2. its English word tokenizer, spaCy's blank English pipeline;
//! 3. word 5-grams joined by one space, hashed with xxh64 (seed 0); a text
//!    with fewer words than that has no shingle and no signature;
//! 4. `h_i(x) = (x * a_i + b_i) mod (2^61 - 1)` in numpy uint64 arithmetic,
//!    where the product and the sum wrap at 2^64 before the modulo, with
//!    `a`, `b` drawn by `np.random.RandomState(seed).randint`.
//!
//! spaCy is reproduced only as far as text that went through step 1 needs:
//! split on spaces, then per word its special cases (contractions written
//! without apostrophe, from `filters/dedup/`), its prefix and suffix
//! characters that step 1 leaves, number + unit suffixes, and symbols
//! (Unicode So) split out as infixes. Python's and Rust's Unicode tables can
//! differ on characters newer than either; that is the only known source of
//! disagreement, and `tests/cli/dedup.rs` measures it against datatrove.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

use crate::text::spacy::{is_symbol, split_affixes};
use unicode_normalization::UnicodeNormalization;
use xxhash_rust::xxh64::xxh64;

const P: u64 = (1 << 61) - 1;

/// datatrove's `PUNCTUATION` (besides the control characters, added in
/// `is_punctuation`), each replaced by a space.
const PUNCTUATION: &str = "!/\u{2014}\u{201d}:\u{ff05}\u{ff11}\u{3008}&(\u{3001}\u{2501}\\\u{3010}#%\u{300c}\u{300d}\u{ff0c}\u{3011}\u{ff1b}+^]~\u{201c}\u{300a}\u{201e}';\u{2019}{|\u{2236}\u{b4}[=-`*\u{ff0e}\u{ff08}\u{2013}\u{ff1f}\u{ff01}\u{ff1a}$\u{ff5e}\u{ab}\u{3009},><\u{300b})?\u{ff09}\u{3002}\u{2026}@_.\"}\u{25ba}\u{bb}";

fn is_punctuation(c: char) -> bool {
    matches!(c as u32, 0..=8 | 11..=12 | 13..=31 | 127..=159) || PUNCTUATION.contains(c)
}

/// spaCy English prefix characters that survive simplification (symbols
/// are matched by category instead).
const PREFIX: &str = "\u{a1}\u{a3}\u{a5}\u{a7}\u{b7}\u{bf}\u{60c}\u{61b}\u{61f}\u{66a}\u{6d4}\u{964}\u{e3f}\u{2018}\u{201a}\u{20a0}\u{20a1}\u{20a2}\u{20a3}\u{20a4}\u{20a5}\u{20a6}\u{20a7}\u{20a8}\u{20a9}\u{20aa}\u{20ab}\u{20ac}\u{20ad}\u{20ae}\u{20af}\u{20b0}\u{20b1}\u{20b2}\u{20b3}\u{20b4}\u{20b5}\u{20b6}\u{20b7}\u{20b8}\u{20b9}\u{20ba}\u{20bb}\u{20bc}\u{20bd}\u{20be}\u{20bf}\u{2329}\u{232a}\u{27e6}\u{27e7}\u{300e}\u{300f}\u{3014}\u{3015}\u{fdfc}";
/// The same for suffixes.
const SUFFIX: &str = "\u{a1}\u{b7}\u{bf}\u{60c}\u{61b}\u{61f}\u{66a}\u{6d4}\u{964}\u{2018}\u{201a}\u{2329}\u{232a}\u{27e6}\u{27e7}\u{300e}\u{300f}\u{3014}\u{3015}";
/// Suffixes spaCy splits off only after an ASCII digit: currencies and
/// units (those that lower-cased text can hold; `тбكم` is spaCy's own
/// typo, kept because it matches as written).
const AFTER_DIGIT: &[&str] = &[
    "\u{a3}",
    "\u{20ac}",
    "\u{a5}",
    "\u{e3f}",
    "\u{20bd}",
    "\u{fdfc}",
    "\u{20b4}",
    "\u{20a0}",
    "\u{20a1}",
    "\u{20a2}",
    "\u{20a3}",
    "\u{20a4}",
    "\u{20a5}",
    "\u{20a6}",
    "\u{20a7}",
    "\u{20a8}",
    "\u{20a9}",
    "\u{20aa}",
    "\u{20ab}",
    "\u{20ad}",
    "\u{20ae}",
    "\u{20af}",
    "\u{20b0}",
    "\u{20b1}",
    "\u{20b2}",
    "\u{20b3}",
    "\u{20b5}",
    "\u{20b6}",
    "\u{20b7}",
    "\u{20b8}",
    "\u{20b9}",
    "\u{20ba}",
    "\u{20bb}",
    "\u{20bc}",
    "\u{20be}",
    "\u{20bf}",
    "km",
    "km²",
    "km³",
    "m",
    "m²",
    "m³",
    "dm",
    "dm²",
    "dm³",
    "cm",
    "cm²",
    "cm³",
    "mm",
    "mm²",
    "mm³",
    "ha",
    "µm",
    "nm",
    "yd",
    "in",
    "ft",
    "kg",
    "g",
    "mg",
    "µg",
    "t",
    "lb",
    "oz",
    "kmh",
    "mph",
    "mbar",
    "mb",
    "kb",
    "gb",
    "tb",
    "км",
    "км²",
    "км³",
    "м",
    "м²",
    "м³",
    "дм",
    "дм²",
    "дм³",
    "см",
    "см²",
    "см³",
    "мм",
    "мм²",
    "мм³",
    "нм",
    "кг",
    "г",
    "мг",
    "мбар",
    "кб",
    "мб",
    "гб",
    "тбكم",
    "كم²",
    "كم³",
    "م",
    "م²",
    "م³",
    "سم",
    "سم²",
    "سم³",
    "مم",
    "مم²",
    "مم³",
    "كم",
    "غرام",
    "جرام",
    "جم",
    "كغ",
    "ملغ",
    "كوب",
    "اكواب",
];

const SPECIAL_CASES: &str = include_str!("../../filters/dedup/datatrove-en-special-cases.tsv");

struct Tables {
    numbers: Regex,
    marks: Regex,
    special: HashMap<&'static str, Vec<&'static str>>,
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| Tables {
        numbers: Regex::new(r"\p{Nd}+(?:[.,،٫⎖⎗⎘]\p{Nd}+)?").expect("valid pattern"),
        marks: Regex::new(r"\p{Mn}+").expect("valid pattern"),
        special: SPECIAL_CASES
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k, v.split(' ').collect()))
            .collect(),
    })
}

/// datatrove's `simplify_text` with its default `TextNormConfig`.
pub fn simplify(text: &str) -> String {
    let t = tables();
    let lower = text.to_lowercase();
    let numbered = t.numbers.replace_all(&lower, "0");
    let mut spaced = String::with_capacity(numbered.len());
    for word in numbered
        .split(|c: char| c.is_whitespace() || is_punctuation(c))
        .filter(|w| !w.is_empty())
    {
        if !spaced.is_empty() {
            spaced.push(' ');
        }
        spaced.push_str(word);
    }
    let nfd: String = spaced.nfd().collect();
    t.marks.replace_all(&nfd, "").trim().to_string()
}

/// True if `c` splits off as a prefix or suffix: one of `set` (which holds
/// no ASCII character) or a symbol.
fn splits_off(set: &str, c: char) -> bool {
    !c.is_ascii() && (set.contains(c) || is_symbol(c))
}

fn prefix_len(s: &str) -> usize {
    match s.chars().next() {
        Some(c) if splits_off(PREFIX, c) => c.len_utf8(),
        _ => 0,
    }
}

/// Length of the suffix spaCy's `suffix_search` finds: the match that
/// starts leftmost wins, as in a regex search.
fn suffix_len(s: &str) -> usize {
    for (i, c) in s.char_indices() {
        let rest = &s[i..];
        if rest.len() == c.len_utf8() && splits_off(SUFFIX, c) {
            return rest.len();
        }
        let after_digit = s[..i].ends_with(|p: char| p.is_ascii_digit());
        if after_digit && AFTER_DIGIT.contains(&rest) {
            return rest.len();
        }
    }
    0
}

/// Tokens of one space-free chunk, in spaCy's order: special case, or
/// prefixes, infix-split middle, suffixes.
fn tokenize_chunk<'a>(s: &'a str, out: &mut Vec<&'a str>) {
    let special = &tables().special;
    let (prefixes, s, suffixes) =
        split_affixes(s, |t| special.contains_key(t), prefix_len, suffix_len);
    out.extend(prefixes);
    if let Some(parts) = special.get(s) {
        out.extend(parts.iter().copied());
    } else if !s.is_empty() {
        // Symbols split the rest, except one at its very start.
        let mut start = 0;
        for (i, c) in s.char_indices() {
            if i == 0 || !is_symbol(c) {
                continue;
            }
            if i != start {
                out.push(&s[start..i]);
            }
            out.push(&s[i..i + c.len_utf8()]);
            start = i + c.len_utf8();
        }
        if start < s.len() {
            out.push(&s[start..]);
        }
    }
    out.extend(suffixes.into_iter().rev());
}

/// The words of a simplified text, as datatrove's English tokenizer gives them.
pub fn words(simplified: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for chunk in simplified.split(' ').filter(|c| !c.is_empty()) {
        tokenize_chunk(chunk, &mut out);
    }
    out
}

/// xxh64 of every `n` consecutive words joined by a space; none for a text
/// of fewer than `n` words.
pub fn shingles(text: &str, n: usize) -> Vec<u64> {
    let simple = simplify(text);
    let w = words(&simple);
    let mut joined = String::new();
    w.windows(n.max(1))
        .map(|g| {
            joined.clear();
            for (i, x) in g.iter().enumerate() {
                if i > 0 {
                    joined.push(' ');
                }
                joined.push_str(x);
            }
            xxh64(joined.as_bytes(), 0)
        })
        .collect()
}

/// numpy's legacy `RandomState`: MT19937 seeded with `init_genrand`.
struct Mt19937 {
    mt: [u32; 624],
    i: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Self {
        let mut mt = [0u32; 624];
        mt[0] = seed;
        for i in 1..624 {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { mt, i: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.i >= 624 {
            for k in 0..624 {
                let y = (self.mt[k] & 0x8000_0000) | (self.mt[(k + 1) % 624] & 0x7fff_ffff);
                let mut v = self.mt[(k + 397) % 624] ^ (y >> 1);
                if y & 1 == 1 {
                    v ^= 0x9908_b0df;
                }
                self.mt[k] = v;
            }
            self.i = 0;
        }
        let mut y = self.mt[self.i];
        self.i += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        (hi << 32) | self.next_u32() as u64
    }

    /// `randint(low, high, dtype=np.uint64)` for a range wider than 32
    /// bits: masked rejection sampling, as numpy's legacy generator does.
    fn randint(&mut self, low: u64, high: u64) -> u64 {
        let range = high - 1 - low;
        let mask = u64::MAX >> range.leading_zeros();
        loop {
            let v = self.next_u64() & mask;
            if v <= range {
                return low + v;
            }
        }
    }
}

/// datatrove's hash family for `k` functions from `seed`.
#[derive(Debug, Clone)]
pub struct Hasher {
    a: Vec<u64>,
    b: Vec<u64>,
}

impl Hasher {
    pub fn new(k: usize, seed: u32) -> Self {
        let mut rng = Mt19937::new(seed);
        let a = (0..k).map(|_| rng.randint(1, P)).collect();
        let b = (0..k).map(|_| rng.randint(0, P)).collect();
        Hasher { a, b }
    }

    pub fn signature_of(&self, shingles: &[u64], out: &mut Vec<u64>) {
        out.clear();
        out.resize(self.a.len(), u64::MAX);
        for &s in shingles {
            for ((m, &a), &b) in out.iter_mut().zip(&self.a).zip(&self.b) {
                *m = (*m).min(s.wrapping_mul(a).wrapping_add(b) % P);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affix_sets_hold_no_ascii() {
        // splits_off relies on it to skip ASCII characters.
        assert!(PREFIX.chars().chain(SUFFIX.chars()).all(|c| !c.is_ascii()));
    }

    #[test]
    fn hash_parameters_are_numpys() {
        // np.random.RandomState(1).randint(1, 2**61-1, dtype=np.uint64, size=4),
        // then randint(0, 2**61-1, ...), printed by numpy 1.26.
        let h = Hasher::new(4, 1);
        assert_eq!(
            h.a,
            [
                775169054918279404,
                1758426461858698313,
                2109959069025162,
                965365488286768774
            ]
        );
        assert_eq!(
            h.b,
            [
                401325382989534144,
                1703346441743126657,
                1130051441076870727,
                1762784241922636284
            ]
        );
    }

    #[test]
    fn simplify_matches_datatrove_rules() {
        assert_eq!(
            simplify("  Hello, WORLD!\tÇa coûte 3,50 € — 12 ans\n"),
            "hello world ca coute 0 € 0 ans"
        );
        // Apostrophes become spaces; contractions typed without one (and
        // abbreviations like ID) reach the tokenizer whole.
        assert_eq!(simplify("I'd say: don't, ID"), "i d say don t id");
    }

    #[test]
    fn tokenizer_splits_as_spacy_english() {
        assert_eq!(words("id say dont"), ["i", "d", "say", "do", "nt"]);
        assert_eq!(words("¿que tal"), ["¿", "que", "tal"]);
        assert_eq!(words("0gb 0km² 0x"), ["0", "gb", "0", "km²", "0x"]);
        assert_eq!(words("‘stop· a©b"), ["‘", "stop", "·", "a", "©", "b"]);
        assert_eq!(words("ima cannot"), ["i", "m", "a", "can", "not"]);
    }

    #[test]
    fn short_texts_have_no_shingle() {
        assert!(shingles("one two three four", 5).is_empty());
        assert_eq!(shingles("one two three four five", 5).len(), 1);
        assert_eq!(
            shingles("one two three four five", 5)[0],
            xxh64(b"one two three four five", 0)
        );
    }
}

#[cfg(test)]
mod crosscheck {
    use super::*;

    /// Compares with the signatures datatrove wrote in `scripts/bench-dedup`:
    /// `FORJA_DT_BENCH=bench/dedup cargo test --release -- --ignored datatrove_bench`.
    #[test]
    #[ignore]
    fn datatrove_bench_signatures() {
        let dir = std::env::var("FORJA_DT_BENCH").expect("FORJA_DT_BENCH");
        // All 14 buckets of 8 hashes, keyed by document index.
        let mut theirs: HashMap<u32, Vec<u64>> = HashMap::new();
        for b in 0..14 {
            let path = format!("{dir}/datatrove/signatures/bucket_{b:03}/00000.minhash.sig");
            for r in std::fs::read(path).unwrap().chunks_exact(68) {
                let doc = u32::from_le_bytes(r[64..68].try_into().unwrap());
                let v = theirs.entry(doc).or_default();
                v.extend(
                    (0..8).map(|i| u64::from_le_bytes(r[i * 8..i * 8 + 8].try_into().unwrap())),
                );
            }
        }
        let h = Hasher::new(112, 1);
        let mut files: Vec<_> = std::fs::read_dir(format!("{dir}/corpus"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        files.sort();
        let (mut idx, mut bad, mut out) = (0u32, 0, Vec::new());
        for f in files {
            for line in std::fs::read_to_string(f).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let text = v["text"].as_str().unwrap();
                let sh = shingles(text, 5);
                let mine = (!sh.is_empty()).then(|| {
                    h.signature_of(&sh, &mut out);
                    out.clone()
                });
                if mine.as_ref() != theirs.get(&idx) {
                    bad += 1;
                    if bad <= 20 {
                        eprintln!("MISMATCH {idx}: {text}");
                    }
                }
                idx += 1;
            }
        }
        eprintln!("{bad} of {idx} documents differ");
        assert_eq!(bad, 0);
    }
}
