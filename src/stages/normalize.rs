//! `normalize`: Unicode NFC, line endings, whitespace and control characters.
//!
//! Runs before dedup so that texts differing only in encoding details hash
//! alike. Runs of spaces inside a line are kept (they are indentation in
//! code, and the Salamandra tokenizer keeps whitespace), but trailing spaces,
//! exotic space characters and long runs of blank lines are normalized.

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, StringBuilder};
use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::{DataType, Field};
use serde::{Deserialize, Serialize};
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

use super::{BuildContext, Drop, Mode, Stage, StageError, StageOutput, StageSpec};
use crate::batch::Core;
use crate::ledger::Reason;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeConfig {
    #[serde(default)]
    pub mode: Mode,
    /// Compose to Unicode NFC.
    #[serde(default = "yes")]
    pub nfc: bool,
    /// Map no-break, en/em and other Unicode spaces to ASCII space.
    #[serde(default = "yes")]
    pub unicode_spaces: bool,
    /// Remove spaces and tabs at the end of lines.
    #[serde(default = "yes")]
    pub strip_trailing_spaces: bool,
    /// Most consecutive newlines kept (2 = one blank line); 0 keeps all.
    #[serde(default = "two")]
    pub max_newlines: u32,
}

fn yes() -> bool {
    true
}
fn two() -> u32 {
    2
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        NormalizeConfig {
            mode: Mode::Filter,
            nfc: true,
            unicode_spaces: true,
            strip_trailing_spaces: true,
            max_newlines: 2,
        }
    }
}

pub struct Normalize {
    config: NormalizeConfig,
}

impl Normalize {
    pub fn new(config: NormalizeConfig) -> Self {
        Normalize { config }
    }
}

impl Stage for Normalize {
    fn name(&self) -> &'static str {
        <NormalizeConfig as StageSpec>::TYPE
    }

    fn mode(&self) -> Mode {
        self.config.mode
    }

    fn fields(&self) -> Vec<Field> {
        vec![Field::new("normalize_changed", DataType::Boolean, false)]
    }

    fn process(&self, batch: &RecordBatch) -> Result<StageOutput, StageError> {
        let text = Core::of(batch).text;
        let clean: Vec<bool> = text
            .iter()
            .map(|t| clean_as_is(t.unwrap_or_default(), &self.config))
            .collect();
        if clean.iter().all(|&c| c) {
            // Nothing to rewrite: keep the text column as it is, no copy.
            return Ok(StageOutput {
                text: None,
                columns: vec![Arc::new(BooleanArray::from(vec![false; clean.len()]))],
                drops: Vec::new(),
                scan: None,
            });
        }
        let bytes = text.value_data().len();
        let mut out = StringBuilder::with_capacity(batch.num_rows(), bytes);
        let mut changed = BooleanBuilder::with_capacity(batch.num_rows());
        let mut drops = Vec::new();
        let mut buf = String::new();
        for (row, t) in text.iter().enumerate() {
            let t = t.unwrap_or_default();
            if clean[row] {
                changed.append_value(false);
                out.append_value(t);
                continue;
            }
            normalize_text(t, &self.config, &mut buf);
            changed.append_value(buf != t);
            if buf.is_empty() {
                drops.push(Drop {
                    row,
                    reason: Reason::EmptyAfterNormalize,
                    detail: format!("{} bytes before normalization", t.len()),
                });
            }
            out.append_value(&buf);
        }
        Ok(StageOutput {
            text: Some(Arc::new(out.finish())),
            columns: vec![Arc::new(changed.finish())],
            drops,
            scan: None,
        })
    }
}

