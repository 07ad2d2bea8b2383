//! Words as the quality rules' reference implementation splits them.
//!
//! datatrove's Gopher, C4 and FineWeb filters count the words of spaCy's
//! blank English tokenizer. Its rules, reproduced here:
//! 1. split on whitespace;
//! 2. per chunk, unless it is a special case (`filters/words/`, spaCy's
//!    tokenizer exceptions: `don't` → `do` `n't`, `e.g.` whole), peel one
//!    prefix and one suffix at a time: brackets, quotes and punctuation,
//!    symbols, currency; a full stop only after a lower-case letter, a digit
//!    or punctuation (or two capitals); units and currencies after a digit;
//!    `'s`;
//! 3. keep a URL or domain name whole; split the rest at infixes: symbols,
//!    runs of dots, a hyphen or one of `:<>=/` between a letter or digit and
//!    a letter, a comma between letters, a full stop between a lower-case
//!    and a capital letter, an operator between digits.
//!
//! So `-v`, `--verbose`, `/usr` and `foo.conf` stay one word each, as in
//! datatrove, where UAX #29 segmentation would split off their punctuation
//! and count more words without letters.
//!
//! Two deliberate differences. Letter classes are Unicode's (spaCy lists its
//! own, which miss some Cyrillic and Greek letters). And a token in a script
//! written without spaces (Han, kana, Thai, Lao, Khmer, Myanmar) is split
//! into its UAX #29 segments, one per ideograph or syllable run: datatrove's
//! English tokenizer would judge a whole Chinese clause as one "word", so its
//! word-length and word-count rules say nothing about such text.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

use crate::hash::MixState;
use unicode_script::{Script, UnicodeScript};

const SPECIAL_CASES: &str = include_str!("../../filters/words/spacy-en-special-cases.tsv");

/// spaCy's `LIST_PUNCT`: prefix, suffix (single characters).
const PUNCT: &str = "…,:;!?¿؟¡()[]{}<>_#*&。？！，、；：～·।،۔؛٪";
/// spaCy's `LIST_QUOTES` (and the CJK brackets it files with them).
const QUOTES: &str = "'\"”“`‘´’‚,„»«「」『』（）〔〕【】《》〈〉〈〉⟦⟧";
/// spaCy's `LIST_CURRENCY` (single characters; `US$`, `C$`, `A$` apart).
const CURRENCY: &str = "$£€¥฿₽﷼₴₠₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₵₶₷₸₹₺₻₼₾₿";
/// Prefixes besides punctuation, quotes and currency (`+` only before a
/// non-digit).
const PREFIX_EXTRA: &str = "§%=—–";
/// Units spaCy splits off after a digit (`10km` → `10` `km`).
const UNITS: &[&str] = &[
    "km", "km²", "km³", "m", "m²", "m³", "dm", "dm²", "dm³", "cm", "cm²", "cm³", "mm", "mm²",
    "mm³", "ha", "µm", "nm", "yd", "in", "ft", "kg", "g", "mg", "µg", "t", "lb", "oz", "m/s",
    "km/h", "kmh", "mph", "hPa", "Pa", "mbar", "mb", "MB", "kb", "KB", "gb", "GB", "tb", "TB", "T",
    "G", "M", "K", "%", "км", "км²", "км³", "м", "м²", "м³", "дм", "дм²", "дм³", "см", "см²",
    "см³", "мм", "мм²", "мм³", "нм", "кг", "г", "мг", "м/с", "км/ч", "кПа", "Па", "мбар", "Кб",
    "КБ", "кб", "Мб", "МБ", "мб", "Гб", "ГБ", "гб", "Тб", "ТБ", "$", "£", "€", "¥", "฿", "US$",
    "C$", "A$", "₽", "₴", "₹", "₺", "₩", "₪", "₫", "₱", "₦", "₡", "₲", "₵", "₸", "₼", "₾", "₿",
];
/// The longest unit, in bytes.
const UNIT_MAX: usize = 12;
/// Characters after which a final full stop is a suffix (besides digits and
/// lower-case letters).
const BEFORE_STOP: &str = "%²-+…,:;!?¿؟¡()[]|{}<>_#*&。？！，、；：～·।،۔؛٪";
/// Hyphens spaCy splits between a letter or digit and a letter, longest
/// first.
const HYPHENS: &[&str] = &["---", "——", "--", "-", "–", "—", "~"];

struct Tables {
    symbol: Regex,
    url: Regex,
    special: Special,
}

/// spaCy's special cases, by text.
struct Special {
    map: HashMap<&'static str, Vec<&'static str>, MixState>,
    /// The longest text (bytes): most chunks are longer and skip the lookup.
    longest: usize,
}

