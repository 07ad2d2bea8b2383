//! `normalize`: Unicode NFC, line endings, whitespace and control characters.
//!
//! Runs before dedup so that texts differing only in encoding details hash
//! alike. Runs of spaces inside a line are kept (they are indentation in
//! code, and the Salamandra tokenizer keeps whitespace), but trailing spaces,
//! exotic space characters and long runs of blank lines are normalized.

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, StringBuilder};
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field};
use serde::{Deserialize, Serialize};
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

use super::{Drop, Mode, Stage, StageError, StageOutput};
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
        "normalize"
    }

    fn mode(&self) -> Mode {
        self.config.mode
    }

    fn fields(&self) -> Vec<Field> {
        vec![Field::new("normalize_changed", DataType::Boolean, false)]
    }

    fn process(&self, batch: &RecordBatch) -> Result<StageOutput, StageError> {
        let text = Core::of(batch).text;
        let bytes = text.value_data().len();
        let mut out = StringBuilder::with_capacity(batch.num_rows(), bytes);
        let mut changed = BooleanBuilder::with_capacity(batch.num_rows());
        let mut drops = Vec::new();
        let mut buf = String::new();
        for (row, t) in text.iter().enumerate() {
            let t = t.unwrap_or_default();
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

/// Normalizes `text` into `out` (cleared first).
///
/// One pass that copies runs of ordinary characters whole; only whitespace,
/// control and non-ASCII characters are looked at one by one.
pub fn normalize_text(text: &str, cfg: &NormalizeConfig, out: &mut String) {
    out.clear();
    let composed;
    let s: &str = if cfg.nfc && is_nfc_quick(text.chars()) != IsNormalized::Yes {
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
        let (c, len) = if x > 0x20 && x < 0x7f {
            i += 1;
            continue;
        } else if x < 0x80 {
            (x as char, 1)
        } else {
            let c = s[i..].chars().next().expect("i is on a char boundary");
            (c, c.len_utf8())
        };
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
