//! Words, lines and character classes shared by the quality rules.
//!
//! Two word splits: [`words`], Unicode (UAX #29) word-boundary segments
//! without whitespace, which work alike for every script (near-dup
//! shingles, line lengths); and [`spacy::words`], the split of the quality
//! rules' reference implementation, which the Gopher, C4 and FineWeb rules
//! count. Line splitting follows Python's `splitlines`, which those rules
//! use, so thresholds mean the same thing here.

use unicode_segmentation::UnicodeSegmentation;

pub mod spacy;

/// The word tokens of a text.
pub fn words(text: &str) -> Vec<&str> {
    // A combining mark after a space joins the space's segment (UAX #29
    // rule WB4): the space is trimmed off, the mark stays a word.
    text.split_word_bounds()
        .map(|w| w.trim_matches(char::is_whitespace))
        .filter(|w| !w.is_empty())
        .collect()
}

/// Python's `str.split()`: runs of whitespace separate, no empty parts.
pub fn whitespace_words(line: &str) -> impl Iterator<Item = &str> {
    line.split(char::is_whitespace).filter(|w| !w.is_empty())
}

/// Python's `str.splitlines()` line boundaries.
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\u{0B}'
            | '\u{0C}'
            | '\u{1C}'
            | '\u{1D}'
            | '\u{1E}'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// Python's `str.splitlines()`: no trailing empty line, `\r\n` is one break.
pub fn splitlines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut it = text.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if is_line_break(c) {
            out.push(&text[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' {
                if let Some(&(j, '\n')) = it.peek() {
                    it.next();
                    end = j + 1;
                }
            }
            start = end;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Python's `str.strip()` (Unicode whitespace).
pub fn strip(s: &str) -> &str {
    s.trim_matches(char::is_whitespace)
}

/// Punctuation, symbols and control characters that make a word a "symbol
/// word" (Gopher's symbol rules count only words with something else).
pub fn is_punct(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation() || c.is_ascii_control();
    }
    matches!(c,
        '\u{80}'..='\u{9F}'             // C1 controls
        | '«' | '»' | '´'
        | '\u{2010}'..='\u{2027}'       // dashes, quotes, bullets, ellipsis
        | '\u{2030}'..='\u{205E}'       // per mille, primes, other general punctuation
        | '\u{2236}' | '\u{2501}' | '\u{25BA}'
        | '\u{3001}'..='\u{3003}' | '\u{3008}'..='\u{3011}' | '\u{3014}'..='\u{301F}'
        | '\u{FF01}'..='\u{FF0F}' | '\u{FF1A}'..='\u{FF20}' | '\u{FF3B}'..='\u{FF40}'
        | '\u{FF5B}'..='\u{FF65}'
    )
}

/// Sentence-ending punctuation (full stops, question and exclamation marks
/// of the scripts in use), as FineWeb's line-punctuation rule counts them.
pub fn is_terminal(c: char) -> bool {
    matches!(
        c,
        '.' | '!'
            | '?'
            | '\u{589}'     // Armenian full stop
            | '\u{61F}'     // Arabic question mark
            | '\u{6D4}'     // Arabic full stop
            | '\u{964}'
            | '\u{965}'     // Devanagari danda
            | '\u{1362}'
            | '\u{1367}'
            | '\u{1368}'    // Ethiopic
            | '\u{203C}'
            | '\u{203D}'
            | '\u{2047}'
            ..='\u{2049}'
            | '\u{3002}'    // ideographic full stop
            | '\u{FE52}'
            | '\u{FE56}'
            | '\u{FE57}'
            | '\u{FF01}'
            | '\u{FF0E}'
            | '\u{FF1F}'
            | '\u{FF61}'
    )
}

/// Number of characters (code points), the unit the rules' ratios use.
pub fn chars(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// Sentences in a line, as spaCy's rule-based sentencizer counts them on
/// the reference word split ([`spacy::words`]): a sentence ends at a token
/// that is one terminal mark (`!!!` is three of them, `...` none), and the
/// next starts at the next token that is not punctuation.
pub fn sentences(line: &str) -> usize {
    let mut n = 0;
    let mut seen_end = false;
    for w in spacy::words(line) {
        let mut cs = w.chars();
        let terminal = matches!((cs.next(), cs.next()), (Some(c), None) if is_terminal(c));
        if n == 0 {
            n = 1;
        } else if seen_end && !terminal && !w.chars().all(is_punct) {
            n += 1;
            seen_end = false;
        }
        if terminal {
            seen_end = true;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_work_for_every_script() {
        assert_eq!(
            words("L'home, però, no hi és."),
            vec!["L'home", ",", "però", ",", "no", "hi", "és", "."]
        );
        assert_eq!(words("Όλοι οι άνθρωποι"), vec!["Όλοι", "οι", "άνθρωποι"]);
        assert_eq!(
            words("well-known  \t2.5"),
            vec!["well", "-", "known", "2.5"]
        );
    }

    #[test]
    fn no_word_holds_whitespace() {
        // Found by the `words` fuzz target: U+0591 after a space.
        assert_eq!(words("a \u{591}b"), vec!["a", "\u{591}", "b"]);
    }

    #[test]
    fn splitlines_matches_python() {
        assert_eq!(splitlines("a\r\nb\rc\n\nd\n"), vec!["a", "b", "c", "", "d"]);
        assert_eq!(splitlines("a\u{2028}b"), vec!["a", "b"]);
        assert!(splitlines("").is_empty());
    }

    #[test]
    fn classes() {
        assert!(is_punct('…') && is_punct('-') && is_punct('«') && !is_punct('a'));
        assert!(is_terminal('.') && is_terminal('。') && !is_terminal('…') && !is_terminal(';'));
    }

    #[test]
    fn sentences_are_counted_like_a_sentencizer() {
        assert_eq!(sentences("One. Two! Three? Four"), 4);
        assert_eq!(sentences("Version 2.5 is out."), 1);
        assert_eq!(sentences("Hello!!! World."), 2);
        // `...` is one token, not a terminal mark, as in spaCy.
        assert_eq!(sentences("Wait... what? Yes."), 2);
        assert_eq!(sentences(""), 0);
    }
}
