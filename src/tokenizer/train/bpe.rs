//! The BPE merge loop on the CPU.
//!
//! Pair counts are kept up to date as merges rewrite words (only the words
//! that hold the merged pair are touched), and an indexed binary heap gives
//! the best pair in O(log pairs) after each change, so no merge recounts
//! the corpus. Counts are u64. Memory grows with the distinct words: their
//! symbols, plus for each live pair its count and the words it was seen in
//! (a list that may hold stale entries, checked when used).
//!
//! **Ties.** The pair merged next is the one with the highest count; among
//! equal counts, the one whose left symbol has the smaller id, then the
//! smaller right id. Symbol ids are fixed by the data alone (the alphabet
//! sorted by frequency, then by code point; each merge's symbol takes the
//! next id), so the merges do not depend on word order, thread count or
//! how the counts were split across tasks. The GPU trainer uses the same rule.

use std::collections::HashMap;

use super::heap::IndexedHeap;
use super::weights::WordTable;
use super::words::{char_class, C_INHERITED};
use super::{TrainConfig, TrainError, SPACE};
use crate::hash::MixState;

/// What the merge loop learned.
#[derive(Debug, Clone, PartialEq)]
pub struct Merges {
    /// Symbol strings: the alphabet (most frequent first), then one per merge.
    pub pieces: Vec<String>,
    /// How many of `pieces` are single characters.
    pub alphabet_len: usize,
    /// Each merge's (left, right) symbol ids, in order; merge i makes
    /// symbol `alphabet_len + i`.
    pub merges: Vec<(u32, u32)>,
    /// The pair's (weighted) count when it was merged.
    pub counts: Vec<u64>,
}

/// What a symbol's string allows when it is joined to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymInfo {
    /// Length in characters.
    pub len: u16,
    /// The script class of its characters other than `▁`.
    pub class: u16,
    pub starts_ws: bool,
    pub all_ws: bool,
    pub digit: bool,
}

/// The rules a piece obeys, as SentencePiece's trainer has them.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub max_len: usize,
    pub split_digits: bool,
    pub by_script: bool,
    pub allow_ws_only: bool,
}

impl Rules {
    pub fn new(cfg: &TrainConfig) -> Self {
        Rules {
            max_len: cfg.max_piece_length,
            split_digits: cfg.split_digits,
            by_script: cfg.split_by_unicode_script,
            allow_ws_only: cfg.allow_whitespace_only_pieces,
        }
    }

    pub fn char_info(&self, c: char) -> SymInfo {
        let ws = c == SPACE;
        SymInfo {
            len: 1,
            class: char_class(c, self.split_digits, self.by_script),
            starts_ws: ws,
            all_ws: ws,
            digit: self.split_digits && c.is_ascii_digit(),
        }
    }

    /// The joined symbol's info if `a` then `b` may form a piece: a digit
    /// stays alone, `▁` only starts a piece (or fills it, when
    /// whitespace-only pieces are allowed), one script per piece, at most
    /// `max_len` characters.
    pub fn join(&self, a: SymInfo, b: SymInfo) -> Option<SymInfo> {
        if a.len as usize + b.len as usize > self.max_len || a.digit || b.digit {
            return None;
        }
        let len = a.len + b.len;
        if b.starts_ws {
            return (self.allow_ws_only && a.all_ws && b.all_ws).then_some(SymInfo { len, ..a });
        }
        if a.all_ws {
            return (a.len == 1).then_some(SymInfo {
                len,
                class: b.class,
                starts_ws: true,
                all_ws: false,
                digit: false,
            });
        }
        // Marks take the script of what they join; two scripts never meet.
        let class = match (a.class, b.class) {
            (x, C_INHERITED) => x,
            (C_INHERITED, y) => y,
            (x, y) if x == y => x,
            _ => return None,
        };
        Some(SymInfo { len, class, ..a })
    }
}

#[inline]
pub fn pair_key(a: u32, b: u32) -> u64 {
    (a as u64) << 32 | b as u64
}