impl Special {
    fn get(&self, s: &str) -> Option<&Vec<&'static str>> {
        if s.len() > self.longest {
            return None;
        }
        self.map.get(s)
    }

    fn contains_key(&self, s: &str) -> bool {
        self.get(s).is_some()
    }
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| Tables {
        symbol: Regex::new(r"^\p{So}$").expect("valid pattern"),
        // spaCy's URL_MATCH without its private-address look-aheads: an
        // optional scheme and user, a host (IPv4 or dotted labels ending in
        // a lower-case top-level domain), an optional port and path.
        url: Regex::new(
            r"^(?:[\w+\-.]{2,}://)?(?:\S+(?::\S*)?@)?(?:\d{1,3}(?:\.\d{1,3}){3}|(?:(?:[A-Za-z0-9\x{a1}-\x{ffff}][A-Za-z0-9\x{a1}-\x{ffff}_-]{0,62})?[A-Za-z0-9\x{a1}-\x{ffff}]\.)+\p{Ll}{2,63})(?::\d{2,5})?(?:[/?#]\S*)?$",
        )
        .expect("valid pattern"),
        special: special_cases(),
    })
}

fn special_cases() -> Special {
    let map: HashMap<_, _, MixState> = SPECIAL_CASES
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k, v.split(' ').collect::<Vec<_>>()))
        // spaCy requires a special case's tokens to spell its text.
        .filter(|(k, v)| v.concat() == *k)
        .collect();
    let longest = map.keys().map(|k| k.len()).max().unwrap_or(0);
    Special { map, longest }
}

/// A symbol (Unicode So): split off anywhere. Letters, digits and ASCII
/// never are one, and below U+058D only five characters are, which spares
/// the regex for nearly every character.
pub(crate) fn is_symbol(c: char) -> bool {
    if c < '\u{58D}' {
        // Latin, Greek, Cyrillic: five symbols, no table lookup.
        return matches!(c, '¦' | '©' | '®' | '°' | '\u{482}');
    }
    if cjk_letter(c) || c.is_alphanumeric() {
        return false;
    }
    let mut buf = [0u8; 4];
    tables().symbol.is_match(c.encode_utf8(&mut buf))
}

/// Kana, CJK ideographs and Hangul syllables: letters, told apart without
/// a table lookup (they are most characters of CJK text).
fn cjk_letter(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{309F}' | '\u{30A1}'..='\u{30FA}' | '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{AC00}'..='\u{D7A3}')
}

fn affix_char(c: char) -> bool {
    PUNCT.contains(c) || QUOTES.contains(c) || is_symbol(c)
}

fn prefix_len(s: &str) -> usize {
    let first = s.as_bytes()[0];
    if first.is_ascii_alphanumeric() && !matches!(first, b'U' | b'C' | b'A') {
        return 0;
    }
    let dots = s.len() - s.trim_start_matches('.').len();
    if dots >= 2 {
        return dots;
    }
    for cur in ["US$", "C$", "A$"] {
        if s.starts_with(cur) {
            return cur.len();
        }
    }
    let mut it = s.chars();
    let Some(c) = it.next() else { return 0 };
    let plus = c == '+' && !it.next().is_some_and(|n| n.is_ascii_digit());
    if plus || PREFIX_EXTRA.contains(c) || CURRENCY.contains(c) || affix_char(c) {
        c.len_utf8()
    } else {
        0
    }
}

/// Length of the suffix spaCy's `suffix_search` finds: of the patterns that
/// match at the end, the one that starts leftmost wins.
fn suffix_len(s: &str) -> usize {
    let mut best = 0;
    let dots = s.len() - s.trim_end_matches('.').len();
    if dots >= 2 {
        best = dots;
    }
    for pos in ["'s", "'S", "’s", "’S"] {
        if s.ends_with(pos) {
            best = best.max(pos.len());
        }
    }
    // No unit holds an ASCII digit, so a unit suffix is all that follows
    // the last digit.
    // Only the last bytes are looked at: the affix loop calls this once per
    // peeled suffix, and a scan of the whole chunk would make it quadratic.
    let window = s.len().saturating_sub(UNIT_MAX + 1);
    if let Some(d) = s.as_bytes()[window..].iter().rposition(u8::is_ascii_digit) {
        let tail = &s[window + d + 1..];
        if !tail.is_empty() && UNITS.contains(&tail) {
            best = best.max(tail.len());
        }
    }
    let mut rev = s.chars().rev();
    if let Some(last) = rev.next().filter(|c| !c.is_alphanumeric()) {
        let before = rev.next();
        let stop = last == '.'
            && before.is_some_and(|b| {
                b.is_ascii_digit()
                    || b.is_lowercase()
                    || BEFORE_STOP.contains(b)
                    || QUOTES.contains(b)
                    || rev
                        .clone()
                        .next()
                        .is_some_and(|bb| b.is_uppercase() && bb.is_uppercase())
                    || (rev.clone().next() == Some('°') && "FfCcKk".contains(b))
            });
        let plus = last == '+' && before.is_some_and(|b| b.is_ascii_digit());
        if stop || plus || last == '—' || last == '–' || affix_char(last) {
            best = best.max(last.len_utf8());
        }
    }
    best
}

