//! Text to counted segments, the trainer's input.
//!
//! A *segment* is a stretch of normalized text that a piece may lie within;
//! no piece can cross from one segment to the next. Cutting the text there
//! (instead of only at spaces, as SentencePiece does) gives the same merges
//! with far fewer distinct words: `▁word,` and `▁word.` both count
//! `▁word`. Cuts fall:
//! - before a `▁` that does not continue a run of `▁` (a space starts a word);
//! - on both sides of a digit (with `split_digits`);
//! - between two characters of different Unicode scripts (with
//!   `split_by_unicode_script`; Hiragana and Katakana count as Han, and a
//!   leading `▁` belongs to the word it starts);
//! - around every whitespace-run piece and user-defined piece, which are
//!   kept whole and never learned from.
//!
//! How a run of spaces, tabs or newlines splits into run pieces follows the
//! run merges' ranks exactly as the BPE encoder will apply them
//! ([`RunSplitter`]), so training sees the text the encoder will see.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};
use unicode_script::{Script, UnicodeScript};

use super::{TrainConfig, TrainError, SPACE};
use crate::hash::MixState;

/// Classes of characters, for the cut rules.
const C_SPACE: u16 = 0;
const C_DIGIT: u16 = 1;
/// Letters and symbols when scripts are not told apart.
const C_ANY: u16 = 2;
const C_SCRIPT: u16 = 3;
/// Combining marks, ZWNJ and ZWJ (Unicode script Inherited): SentencePiece
/// lets them join a piece of any one script (`می‌شود`, `ab́c`), though
/// never bridge two scripts; see [`may_join`] and `bpe::Rules::join`.
pub const C_INHERITED: u16 = 0xFFFF;

/// The class of `c` for the cut rules (and for piece validity in the trainer).
pub fn char_class(c: char, split_digits: bool, by_script: bool) -> u16 {
    if c == SPACE {
        return C_SPACE;
    }
    if split_digits && c.is_ascii_digit() {
        return C_DIGIT;
    }
    if !by_script {
        return C_ANY;
    }
    match SCRIPTS.get_or_init(script_table).get(c as usize) {
        Some(&s) => s,
        None => script_class(c),
    }
}

/// Script classes of the first code points, looked up instead of searched:
/// the Latin, Greek and Cyrillic text of European languages never leaves it.
static SCRIPTS: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();

fn script_table() -> Vec<u16> {
    (0..0x3100u32)
        .map(|u| char::from_u32(u).map_or(C_ANY, script_class))
        .collect()
}

fn script_class(c: char) -> u16 {
    let s = match c.script() {
        Script::Inherited => return C_INHERITED,
        Script::Hiragana | Script::Katakana => Script::Han,
        _ if c == '\u{30FC}' => Script::Han,
        s => s,
    };
    C_SCRIPT + s as u16
}

/// True if a piece may contain the class-`a` character followed by the
/// class-`b` one (a necessary condition; the trainer checks whole pieces:
/// a mark between two scripts joins neither cut, so none is made there).
fn may_join(a: u16, b: u16, allow_ws_only: bool) -> bool {
    match (a, b) {
        (C_SPACE, C_SPACE) => allow_ws_only,
        (_, C_SPACE) => false,
        (C_DIGIT, _) | (_, C_DIGIT) => false,
        (C_SPACE, _) => true,
        (C_INHERITED, _) | (_, C_INHERITED) => true,
        (a, b) => a == b,
    }
}

/// How runs of one character split into run pieces: by the run merges'
/// ranks, as a BPE encoder applies them (lowest rank first, leftmost first).
#[derive(Debug, Clone)]
pub struct RunSplitter {
    /// (left, right) lengths → (rank, joined length).
    rank: HashMap<(usize, usize), (usize, usize)>,
    /// Splits of short runs, computed once.
    cache: Vec<Vec<u16>>,
}