/// The alphabet: characters by weighted frequency (most frequent first,
/// then by code point) until `coverage` of all occurrences, plus `required`.
pub fn alphabet(table: &WordTable, coverage: f64, required: &[char]) -> Vec<char> {
    let mut freq: HashMap<char, u64, MixState> = HashMap::default();
    for (w, n) in &table.words {
        for c in w.chars() {
            *freq.entry(c).or_insert(0) += n;
        }
    }
    let mut chars: Vec<(char, u64)> = freq.into_iter().collect();
    chars.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: u128 = chars.iter().map(|(_, n)| *n as u128).sum();
    let mut kept = Vec::new();
    let mut acc: u128 = 0;
    for &(c, n) in &chars {
        if kept.is_empty() || (acc as f64) < coverage * total as f64 {
            kept.push(c);
            acc += n as u128;
        } else if required.contains(&c) {
            kept.push(c);
        }
    }
    for &c in required {
        if !kept.contains(&c) {
            kept.push(c);
        }
    }
    kept
}

/// Words as symbol ids, flattened; merges rewrite them in place.
#[derive(Default)]
pub struct SymbolTable {
    pub syms: Vec<u32>,
    pub start: Vec<usize>,
    pub len: Vec<u32>,
    pub count: Vec<u64>,
}

/// Maps words to symbols; an out-of-alphabet character splits the word
/// (no piece can hold it: byte fallback encodes it). One-symbol words are
/// left out, having no pairs.
pub fn symbol_table(table: &WordTable, alpha: &[char]) -> SymbolTable {
    // Ids of the first code points by index, the rest by hash.
    const DIRECT: usize = 0x3100;
    let mut direct = vec![u32::MAX; DIRECT];
    let mut other: HashMap<char, u32, MixState> = HashMap::default();
    for (i, &c) in alpha.iter().enumerate() {
        match direct.get_mut(c as usize) {
            Some(d) => *d = i as u32,
            None => {
                other.insert(c, i as u32);
            }
        }
    }
    let id = |c: char| match direct.get(c as usize) {
        Some(&u32::MAX) => None,
        Some(&i) => Some(i),
        None => other.get(&c).copied(),
    };
    let mut t = SymbolTable {
        syms: Vec::new(),
        start: Vec::new(),
        len: Vec::new(),
        count: Vec::new(),
    };
    let mut cur: Vec<u32> = Vec::new();
    let flush = |cur: &mut Vec<u32>, n: u64, t: &mut SymbolTable| {
        if cur.len() > 1 {
            t.start.push(t.syms.len());
            t.len.push(cur.len() as u32);
            t.count.push(n);
            t.syms.extend_from_slice(cur);
        }
        cur.clear();
    };
    for (w, n) in &table.words {
        for c in w.chars() {
            match id(c) {
                Some(s) => cur.push(s),
                None => flush(&mut cur, *n, &mut t),
            }
        }
        flush(&mut cur, *n, &mut t);
    }
    t
}

/// Number of merges that fill the vocabulary for this alphabet.
pub fn merges_wanted(cfg: &TrainConfig, alphabet_len: usize) -> usize {
    cfg.vocab_size
        .saturating_sub(cfg.fixed_len() + alphabet_len)
}

/// The characters every vocabulary needs: those the whitespace runs are
/// made of, and `▁`.
pub fn required_chars(cfg: &TrainConfig) -> Vec<char> {
    let mut v = vec![SPACE];
    for (c, _) in cfg.normalized_runs() {
        if !v.contains(&c) {
            v.push(c);
        }
    }
    v
}

/// What both merge loops (the CPU's below, the GPU's in `cuda`) start from
/// and record their merges into.
pub struct Learner {
    pub words: SymbolTable,
    pub rules: Rules,
    /// Every symbol's info: the alphabet's, then one per merge.
    pub info: Vec<SymInfo>,
    /// Merges that fill the vocabulary.
    pub want: usize,
    /// A best pair counted fewer times ends the training.
    pub min: u64,
    pub learned: Merges,
}