/// The infix that starts at byte `i` of `s` (its length), or 0.
fn infix_at(s: &str, i: usize) -> usize {
    let rest = &s[i..];
    let Some(c) = rest.chars().next() else {
        return 0;
    };
    // Only these can start an infix; letters never do.
    let candidate = if c.is_ascii() {
        b".+-*^,~:<>=/".contains(&(c as u8))
    } else {
        matches!(c, '…' | '–' | '—') || is_symbol(c)
    };
    if !candidate {
        return 0;
    }
    let prev = s[..i].chars().next_back();
    let next = rest[c.len_utf8()..].chars().next();
    if rest.starts_with("..") {
        return rest.len() - rest.trim_start_matches('.').len();
    }
    if c == '…' || is_symbol(c) {
        return c.len_utf8();
    }
    let Some(p) = prev else { return 0 };
    let quote = |q: char| QUOTES.contains(q);
    if p.is_ascii_digit()
        && "+-*^".contains(c)
        && next.is_some_and(|n| n.is_ascii_digit() || n == '-')
    {
        return 1;
    }
    if c == '.'
        && (p.is_lowercase() || quote(p))
        && next.is_some_and(|n| n.is_uppercase() || quote(n))
    {
        return 1;
    }
    if c == ',' && p.is_alphabetic() && next.is_some_and(char::is_alphabetic) {
        return 1;
    }
    if p.is_alphanumeric() {
        for h in HYPHENS {
            if rest.starts_with(h) && rest[h.len()..].starts_with(char::is_alphabetic) {
                return h.len();
            }
        }
        if ":<>=/".contains(c) && next.is_some_and(char::is_alphabetic) {
            return 1;
        }
    }
    0
}

/// A script written without spaces between words.
fn unspaced(c: char) -> bool {
    c >= '\u{0E00}'
        && matches!(
            c.script(),
            Script::Han
                | Script::Hiragana
                | Script::Katakana
                | Script::Thai
                | Script::Lao
                | Script::Khmer
                | Script::Myanmar
        )
}

/// Pushes a finished token, split into UAX #29 segments if it holds text
/// of a script without spaces.
fn push<'a>(tok: &'a str, out: &mut Vec<&'a str>) {
    if !tok.is_ascii() && tok.chars().any(unspaced) {
        out.extend(super::words(tok));
    } else {
        out.push(tok);
    }
}

/// A cheap test that `s` may hold a domain name: a dot followed by two
/// characters that may be lower-case letters (non-ASCII included).
fn maybe_url(s: &str) -> bool {
    let low = |b: u8| b.is_ascii_lowercase() || b >= 0x80;
    s.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'.' && low(w[1]) && low(w[2]))
}

/// The middle of a chunk: special case, URL, or split at its infixes (one
/// at its very start does not split).
fn attach<'a>(s: &'a str, out: &mut Vec<&'a str>) {
    let t = tables();
    if let Some(parts) = t.special.get(s) {
        // The parts spell the text (the table is checked when loaded), so
        // they are taken as slices of it: callers locate words by address.
        let mut at = 0;
        for p in parts {
            out.push(&s[at..at + p.len()]);
            at += p.len();
        }
        return;
    }
    if maybe_url(s) && t.url.is_match(s) {
        out.push(s);
        return;
    }
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        let n = infix_at(s, i);
        if n == 0 {
            i += s[i..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        if i != 0 {
            if i != start {
                push(&s[start..i], out);
            }
            out.push(&s[i..i + n]);
            start = i + n;
        }
        i += n;
    }
    if start < s.len() {
        push(&s[start..], out);
    }
}