/// Is `c` a space other than ASCII space and tab?
fn is_unicode_space(c: char) -> bool {
    matches!(
        c,
        '\u{00A0}' | '\u{1680}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// Bytes that may start a character other than [`Class::Plain`]: ASCII
/// whitespace and controls, and the lead bytes of U+0080..U+00BF (C1
/// controls, NEL, no-break space), U+1680, U+2000..U+206F, U+3000 and U+FEFF.
/// Continuation bytes (0x80..0xBF) are never in the set, so a scan that
/// skips the rest can never stop inside a character.
static MAYBE_SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b <= 0x20 {
        t[b] = true;
        b += 1;
    }
    t[0x7F] = true;
    t[0xC2] = true;
    t[0xE1] = true;
    t[0xE2] = true;
    t[0xE3] = true;
    t[0xEF] = true;
    t
};

/// What one character means to the normalizer.
enum Class {
    Plain,
    Space(char),
    Newline,
    Remove,
}

fn classify(c: char, cfg: &NormalizeConfig) -> Class {
    match c {
        ' ' | '\t' => Class::Space(c),
        // \n, vertical tab, form feed, CR (CR LF is folded by the caller), NEL, LS, PS.
        '\n' | '\u{0B}' | '\u{0C}' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => Class::Newline,
        '\u{FEFF}' => Class::Remove,
        c if c.is_control() => Class::Remove,
        c if cfg.unicode_spaces && is_unicode_space(c) => Class::Space(' '),
        _ => Class::Plain,
    }
}

/// True when `text` certainly comes out of [`normalize_text`] unchanged
/// under the default settings.
///
/// Branch-free over fixed-size blocks, so it vectorizes: most real text is
/// already clean, and proving that is far cheaper than rewriting it.
fn clean_as_is(text: &str, cfg: &NormalizeConfig) -> bool {
    if !(cfg.strip_trailing_spaces && cfg.unicode_spaces && cfg.max_newlines == 2) {
        return false;
    }
    let b = text.as_bytes();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return true;
    };
    if first == b'\n' || last.is_ascii_whitespace() {
        return false;
    }
    // Bytes that always need the careful path: controls other than \n (tabs
    // included, to keep this simple), DEL, lead bytes of the special
    // non-ASCII characters, and anything at or above U+0300 when composing.
    let nfc_limit = if cfg.nfc { 0xCC } else { 0xF8 };
    let bad_byte = |x: u8| {
        ((x < 0x20) & (x != b'\n'))
            | (x == 0x7F)
            | (x == 0xC2)
            | (x == 0xE1)
            | (x == 0xE2)
            | (x == 0xE3)
            | (x == 0xEF)
            | (x >= nfc_limit)
    };
    let mut bad = false;
    for chunk in b.chunks(64) {
        bad |= chunk.iter().fold(false, |acc, &x| acc | bad_byte(x));
    }
    // A space before a newline, or three newlines in a row.
    let pairs = b.iter().zip(&b[1..]);
    bad |= pairs.fold(false, |acc, (&x, &y)| acc | ((x == b' ') & (y == b'\n')));
    if b.len() >= 3 {
        let triples = b.iter().zip(&b[1..]).zip(&b[2..]);
        bad |= triples.fold(false, |acc, ((&x, &y), &z)| {
            acc | ((x == b'\n') & (y == b'\n') & (z == b'\n'))
        });
    }
    !bad
}