impl Learner {
    /// The alphabet and the words as symbols.
    pub fn new(table: &WordTable, cfg: &TrainConfig) -> Self {
        let t = std::time::Instant::now();
        let alpha = alphabet(table, cfg.character_coverage, &required_chars(cfg));
        let words = symbol_table(table, &alpha);
        tracing::debug!(
            "bpe: {} characters, {} words with pairs ({:.2}s)",
            alpha.len(),
            words.len.len(),
            t.elapsed().as_secs_f64()
        );
        let rules = Rules::new(cfg);
        Learner {
            info: alpha.iter().map(|&c| rules.char_info(c)).collect(),
            want: merges_wanted(cfg, alpha.len()),
            min: cfg.min_frequency.max(1),
            learned: Merges {
                pieces: alpha.iter().map(|c| c.to_string()).collect(),
                alphabet_len: alpha.len(),
                merges: Vec::new(),
                counts: Vec::new(),
            },
            words,
            rules,
        }
    }

    /// True once the vocabulary is full.
    pub fn full(&self) -> bool {
        self.learned.merges.len() >= self.want
    }

    /// Records the merge of `a` and `b`, a pair counted `count` times;
    /// returns the new symbol and its info, or None if the rules forbid it.
    pub fn record(&mut self, a: u32, b: u32, count: u64) -> Option<(u32, SymInfo)> {
        let joined = self
            .rules
            .join(self.info[a as usize], self.info[b as usize])?;
        let new = self.info.len() as u32;
        self.info.push(joined);
        let m = &mut self.learned;
        let piece = format!("{}{}", m.pieces[a as usize], m.pieces[b as usize]);
        m.pieces.push(piece);
        m.merges.push((a, b));
        m.counts.push(count);
        Some((new, joined))
    }
}

/// Learns merges on `table` until the vocabulary is full or no pair is
/// left with `min_frequency`.
pub fn train_bpe(table: &WordTable, cfg: &TrainConfig) -> Result<Merges, TrainError> {
    merge_loop(Learner::new(table, cfg))
}

/// Live pair counts: each valid pair's count, the words it was seen in
/// (stale entries allowed, checked when used), and the pairs whose counts
/// changed since the heap last saw them.
#[derive(Default)]
struct Pairs {
    index: HashMap<u64, u32, MixState>,
    keys: Vec<u64>,
    counts: Vec<u64>,
    words: Vec<Vec<u32>>,
    dirty: Vec<bool>,
    touched: Vec<u32>,
}

impl Pairs {
    fn touch(&mut self, p: usize) {
        if !self.dirty[p] {
            self.dirty[p] = true;
            self.touched.push(p as u32);
        }
    }

    /// Adds `n` occurrences of the valid pair (a, b), seen in word `w`.
    fn add(&mut self, a: u32, b: u32, n: u64, w: u32) {
        let key = pair_key(a, b);
        let p = match self.index.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => *e.get() as usize,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(self.keys.len() as u32);
                self.keys.push(key);
                self.counts.push(0);
                self.words.push(Vec::new());
                self.dirty.push(false);
                self.keys.len() - 1
            }
        };
        self.counts[p] += n;
        if self.words[p].last() != Some(&w) {
            self.words[p].push(w);
        }
        self.touch(p);
    }

    /// Removes `n` occurrences of (a, b), if it is a counted pair.
    fn sub(&mut self, a: u32, b: u32, n: u64) {
        if let Some(&p) = self.index.get(&pair_key(a, b)) {
            self.counts[p as usize] -= n;
            self.touch(p as usize);
        }
    }

    /// Moves every changed pair to its place in the heap.
    fn flush(&mut self, heap: &mut IndexedHeap) {
        for p in self.touched.drain(..) {
            self.dirty[p as usize] = false;
            heap.update(p, self.counts[p as usize], self.keys[p as usize]);
        }
    }
}