/// spaCy's affix loop over one whitespace-free chunk: peel one prefix and
/// one suffix at a time until a special case or nothing is left to peel.
/// Returns the prefixes, the middle and the suffixes (innermost last). The
/// tables are the caller's: the quality rules' split and datatrove's
/// near-dup shingles (on simplified text) share this loop.
pub(crate) fn split_affixes(
    mut s: &str,
    special: impl Fn(&str) -> bool,
    prefix_len: impl Fn(&str) -> usize,
    suffix_len: impl Fn(&str) -> usize,
) -> (Vec<&str>, &str, Vec<&str>) {
    let mut prefixes = Vec::new();
    let mut suffixes = Vec::new();
    let mut last = usize::MAX;
    while !s.is_empty() && s.len() != last {
        if special(s) {
            break;
        }
        last = s.len();
        let pre = prefix_len(s);
        if pre != 0 {
            let minus = &s[pre..];
            if !minus.is_empty() && special(minus) {
                prefixes.push(&s[..pre]);
                s = minus;
                break;
            }
        }
        let suf = suffix_len(&s[pre..]);
        if suf != 0 {
            let minus = &s[..s.len() - suf];
            if !minus.is_empty() && special(minus) {
                suffixes.push(&s[s.len() - suf..]);
                s = minus;
                break;
            }
        }
        if pre != 0 && suf != 0 && pre + suf <= s.len() {
            prefixes.push(&s[..pre]);
            suffixes.push(&s[s.len() - suf..]);
            s = &s[pre..s.len() - suf];
        } else if pre != 0 {
            prefixes.push(&s[..pre]);
            s = &s[pre..];
        } else if suf != 0 {
            suffixes.push(&s[s.len() - suf..]);
            s = &s[..s.len() - suf];
        }
    }
    (prefixes, s, suffixes)
}

/// Tokens of one whitespace-free chunk, in spaCy's order: prefixes, the
/// middle, suffixes.
fn chunk<'a>(s: &'a str, out: &mut Vec<&'a str>) {
    let special = &tables().special;
    let (prefixes, middle, suffixes) =
        split_affixes(s, |t| special.contains_key(t), prefix_len, suffix_len);
    out.extend(prefixes);
    if !middle.is_empty() {
        attach(middle, out);
    }
    out.extend(suffixes.into_iter().rev());
}

/// The words of a text as datatrove's English word tokenizer (spaCy) gives
/// them, with scripts written without spaces split into UAX #29 segments.
pub fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::with_capacity(text.len() / 5);
    for c in text.split(char::is_whitespace).filter(|c| !c.is_empty()) {
        chunk(c, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::words;

    /// Each expected list is what spaCy 3.8's blank English tokenizer gives
    /// (checked with `spacy.blank("en")`), except where noted.
    #[test]
    fn splits_as_spacy_does() {
        let cases: &[(&str, &[&str])] = &[
            ("Hello -v --verbose", &["Hello", "-v", "--verbose"]),
            (
                "/usr/bin/ls ls(1)",
                &["/usr", "/", "bin", "/", "ls", "ls(1", ")"],
            ),
            ("e.g. don't foo.conf", &["e.g.", "do", "n't", "foo.conf"]),
            (
                "well-known x=/dev 3-4",
                &["well", "-", "known", "x=/dev", "3", "-", "4"],
            ),
            (
                "a,b \"quoted\" (paren) end.",
                &[
                    "a", ",", "b", "\"", "quoted", "\"", "(", "paren", ")", "end", ".",
                ],
            ),
            (
                "http://x.org/a?b 10km 5%",
                &["http://x.org/a?b", "10", "km", "5", "%"],
            ),
            (
                "U.S. ABC. Abc. dog's",
                &["U.S.", "ABC", ".", "Abc", ".", "dog", "'s"],
            ),
            ("wait...what…", &["wait", "...", "what", "…"]),
            ("end.Next", &["end", ".", "Next"]),
            (
                "X\". X». X). X|. X/. (: ):",
                &[
                    "X", "\"", ".", "X", "»", ".", "X", ")", ".", "X|", ".", "X/.", "(:", "):",
                ],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&words(text), want, "{text:?}");
        }
    }

    #[test]
    fn words_are_slices_of_the_text() {
        let text = "Don't e.g. (x) 10km";
        let base = text.as_ptr() as usize;
        for w in words(text) {
            let at = w.as_ptr() as usize - base;
            assert_eq!(&text[at..at + w.len()], w);
        }
    }

    #[test]
    fn units_are_whole_and_every_unit_fits_the_window() {
        assert!(super::UNITS.iter().all(|u| u.len() <= super::UNIT_MAX));
        assert_eq!(
            words("10km 3km² 5MB x5"),
            ["10", "km", "3", "km²", "5", "MB", "x5"]
        );
    }

    #[test]
    fn long_chunks_take_linear_time() {
        // A chunk of 200,000 closing brackets after a word: one suffix per
        // loop; each step must not rescan the chunk.
        let text = format!("a{}", ")".repeat(200_000));
        assert_eq!(words(&text).len(), 200_001);
        let cjk = "汉".repeat(100_000) + "1";
        assert_eq!(words(&cjk).len(), 100_001);
    }

    #[test]
    fn unspaced_scripts_split_into_segments() {
        // spaCy would keep `选项很有用` whole; forja judges ideographs one by one.
        assert_eq!(
            words("选项很有用。 -v"),
            ["选", "项", "很", "有", "用", "。", "-v"]
        );
        assert_eq!(words("Όλοι οι άνθρωποι."), ["Όλοι", "οι", "άνθρωποι", "."]);
    }
}