impl RunSplitter {
    pub fn new(max: usize) -> Self {
        let rank = run_merge_order(max)
            .into_iter()
            .enumerate()
            .map(|(r, len)| (run_merge(len), (r, len)))
            .collect();
        let mut s = RunSplitter {
            rank,
            cache: Vec::new(),
        };
        s.cache = (0..=64).map(|n| s.simulate(n)).collect();
        s
    }

    /// Piece lengths of a run of `n` characters, left to right.
    pub fn split(&self, n: usize) -> std::borrow::Cow<'_, [u16]> {
        match self.cache.get(n) {
            Some(v) => std::borrow::Cow::Borrowed(v),
            None => std::borrow::Cow::Owned(self.simulate(n)),
        }
    }

    /// BPE on a run of `n` ones with the run merges.
    fn simulate(&self, n: usize) -> Vec<u16> {
        let mut pieces = vec![1usize; n];
        loop {
            let best = pieces
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| self.rank.get(&(w[0], w[1])).map(|&(r, len)| (r, i, len)))
                .min();
            let Some((_, i, len)) = best else { break };
            pieces[i] = len;
            pieces.remove(i + 1);
        }
        pieces.into_iter().map(|p| p as u16).collect()
    }
}

/// The merge that makes a run of `n` (2 ≤ n ≤ max): halves for powers of
/// two, else (n minus its lowest set bit, the lowest set bit).
pub fn run_merge(n: usize) -> (usize, usize) {
    let low = n & n.wrapping_neg();
    if low == n {
        (n / 2, n / 2)
    } else {
        (n - low, low)
    }
}

/// The run merges for runs up to `max`, in rank order: powers of two
/// first, shortest first, so a run first becomes its binary digits; then
/// the rest with the longer left part first, so those digits join from the
/// left. Any run up to `max` thus ends as one piece.
pub fn run_merge_order(max: usize) -> Vec<usize> {
    let mut powers: Vec<usize> = (2..=max).filter(|n| n.is_power_of_two()).collect();
    let mut rest: Vec<usize> = (2..=max).filter(|n| !n.is_power_of_two()).collect();
    rest.sort_by_key(|&n| (std::cmp::Reverse(run_merge(n).0), n));
    powers.append(&mut rest);
    powers
}

/// Normalizes text and cuts it into segments.
#[derive(Debug, Clone)]
pub struct Segmenter {
    nfc: bool,
    dummy_prefix: bool,
    split_digits: bool,
    by_script: bool,
    allow_ws_only: bool,
    /// (character in normalized form, splitter) for each whitespace run.
    runs: Vec<(char, RunSplitter)>,
    /// Single characters kept whole (user-defined pieces of one character).
    barriers: Vec<char>,
}

impl Segmenter {
    pub fn new(cfg: &TrainConfig) -> Self {
        Segmenter {
            nfc: cfg.nfc,
            dummy_prefix: cfg.add_dummy_prefix,
            split_digits: cfg.split_digits,
            by_script: cfg.split_by_unicode_script,
            allow_ws_only: cfg.allow_whitespace_only_pieces,
            runs: cfg
                .normalized_runs()
                .map(|(c, max)| (c, RunSplitter::new(max)))
                .collect(),
            barriers: cfg
                .user_defined
                .iter()
                .filter_map(|p| {
                    let mut cs = p.chars();
                    match (cs.next(), cs.next()) {
                        (Some(c), None) => Some(c),
                        _ => None,
                    }
                })
                .collect(),
        }
    }

    /// The text as the tokenizer's normalizer leaves it: NFC, a leading
    /// `▁` (when not empty), every space as `▁`.
    pub fn normalize(&self, text: &str, out: &mut String) {
        out.clear();
        if text.is_empty() {
            return;
        }
        if self.dummy_prefix {
            out.push(SPACE);
        }
        if self.nfc && !text.is_ascii() && is_nfc_quick(text.chars()) != IsNormalized::Yes {
            text.nfc()
                .for_each(|c| out.push(if c == ' ' { SPACE } else { c }));
        } else {
            let mut last = 0;
            for i in memchr::memchr_iter(b' ', text.as_bytes()) {
                out.push_str(&text[last..i]);
                out.push(SPACE);
                last = i + 1;
            }
            out.push_str(&text[last..]);
        }
    }