/// Rewrites each (a, b) of one word (`n` occurrences, id `w`) into `new`,
/// left to right, moving the counts of the pairs around it; returns the
/// word's new length. The GPU's `apply_merge` kernel does the same.
fn merge_word(
    seq: &mut [u32],
    w: u32,
    n: u64,
    (a, b, new): (u32, u32, u32),
    pairs: &mut Pairs,
    rules: &Rules,
    info: &[SymInfo],
) -> usize {
    let valid = |x: u32, y: u32| rules.join(info[x as usize], info[y as usize]).is_some();
    let l = seq.len();
    let (mut r, mut o) = (0usize, 0usize);
    while r < l {
        if r + 1 < l && seq[r] == a && seq[r + 1] == b {
            // `seq[o - 1]` is the left neighbour as already rewritten.
            if o > 0 {
                pairs.sub(seq[o - 1], a, n);
            }
            pairs.sub(a, b, n);
            if r + 2 < l {
                pairs.sub(b, seq[r + 2], n);
            }
            seq[o] = new;
            if o > 0 && valid(seq[o - 1], new) {
                pairs.add(seq[o - 1], new, n, w);
            }
            if r + 2 < l && valid(new, seq[r + 2]) {
                pairs.add(new, seq[r + 2], n, w);
            }
            o += 1;
            r += 2;
        } else {
            seq[o] = seq[r];
            o += 1;
            r += 1;
        }
    }
    o
}

/// Words packed for the loop: word `w` sits at offset `w` of one array as
/// `[len, count low, count high, symbols...]`, so visiting a word touches
/// one place in memory instead of four arrays (the loop is bound by those
/// cache misses: a merge visits every word that holds its pair). A word
/// keeps its room as merges shorten it.
struct Packed {
    data: Vec<u32>,
}

/// How many words ahead of the one being rewritten the loop prefetches.
const PREFETCH: usize = 6;

/// The header's length, before a word's symbols.
const HEAD: usize = 3;

impl Packed {
    /// Packs `t`, or says why the words do not fit 32-bit offsets.
    fn new(t: &SymbolTable) -> Result<Self, TrainError> {
        let total = t.syms.len() + HEAD * t.len.len();
        if total > u32::MAX as usize {
            return Err(TrainError::Config(format!(
                "{} distinct words with {} symbols are more than the CPU trainer \
                 addresses (2^32 entries); count a sample of the corpus",
                t.len.len(),
                t.syms.len()
            )));
        }
        let mut data = Vec::with_capacity(total);
        for w in 0..t.len.len() {
            let (s, len, n) = (t.start[w], t.len[w] as usize, t.count[w]);
            data.extend_from_slice(&[len as u32, n as u32, (n >> 32) as u32]);
            data.extend_from_slice(&t.syms[s..s + len]);
        }
        Ok(Packed { data })
    }

    /// The word at `w`: its occurrences and its symbols (with the room
    /// merges freed after them, which `len` excludes).
    #[inline]
    fn word(&mut self, w: u32) -> (u64, &mut [u32]) {
        let at = w as usize;
        let len = self.data[at] as usize;
        let n = self.data[at + 1] as u64 | (self.data[at + 2] as u64) << 32;
        (n, &mut self.data[at + HEAD..at + HEAD + len])
    }

    /// Asks the CPU to start loading word `w`'s first cache line, so that
    /// the visit a few words later does not wait for memory.
    #[inline]
    fn prefetch(&self, w: u32) {
        #[cfg(target_arch = "x86_64")]
        if let Some(x) = self.data.get(w as usize) {
            // SAFETY: a prefetch reads nothing and cannot fault; the
            // pointer is an element of `data` besides.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    (x as *const u32).cast::<i8>(),
                )
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = w;
    }

    /// Sets the word's length after a merge.
    #[inline]
    fn set_len(&mut self, w: u32, len: usize) {
        self.data[w as usize] = len as u32;
    }
}