/// Normalizes `text` into `out` (cleared first).
///
/// One pass that copies runs of ordinary characters whole; only whitespace,
/// control and non-ASCII characters are looked at one by one.
///
/// Never inlined: kept whole, the compiler inlines Unicode normalization's
/// quick check into it rather than this into `process`, which measured
/// about 10 % faster on the bench-io corpus whatever the module layout.
#[inline(never)]
pub fn normalize_text(text: &str, cfg: &NormalizeConfig, out: &mut String) {
    out.clear();
    let composed;
    let below_combining = || text.bytes().all(|b| b < 0xCC);
    let s: &str =
        if cfg.nfc && !below_combining() && is_nfc_quick(text.chars()) != IsNormalized::Yes {
            composed = text.nfc().collect::<String>();
            &composed
        } else {
            text
        };
    out.reserve(s.len());
    let mut pending = String::new(); // spaces not yet known to be trailing
    let mut newlines = 0usize;
    let max_nl = if cfg.max_newlines == 0 {
        usize::MAX
    } else {
        cfg.max_newlines as usize
    };
    let emit = |run: &str, out: &mut String, pending: &mut String, newlines: &mut usize| {
        if run.is_empty() {
            return;
        }
        // Leading blank lines are dropped; indentation of the first line is kept.
        if !out.is_empty() {
            for _ in 0..(*newlines).min(max_nl) {
                out.push('\n');
            }
        }
        out.push_str(pending);
        *newlines = 0;
        pending.clear();
        out.push_str(run);
    };
    let b = s.as_bytes();
    let mut i = 0;
    let mut run_start = 0;
    while i < b.len() {
        let x = b[i];
        // Most bytes cannot start a character the normalizer cares about.
        if !MAYBE_SPECIAL[x as usize] {
            i += 1;
            continue;
        }
        // A lone space or newline between ordinary characters, inside a run,
        // is left as it is: this keeps word boundaries on the fast path.
        if (x == b' ' || x == b'\n')
            && i > run_start
            && b.get(i + 1).is_some_and(|&n| !MAYBE_SPECIAL[n as usize])
        {
            i += 2;
            continue;
        }
        let c = s[i..]
            .chars()
            .next()
            .expect("special bytes start characters");
        let len = c.len_utf8();
        let class = classify(c, cfg);
        if let Class::Plain = class {
            i += len;
            continue;
        }
        emit(&s[run_start..i], out, &mut pending, &mut newlines);
        match class {
            Class::Space(sp) => pending.push(sp),
            Class::Newline => {
                if cfg.strip_trailing_spaces || out.is_empty() {
                    pending.clear();
                } else {
                    // Keep the spaces where they were: before the newline.
                    let p = std::mem::take(&mut pending);
                    if newlines == 0 {
                        out.push_str(&p);
                    }
                }
                newlines += 1;
                if c == '\r' && b.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            Class::Remove | Class::Plain => {}
        }
        i += len;
        run_start = i;
    }
    emit(&s[run_start..], out, &mut pending, &mut newlines);
}

impl StageSpec for NormalizeConfig {
    const TYPE: &'static str = "normalize";

    fn adds(&self) -> Vec<&'static str> {
        vec!["normalize_changed"]
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Stage>, StageError> {
        let _ = ctx;
        Ok(Box::new(Normalize::new(self.clone())))
    }

    fn example() -> Self {
        NormalizeConfig {
            mode: Mode::Annotate,
            nfc: false,
            max_newlines: 3,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        let mut out = String::new();
        normalize_text(s, &NormalizeConfig::default(), &mut out);
        out
    }

    #[test]
    fn composes_to_nfc() {
        assert_eq!(norm("Cafe\u{301} i Mu\u{308}nchen"), "Café i München");
    }

    #[test]
    fn folds_line_endings_and_blank_lines() {
        assert_eq!(norm("a\r\nb\rc\n\n\n\n\nd"), "a\nb\nc\n\nd");
    }

    #[test]
    fn strips_trailing_and_leading_blank_but_keeps_indentation() {
        assert_eq!(
            norm("\n\n  fn x() {  \n    y\t\n  }\n\n"),
            "  fn x() {\n    y\n  }"
        );
    }

    #[test]
    fn removes_controls_and_maps_unicode_spaces() {
        assert_eq!(
            norm("a\u{0}b\u{7}c\u{FEFF}d\u{A0}e\u{3000}f\u{9F}g"),
            "abcd e fg"
        );
    }

    #[test]
    fn whitespace_only_becomes_empty() {
        assert_eq!(norm(" \t\r\n\u{A0} \n"), "");
    }

    #[test]
    fn leaves_clean_text_alone() {
        let s = "Tots els éssers humans neixen lliures.\n\nΌλοι οι άνθρωποι γεννιούνται ελεύθεροι.";
        assert_eq!(norm(s), s);
    }

    #[test]
    fn clean_text_is_recognized_without_rewriting() {
        let cfg = NormalizeConfig::default();
        assert!(clean_as_is(
            "Tots els éssers humans\nneixen  lliures.\n\nArticle 2",
            &cfg
        ));
        for dirty in [
            "a \nb", "a\r\nb", "a\n\n\nb", "\na", "a ", "a\u{A0}b", "e\u{301}",
        ] {
            assert!(!clean_as_is(dirty, &cfg), "{dirty:?}");
        }
    }

    #[test]
    fn options_can_be_turned_off() {
        let cfg = NormalizeConfig {
            strip_trailing_spaces: false,
            max_newlines: 0,
            unicode_spaces: false,
            ..Default::default()
        };
        let mut out = String::new();
        normalize_text("a  \n\n\n\nb\u{A0}c", &cfg, &mut out);
        assert_eq!(out, "a  \n\n\n\nb\u{A0}c");
    }

    /// The obvious char-by-char version of the same rules.
    fn reference(text: &str, cfg: &NormalizeConfig) -> String {
        let text: String = if cfg.nfc {
            text.nfc().collect()
        } else {
            text.into()
        };
        let text = text.replace("\r\n", "\n");
        let mut lines: Vec<String> = vec![String::new()];
        for c in text.chars() {
            match classify(c, cfg) {
                Class::Newline => lines.push(String::new()),
                Class::Space(sp) => lines.last_mut().unwrap().push(sp),
                Class::Remove => {}
                Class::Plain => lines.last_mut().unwrap().push(c),
            }
        }
        let lines: Vec<&str> = lines
            .iter()
            .map(|l| l.trim_end_matches([' ', '\t']))
            .collect();
        let mut out = String::new();
        let mut blank_run = 0;
        for l in lines {
            if l.trim_start_matches([' ', '\t']).is_empty() {
                blank_run += 1;
                continue;
            }
            if !out.is_empty() {
                for _ in 0..(blank_run + 1).min(cfg.max_newlines as usize) {
                    out.push('\n');
                }
            }
            blank_run = 0;
            out.push_str(l);
        }
        out
    }

    #[test]
    fn fast_scan_matches_the_reference_on_random_text() {
        let alphabet: Vec<char> =
            "ab  \n\né\u{301}\tЖλ\n\r\u{0}\u{85}\u{A0}\u{2003}\u{2028}\u{3000}\u{FEFF}\u{1680}€𝄞 "
                .chars()
                .collect();
        let mut seed = 0x2545F4914F6CDD1Du64;
        let cfg = NormalizeConfig::default();
        let mut out = String::new();
        for _ in 0..5000 {
            let mut t = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            for k in 0..(seed % 40) {
                let x = seed.rotate_left(k as u32 * 5) ^ k;
                t.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            normalize_text(&t, &cfg, &mut out);
            assert_eq!(out, reference(&t, &cfg), "input {t:?}");
            if clean_as_is(&t, &cfg) {
                assert_eq!(out, t, "judged clean but changed: {t:?}");
            }
        }
    }

    #[test]
    fn stage_drops_empty_documents() {
        use crate::batch::CoreBuilder;
        let mut b = CoreBuilder::with_capacity(2, 10);
        b.push("s", "f", 1, "ok\r\n", None, None);
        b.push("s", "f", 2, " \u{0} ", None, None);
        let batch = b.finish();
        let out = Normalize::new(NormalizeConfig::default())
            .process(&batch)
            .unwrap();
        assert_eq!(out.drops.len(), 1);
        assert_eq!(out.drops[0].row, 1);
        assert_eq!(out.drops[0].reason, Reason::EmptyAfterNormalize);
    }
}