    /// Calls `f` with every segment of the normalized text `norm`.
    pub fn segments<'a>(&self, norm: &'a str, mut f: impl FnMut(&'a str)) {
        let mut start = 0usize;
        let mut prev: Option<u16> = None;
        let mut it = norm.char_indices().peekable();
        while let Some((i, c)) = it.next() {
            if let Some((_, split)) = self.runs.iter().find(|(r, _)| *r == c) {
                if it.peek().is_some_and(|&(_, d)| d == c) {
                    // A run: count it, then walk its pieces.
                    let mut n = 1;
                    let mut end = i + c.len_utf8();
                    while let Some(&(j, d)) = it.peek() {
                        if d != c {
                            break;
                        }
                        n += 1;
                        end = j + d.len_utf8();
                        it.next();
                    }
                    let w = c.len_utf8();
                    let mut at = i;
                    for &len in split.split(n).iter() {
                        let len = len as usize;
                        if len == 1 {
                            self.step(norm, at, c, &mut start, &mut prev, &mut f);
                        } else {
                            skip(norm, at, at + len * w, &mut start, &mut prev, &mut f);
                        }
                        at += len * w;
                    }
                    debug_assert_eq!(at, end);
                    continue;
                }
            }
            if self.barriers.contains(&c) {
                skip(norm, i, i + c.len_utf8(), &mut start, &mut prev, &mut f);
                continue;
            }
            self.step(norm, i, c, &mut start, &mut prev, &mut f);
        }
        if start < norm.len() {
            f(&norm[start..]);
        }
    }

    /// One ordinary character at byte `i`: cut before it if no piece may
    /// join it to the one before.
    fn step<'a>(
        &self,
        norm: &'a str,
        i: usize,
        c: char,
        start: &mut usize,
        prev: &mut Option<u16>,
        f: &mut impl FnMut(&'a str),
    ) {
        let class = char_class(c, self.split_digits, self.by_script);
        if let Some(p) = *prev {
            if !may_join(p, class, self.allow_ws_only) && *start < i {
                f(&norm[*start..i]);
                *start = i;
            }
        }
        *prev = Some(class);
    }
}

/// A piece kept whole at `from..to`: ends the segment before it, and the
/// next one starts after it.
fn skip<'a>(
    norm: &'a str,
    from: usize,
    to: usize,
    start: &mut usize,
    prev: &mut Option<u16>,
    f: &mut impl FnMut(&'a str),
) {
    if *start < from {
        f(&norm[*start..from]);
    }
    *start = to;
    *prev = None;
}

/// Normalizes `text` and cuts it into segments (a convenience for tests
/// and tools; the counter reuses its buffers).
#[cfg(test)]
pub fn segment(text: &str, cfg: &TrainConfig) -> Vec<String> {
    let s = Segmenter::new(cfg);
    let mut norm = String::new();
    s.normalize(text, &mut norm);
    let mut out = Vec::new();
    s.segments(&norm, |w| out.push(w.to_string()));
    out
}

/// Bytes a [`Word`] holds inline.
const INLINE: usize = 22;

/// A counted segment: its bytes inline when they fit (nearly every
/// segment), boxed otherwise. Counting is bound by cache misses in the
/// table; an inline key is compared where the table keeps it, without a
/// second miss on a heap string, and inserting it allocates nothing.
/// Lookups go by the segment's bytes (`Borrow<[u8]>`).
#[derive(Clone, PartialEq, Eq)]
pub enum Word {
    /// Length, then the bytes (the rest zero).
    Inline(u8, [u8; INLINE]),
    /// Longer segments.
    Boxed(Box<str>),
}