/// The loop proper.
pub fn merge_loop(mut l: Learner) -> Result<Merges, TrainError> {
    let t0 = std::time::Instant::now();
    // The loop reads only the packed copy.
    let mut words = Packed::new(&std::mem::take(&mut l.words))?;
    let mut pairs = Pairs::default();
    // First count: every valid adjacent pair of every word, walking the
    // packed words in order (each is HEAD + its length long).
    let mut at = 0usize;
    while at < words.data.len() {
        let w = at as u32;
        let (n, seq) = words.word(w);
        at += HEAD + seq.len();
        for i in 0..seq.len() - 1 {
            let (a, b) = (seq[i], seq[i + 1]);
            if l.rules
                .join(l.info[a as usize], l.info[b as usize])
                .is_some()
            {
                pairs.add(a, b, n, w);
            }
        }
    }
    let mut heap = IndexedHeap::new();
    pairs.flush(&mut heap);
    tracing::debug!(
        "bpe: {} pairs counted ({:.2}s)",
        pairs.keys.len(),
        t0.elapsed().as_secs_f64()
    );

    while !l.full() {
        let Some((top, c)) = heap.top() else { break };
        if c < l.min {
            break;
        }
        let key = pairs.keys[top as usize];
        let (a, b) = ((key >> 32) as u32, key as u32);
        let (new, _) = l.record(a, b, c).expect("only valid pairs are counted");
        let list = std::mem::take(&mut pairs.words[top as usize]);
        let mut last = u32::MAX;
        for (i, &w) in list.iter().enumerate() {
            if let Some(&ahead) = list.get(i + PREFETCH) {
                words.prefetch(ahead);
            }
            if w == last {
                continue;
            }
            last = w;
            let (n, seq) = words.word(w);
            let len = merge_word(seq, w, n, (a, b, new), &mut pairs, &l.rules, &l.info);
            words.set_len(w, len);
        }
        debug_assert_eq!(pairs.counts[top as usize], 0, "every occurrence was found");
        pairs.counts[top as usize] = 0;
        pairs.touch(top as usize);
        pairs.flush(&mut heap);
    }
    tracing::debug!(
        "bpe: {} merges ({:.2}s)",
        l.learned.merges.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(l.learned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::train::weights::WordTable;

    fn table<'a>(words: &[(&'a str, u64)]) -> WordTable<'a> {
        WordTable {
            words: words.to_vec(),
            scales: Vec::new(),
        }
    }

    fn small() -> TrainConfig {
        TrainConfig {
            vocab_size: 500,
            min_frequency: 1,
            ..TrainConfig::default()
        }
    }

    /// The textbook algorithm: recount every pair before each merge.
    fn naive(table: &WordTable, cfg: &TrainConfig, want: usize) -> Vec<String> {
        let rules = Rules::new(cfg);
        let alpha = alphabet(table, cfg.character_coverage, &required_chars(cfg));
        let mut info: Vec<SymInfo> = alpha.iter().map(|&c| rules.char_info(c)).collect();
        let mut pieces: Vec<String> = alpha.iter().map(|c| c.to_string()).collect();
        let t = symbol_table(table, &alpha);
        let mut words: Vec<(Vec<u32>, u64)> = (0..t.len.len())
            .map(|w| {
                (
                    t.syms[t.start[w]..t.start[w] + t.len[w] as usize].to_vec(),
                    t.count[w],
                )
            })
            .collect();
        let mut out = Vec::new();
        while out.len() < want {
            let mut c: HashMap<(u32, u32), u64> = HashMap::new();
            for (w, n) in &words {
                for p in w.windows(2) {
                    if rules
                        .join(info[p[0] as usize], info[p[1] as usize])
                        .is_some()
                    {
                        *c.entry((p[0], p[1])).or_insert(0) += n;
                    }
                }
            }
            let Some((&(a, b), _)) = c.iter().max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0))) else {
                break;
            };
            let new = info.len() as u32;
            info.push(rules.join(info[a as usize], info[b as usize]).unwrap());
            pieces.push(format!("{}{}", pieces[a as usize], pieces[b as usize]));
            out.push(pieces[new as usize].clone());
            for (w, _) in &mut words {
                let mut i = 0;
                let mut o = Vec::new();
                while i < w.len() {
                    if i + 1 < w.len() && w[i] == a && w[i + 1] == b {
                        o.push(new);
                        i += 2;
                    } else {
                        o.push(w[i]);
                        i += 1;
                    }
                }
                *w = o;
            }
        }
        out
    }

    #[test]
    fn incremental_counts_match_recounting() {
        let t = table(&[
            ("▁lower", 5),
            ("▁lowest", 3),
            ("▁newer", 6),
            ("▁wider", 2),
            ("▁aaaa", 4),
            ("▁abab", 3),
            ("aaa", 7),
            ("▁", 9),
            ("▁new", 1),
        ]);
        let cfg = small();
        let m = train_bpe(&t, &cfg).unwrap();
        let got: Vec<String> = m.pieces[m.alphabet_len..].to_vec();
        assert!(!got.is_empty());
        assert_eq!(got, naive(&t, &cfg, got.len() + 5));
    }

    #[test]
    fn incremental_counts_match_recounting_on_random_words() {
        // Words over a small alphabet with spaces, digits and two scripts,
        // so merges overlap, repeat symbols and hit every rule.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: Vec<char> = "▁▁aaabbcdeαβγ1.".chars().collect();
        let mut owned: Vec<(String, u64)> = (0..400)
            .map(|_| {
                let len = 1 + next() % 9;
                let w: String = (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect();
                (w, 1 + next() % 50)
            })
            .collect();
        owned.sort();
        owned.dedup_by(|a, b| a.0 == b.0);
        let words: Vec<(&str, u64)> = owned.iter().map(|(w, n)| (w.as_str(), *n)).collect();
        let t = table(&words);
        let cfg = small();
        let m = train_bpe(&t, &cfg).unwrap();
        let got: Vec<String> = m.pieces[m.alphabet_len..].to_vec();
        assert!(got.len() > 50, "{} merges", got.len());
        assert_eq!(got, naive(&t, &cfg, got.len()));
    }

    #[test]
    fn pieces_obey_the_sentencepiece_rules() {
        let t = table(&[("▁ab", 10), ("▁1", 10), ("12", 10), ("▁▁", 10), ("▁▁a", 10)]);
        let m = train_bpe(&t, &small()).unwrap();
        let got = &m.pieces[m.alphabet_len..];
        assert!(got.contains(&"▁ab".to_string()), "{got:?}");
        assert!(got.contains(&"▁▁".to_string()), "{got:?}");
        for p in got {
            assert!(!p.contains('1') && !p.contains('2'), "digit merged: {p}");
            assert_ne!(p, "▁▁a", "space inside a piece");
        }
        let long = table(&[("▁abcdefghijklmnopqrstuvwxyz", 100)]);
        let m = train_bpe(&long, &small()).unwrap();
        assert!(m.pieces.iter().all(|p| p.chars().count() <= 16));
    }

    #[test]
    fn marks_join_one_script_but_never_bridge_two() {
        // ZWNJ and a combining acute are script Inherited: as in
        // SentencePiece, they join Arabic or Latin, not Latin to Cyrillic.
        let t = table(&[
            ("▁می\u{200c}شود", 20),
            ("▁ab\u{301}c", 20),
            ("▁b\u{301}д", 20),
        ]);
        let m = train_bpe(&t, &small()).unwrap();
        let got = &m.pieces[m.alphabet_len..];
        assert!(got.contains(&"▁می\u{200c}شود".to_string()), "{got:?}");
        assert!(got.contains(&"▁ab\u{301}c".to_string()), "{got:?}");
        assert!(got.contains(&"▁b\u{301}".to_string()), "{got:?}");
        for p in got {
            assert!(
                !(p.contains('b') && p.contains('д')),
                "two scripts in {p:?}"
            );
        }
    }

    #[test]
    fn ties_go_to_the_smaller_left_then_right_id() {
        // "▁" is required, so the alphabet order is by frequency:
        // a (4), b (4), c (2), ... and both pairs count 2.
        let t = table(&[("ab", 2), ("ba", 2), ("cd", 1)]);
        let m = train_bpe(&t, &small()).unwrap();
        let first = &m.pieces[m.alphabet_len];
        assert_eq!(first, "ab", "{:?}", &m.pieces);
    }
}