impl Word {
    /// The segment `w` as a key (inline when it fits, so each text has one form).
    pub fn new(w: &str) -> Self {
        if w.len() <= INLINE {
            let mut b = [0u8; INLINE];
            b[..w.len()].copy_from_slice(w.as_bytes());
            Word::Inline(w.len() as u8, b)
        } else {
            Word::Boxed(w.into())
        }
    }

    /// The segment's UTF-8 bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Word::Inline(n, b) => &b[..*n as usize],
            Word::Boxed(s) => s.as_bytes(),
        }
    }

    /// The segment as text.
    pub fn as_str(&self) -> &str {
        match self {
            Word::Inline(..) => {
                std::str::from_utf8(self.as_bytes()).expect("made from a str whole")
            }
            Word::Boxed(s) => s,
        }
    }
}

impl std::hash::Hash for Word {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        // As `[u8]` hashes, so lookups by bytes find it.
        self.as_bytes().hash(h)
    }
}

impl std::borrow::Borrow<[u8]> for Word {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialOrd for Word {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Word {
    /// Byte order, which is the order of the texts.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(o.as_bytes())
    }
}

impl std::fmt::Debug for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// Segment counts of one language.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LangCounts {
    pub words: HashMap<Word, u64, MixState>,
    pub docs: u64,
    /// UTF-8 bytes of the documents as read.
    pub bytes: u64,
}

impl LangCounts {
    /// Segment occurrences in all.
    pub fn occurrences(&self) -> u64 {
        self.words.values().sum()
    }
}

/// Segment counts per language. Counts from any split of the corpus add up
/// ([`WordCounts::merge`]) to the counts of the whole, whatever the order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WordCounts {
    /// Per language: its words and their counts.
    pub langs: BTreeMap<String, LangCounts>,
}

/// Magic bytes of a counts file.
const MAGIC: &[u8; 8] = b"FORJAWC1";

impl WordCounts {
    /// Counts the segments of one document.
    pub fn add(&mut self, seg: &Segmenter, lang: &str, text: &str, norm: &mut String) {
        let lc = match self.langs.get_mut(lang) {
            Some(l) => l,
            None => self.langs.entry(lang.to_string()).or_default(),
        };
        lc.docs += 1;
        lc.bytes += text.len() as u64;
        seg.normalize(text, norm);
        seg.segments(norm, |w| match lc.words.get_mut(w.as_bytes()) {
            Some(n) => *n += 1,
            None => {
                lc.words.insert(Word::new(w), 1);
            }
        });
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: WordCounts) {
        for (lang, oc) in other.langs {
            match self.langs.get_mut(&lang) {
                None => {
                    self.langs.insert(lang, oc);
                }
                Some(lc) => {
                    lc.docs += oc.docs;
                    lc.bytes += oc.bytes;
                    // Insert the smaller map's words into the larger one.
                    let mut small = oc.words;
                    if lc.words.len() < small.len() {
                        std::mem::swap(&mut lc.words, &mut small);
                    }
                    for (w, n) in small {
                        *lc.words.entry(w).or_insert(0) += n;
                    }
                }
            }
        }
    }

    /// Documents counted.
    pub fn docs(&self) -> u64 {
        self.langs.values().map(|l| l.docs).sum()
    }

    /// Distinct words, over every language.
    pub fn distinct(&self) -> usize {
        self.langs.values().map(|l| l.words.len()).sum()
    }

    /// Writes the counts (zstd; languages and words sorted, so the same
    /// counts give the same bytes).
    pub fn write_to(&self, w: impl Write) -> std::io::Result<()> {
        let mut z = zstd::Encoder::new(w, 3)?;
        z.write_all(MAGIC)?;
        put(&mut z, self.langs.len() as u64)?;
        for (lang, lc) in &self.langs {
            put_bytes(&mut z, lang.as_bytes())?;
            put(&mut z, lc.docs)?;
            put(&mut z, lc.bytes)?;
            put(&mut z, lc.words.len() as u64)?;
            let mut words: Vec<(&Word, &u64)> = lc.words.iter().collect();
            words.sort_unstable();
            for (word, n) in words {
                put_bytes(&mut z, word.as_bytes())?;
                put(&mut z, *n)?;
            }
        }
        z.finish()?.flush()
    }

    /// Reads a counts file written by [`WordCounts::write_to`].
    pub fn read_file(path: &std::path::Path) -> Result<Self, TrainError> {
        let f = std::fs::File::open(path).map_err(|e| TrainError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::read_from(std::io::BufReader::new(f), &path.display().to_string())
    }

    /// Reads counts written by [`WordCounts::write_to`]; `path` names the
    /// file in errors.
    pub fn read_from(r: impl Read, path: &str) -> Result<Self, TrainError> {
        let bad = |m: String| TrainError::Format {
            path: path.into(),
            message: m,
        };
        let io = |e: std::io::Error| bad(format!("not a complete word-counts file ({e})"));
        let mut z = zstd::Decoder::new(r).map_err(io)?;
        let mut magic = [0u8; 8];
        z.read_exact(&mut magic).map_err(io)?;
        if &magic != MAGIC {
            return Err(bad("not a forja word-counts file".into()));
        }
        let mut out = WordCounts::default();
        let langs = get(&mut z).map_err(io)?;
        for _ in 0..langs {
            let lang = String::from_utf8(get_bytes(&mut z).map_err(io)?)
                .map_err(|_| bad("a language name is not UTF-8".into()))?;
            let docs = get(&mut z).map_err(io)?;
            let bytes = get(&mut z).map_err(io)?;
            let n = get(&mut z).map_err(io)?;
            // The count is a hint only: a damaged file cannot reserve more
            // than the words it holds.
            let hint = (n as usize).min(1 << 20);
            let mut words = HashMap::with_capacity_and_hasher(hint, MixState::default());
            for _ in 0..n {
                let w = String::from_utf8(get_bytes(&mut z).map_err(io)?)
                    .map_err(|_| bad("a word is not UTF-8".into()))?;
                words.insert(Word::new(&w), get(&mut z).map_err(io)?);
            }
            out.langs.insert(lang, LangCounts { words, docs, bytes });
        }
        Ok(out)
    }
}

fn put(w: &mut impl Write, v: u64) -> std::io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

fn put_bytes(w: &mut impl Write, b: &[u8]) -> std::io::Result<()> {
    put(w, b.len() as u64)?;
    w.write_all(b)
}

fn get(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn get_bytes(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let n = get(r)?;
    if n > 1 << 30 {
        return Err(std::io::Error::other("a length field is implausibly large"));
    }
    // Grown as bytes arrive: a length field alone allocates nothing.
    let mut b = Vec::new();
    r.by_ref().take(n).read_to_end(&mut b)?;
    if b.len() as u64 != n {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(text: &str) -> Vec<String> {
        segment(text, &TrainConfig::default())
    }

    #[test]
    fn cuts_at_spaces_digits_scripts_and_punctuation() {
        assert_eq!(
            segs("Hello, world 2024 Καλημέρα!"),
            [
                "▁Hello",
                ",",
                "▁world",
                "▁",
                "2",
                "0",
                "2",
                "4",
                "▁Καλημέρα",
                "!"
            ]
        );
    }

    #[test]
    fn marks_keep_their_neighbours_in_one_segment() {
        // ZWNJ inside a Persian word, and a mark between two scripts: a
        // piece may hold the mark with either side, so no cut is safe there.
        assert_eq!(segs("می\u{200c}شود"), ["▁می\u{200c}شود"]);
        assert_eq!(segs("b\u{301}д"), ["▁b\u{301}д"]);
        assert_eq!(segs("bд"), ["▁b", "д"]);
        assert_eq!(segs("1\u{301}"), ["▁", "1", "\u{301}"]);
    }

    #[test]
    fn whitespace_runs_are_pieces_and_leave_the_rest() {
        // Three spaces: the dummy prefix is not involved in the middle.
        assert_eq!(segs("a   b"), ["▁a", "b"]);
        // 25 spaces: a 24-piece, then the last space starts the word.
        let t = format!("a{}b", " ".repeat(25));
        assert_eq!(segs(&t), ["▁a", "▁b"]);
        // Two newlines are a piece; one newline joins punctuation.
        assert_eq!(segs("x.\n\ny.\nz"), ["▁x", ".", "y", ".\n", "z"]);
        // \r is kept whole.
        assert_eq!(segs("a\r\nb"), ["▁a", "\n", "b"]);
    }

    #[test]
    fn runs_end_as_one_piece_up_to_their_maximum() {
        let r = RunSplitter::new(24);
        for n in 2..=24 {
            assert_eq!(r.split(n).as_ref(), [n as u16], "run of {n}");
        }
        assert_eq!(r.split(25).as_ref(), [24, 1]);
        let t = RunSplitter::new(6);
        assert_eq!(t.split(7).as_ref(), [6, 1]);
        assert_eq!(t.split(1).as_ref(), [1]);
    }

    #[test]
    fn nfc_and_dummy_prefix() {
        assert_eq!(segs("e\u{301}te\u{301}"), ["▁été"]);
        let cfg = TrainConfig {
            add_dummy_prefix: false,
            ..TrainConfig::default()
        };
        assert_eq!(segment("ab cd", &cfg), ["ab", "▁cd"]);
        assert!(segs("").is_empty());
    }

    #[test]
    fn counts_merge_and_survive_a_round_trip() {
        let cfg = TrainConfig::default();
        let s = Segmenter::new(&cfg);
        let mut norm = String::new();
        let mut a = WordCounts::default();
        a.add(&s, "en", "the cat the dog", &mut norm);
        let mut b = WordCounts::default();
        b.add(&s, "en", "the end", &mut norm);
        b.add(&s, "ca", "el gat", &mut norm);
        let mut whole = WordCounts::default();
        for (l, t) in [
            ("en", "the cat the dog"),
            ("en", "the end"),
            ("ca", "el gat"),
        ] {
            whole.add(&s, l, t, &mut norm);
        }
        a.merge(b);
        assert_eq!(a, whole);
        assert_eq!(a.langs["en"].words["▁the".as_bytes()], 3);
        let mut buf = Vec::new();
        a.write_to(&mut buf).unwrap();
        let back = WordCounts::read_from(&buf[..], "x").unwrap();
        assert_eq!(back, a);
        let err = WordCounts::read_from(&buf[..buf.len() / 2], "half.wc").unwrap_err();
        assert!(err.to_string().contains("half.wc"), "{err}");
    }

    #[test]
    fn short_and_long_words_are_found_by_their_bytes_and_sort_as_text() {
        let long = "▁Menschenrechtserklärungen";
        assert!(long.len() > INLINE);
        let mut m: HashMap<Word, u64, MixState> = HashMap::default();
        for w in ["▁a", long, "▁b", long] {
            *m.entry(Word::new(w)).or_insert(0) += 1;
        }
        assert_eq!(m[long.as_bytes()], 2);
        assert_eq!(m["▁a".as_bytes()], 1);
        assert!(matches!(Word::new(long), Word::Boxed(_)));
        assert_eq!(Word::new(long).as_str(), long);
        let mut v = [Word::new("▁b"), Word::new(long), Word::new("▁a")];
        v.sort();
        let texts: Vec<&str> = v.iter().map(Word::as_str).collect();
        assert_eq!(texts, ["▁Menschenrechtserklärungen", "▁a", "▁b"]);
    }

    #[test]
    fn a_length_field_alone_reserves_nothing() {
        // A word said to be 1 GiB long, followed by three bytes.
        let mut b = Vec::new();
        put(&mut b, 1 << 30).unwrap();
        b.extend_from_slice(b"abc");
        let e = get_bytes(&mut b.as_slice()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
