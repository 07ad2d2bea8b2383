//! `repeated_lines`: remove lines or paragraphs repeated across the corpus
//! (navigation, headers and footers, cookie notices), cc_net and dolma style.
//!
//! A phased stage (see `phased`). The scan hashes every line (or
//! paragraph) of every document, once per document; the reduce step counts
//! the documents each hash is found in; the apply pass removes the lines
//! found in at least `min_docs` documents, anywhere in a document or only
//! in its leading and trailing runs (`position = "edges"`: page headers and
//! footers). Documents left empty, or with fewer than `min_words` words,
//! are dropped with a reason.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, UInt32Builder};
use arrow_array::{RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::exact_dedup::DEFAULT_PARTITIONS;
use super::{BuildContext, Drop, Global, Mode, Stage, StageError, StageOutput, StageSpec, Step};
use crate::batch::{self, Core};
use crate::phased::{self, DocKeys, PhasedError, Plan, RunInput, ScanLayout, Scanned};
use crate::hash::PassThroughState;
use crate::ledger::Reason;

/// What is counted and removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextUnit {
    /// Each line (cc_net).
    #[default]
    Line,
    /// Runs of non-blank lines separated by blank lines.
    Paragraph,
}

/// Where in a document repeated units are removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    #[default]
    Anywhere,
    /// Only the leading and trailing runs of repeated units (headers, footers).
    Edges,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepeatedLinesConfig {
    pub mode: Mode,
    pub unit: TextUnit,
    /// A unit found in at least this many documents is boilerplate.
    pub min_docs: u64,
    pub position: Position,
    /// Documents left with fewer words than this after removal are dropped.
    pub min_words: usize,
    /// With `position = "edges"`, only the first and last this many units of
    /// each document are counted: a unit is boilerplate if it is repeated
    /// *at the edges* of pages, so a label common inside pages ("Note")
    /// that happens to sit under a header stays.
    pub edge_window: usize,
    pub partitions: usize,
}

impl Default for RepeatedLinesConfig {
    fn default() -> Self {
        RepeatedLinesConfig {
            mode: Mode::Filter,
            unit: TextUnit::Line,
            min_docs: 3,
            position: Position::Anywhere,
            min_words: 0,
            edge_window: 8,
            partitions: DEFAULT_PARTITIONS,
        }
    }
}

impl RepeatedLinesConfig {
    pub fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        let mut p = Vec::new();
        if self.min_docs < 2 {
            p.push((
                Some("min_docs"),
                "must be at least 2 (1 would remove every line)".into(),
            ));
        }
        if self.partitions == 0 || self.partitions > 65_536 {
            p.push((Some("partitions"), "must be in 1..=65536".into()));
        }
        if self.edge_window == 0 {
            p.push((Some("edge_window"), "must be at least 1".into()));
        }
        p
    }
}

pub struct RepeatedLines {
    config: RepeatedLinesConfig,
    frequent: Option<HashSet<u64, PassThroughState>>,
}

/// A unit of text: its byte range in the document and its key (None for blank).
struct Piece {
    start: usize,
    end: usize,
    key: Option<u64>,
}

/// The key of a line or paragraph: lower-cased, whitespace runs (no-break
/// spaces included) folded to one space, so reflowed copies still meet.
fn key_of(s: &str) -> Option<u64> {
    let mut norm = String::with_capacity(s.len());
    for w in s.split(char::is_whitespace).filter(|w| !w.is_empty()) {
        if !norm.is_empty() {
            norm.push(' ');
        }
        for c in w.chars() {
            norm.extend(c.to_lowercase());
        }
    }
    (!norm.is_empty()).then(|| xxh3_64(norm.as_bytes()))
}

/// Splits a text into lines or paragraphs; blank separators are pieces without a key.
fn pieces(text: &str, unit: TextUnit) -> Vec<Piece> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        if b == b'\n' {
            lines.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < text.len() {
        lines.push((start, text.len()));
    }
    let blank = |r: &(usize, usize)| text[r.0..r.1].trim().is_empty();
    match unit {
        TextUnit::Line => lines
            .iter()
            .map(|r| Piece {
                start: r.0,
                end: r.1,
                key: if blank(r) {
                    None
                } else {
                    key_of(&text[r.0..r.1])
                },
            })
            .collect(),
        TextUnit::Paragraph => {
            let mut out = Vec::new();
            let mut i = 0;
            while i < lines.len() {
                let b = blank(&lines[i]);
                let mut j = i;
                while j < lines.len() && blank(&lines[j]) == b {
                    j += 1;
                }
                let (s, e) = (lines[i].0, lines[j - 1].1);
                out.push(Piece {
                    start: s,
                    end: e,
                    key: if b { None } else { key_of(&text[s..e]) },
                });
                i = j;
            }
            out
        }
    }
}

impl RepeatedLines {
    pub fn new(config: RepeatedLinesConfig) -> Self {
        RepeatedLines {
            config,
            frequent: None,
        }
    }

    /// The text without its repeated units, and how many were removed.
    fn strip<'a>(
        &self,
        text: &'a str,
        frequent: &HashSet<u64, PassThroughState>,
    ) -> (std::borrow::Cow<'a, str>, u32) {
        let ps = pieces(text, self.config.unit);
        let repeated = |p: &Piece| p.key.is_some_and(|k| frequent.contains(&k));
        let mut remove = vec![false; ps.len()];
        match self.config.position {
            Position::Anywhere => {
                for (r, p) in remove.iter_mut().zip(&ps) {
                    *r = repeated(p);
                }
            }
            Position::Edges => {
                // Blank separators do not end a run.
                for i in 0..ps.len() {
                    if ps[i].key.is_none() {
                        continue;
                    }
                    if !repeated(&ps[i]) {
                        break;
                    }
                    remove[i] = true;
                }
                for i in (0..ps.len()).rev() {
                    if ps[i].key.is_none() {
                        continue;
                    }
                    if !repeated(&ps[i]) {
                        break;
                    }
                    remove[i] = true;
                }
            }
        }
        let removed = remove.iter().filter(|&&r| r).count() as u32;
        if removed == 0 {
            return (text.into(), 0);
        }
        let mut out = String::with_capacity(text.len());
        let mut last_blank_kept = true;
        for (p, r) in ps.iter().zip(&remove) {
            if *r {
                continue;
            }
            let part = &text[p.start..p.end];
            if p.key.is_none() {
                // One separator between kept pieces, none at the start.
                if last_blank_kept {
                    continue;
                }
                last_blank_kept = true;
            } else {
                last_blank_kept = false;
            }
            out.push_str(part);
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        (out.into(), removed)
    }
}

impl Stage for RepeatedLines {
    fn name(&self) -> &'static str {
        <RepeatedLinesConfig as StageSpec>::TYPE
    }

    fn mode(&self) -> Mode {
        self.config.mode
    }

    fn fields(&self) -> Vec<Field> {
        vec![Field::new("repeated_removed", DataType::UInt32, false)]
    }

    fn global(&mut self) -> Option<&mut dyn Global> {
        Some(self)
    }

    fn process(&self, batch: &RecordBatch) -> Result<StageOutput, StageError> {
        let text = Core::of(batch).text;
        let n = batch.num_rows();
        let Some(frequent) = &self.frequent else {
            // Scanning: each row's distinct keys.
            let mut keys = DocKeys::<u64>::with_rows(n);
            for t in text.iter() {
                let mut k: Vec<u64> = pieces(t.unwrap_or_default(), self.config.unit)
                    .into_iter()
                    .filter_map(|p| p.key)
                    .collect();
                let w = self.config.edge_window;
                if self.config.position == Position::Edges && k.len() > 2 * w {
                    k.drain(w..k.len() - w);
                }
                k.sort_unstable();
                k.dedup();
                keys.keys.extend(k);
                keys.end_row();
            }
            return Ok(StageOutput {
                columns: vec![Arc::new(UInt32Array::from(vec![0; n]))],
                scan: Some(Scanned::Keys64(keys)),
                ..Default::default()
            });
        };
        let mut new_text = StringBuilder::with_capacity(n, batch::text_bytes(batch) as usize);
        let mut removed = UInt32Builder::with_capacity(n);
        let mut drops = Vec::new();
        for (row, t) in text.iter().enumerate() {
            let t = t.unwrap_or_default();
            let (stripped, count) = self.strip(t, frequent);
            removed.append_value(count);
            if count > 0 {
                if stripped.trim().is_empty() {
                    drops.push(Drop {
                        row,
                        reason: Reason::RepeatedLinesOnly,
                        detail: format!("all {count} units repeated"),
                    });
                } else if self.config.min_words > 0 {
                    let words = crate::text::words(&stripped).len();
                    if words < self.config.min_words {
                        drops.push(Drop {
                            row,
                            reason: Reason::TooFewWordsAfterRepeated,
                            detail: format!("{words} words left after removing {count}"),
                        });
                    }
                }
            }
            new_text.append_value(&stripped);
        }
        Ok(StageOutput {
            text: Some(Arc::new(new_text.finish())),
            columns: vec![Arc::new(removed.finish())],
            drops,
            scan: None,
        })
    }
}

impl Global for RepeatedLines {
    fn partitions(&self) -> usize {
        self.config.partitions
    }

    fn layout(&self) -> ScanLayout {
        ScanLayout::Keys {
            wide: false,
            table: false,
            shingles: false,
            frequent: true,
        }
    }

    fn begin_scan(&mut self) {
        self.frequent = None;
    }

    fn begin_apply(&mut self, run: RunInput) -> Result<(), PhasedError> {
        let keys = run
            .frequent
            .ok_or_else(|| PhasedError::Missing("the frequent keys".into()))?;
        self.frequent = Some(keys.into_iter().collect());
        Ok(())
    }

    fn reduce(&self, plan: &Plan, part: usize) -> Result<Step, PhasedError> {
        phased::reduce_frequent(plan, part, self.config.min_docs).map(Step::counts)
    }

    fn cluster(&self, plan: &Plan) -> Result<Step, PhasedError> {
        phased::gather_frequent(plan).map(Step::counts)
    }
}

impl StageSpec for RepeatedLinesConfig {
    const TYPE: &'static str = "repeated_lines";

    fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        RepeatedLinesConfig::problems(self)
    }

    fn adds(&self) -> Vec<&'static str> {
        vec!["repeated_removed"]
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Stage>, StageError> {
        let _ = ctx;
        Ok(Box::new(RepeatedLines::new(self.clone())))
    }

    fn example() -> Self {
        RepeatedLinesConfig {
            unit: TextUnit::Paragraph,
            position: Position::Edges,
            min_docs: 4,
            edge_window: 5,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(unit: TextUnit, position: Position, frequent: &[&str]) -> RepeatedLines {
        let mut s = RepeatedLines::new(RepeatedLinesConfig {
            unit,
            position,
            ..Default::default()
        });
        s.frequent = Some(frequent.iter().filter_map(|f| key_of(f)).collect());
        s
    }

    #[test]
    fn keys_ignore_case_and_spacing() {
        assert_eq!(key_of("Home  |\u{a0}News"), key_of("home | news"));
        assert_ne!(key_of("home news"), key_of("home | news"));
        assert_eq!(key_of("  \t"), None);
    }

    #[test]
    fn removes_anywhere_or_only_at_the_edges() {
        let text = "Home | News\n\nBody one.\nCookie notice\nBody two.\n\nCookie notice\n";
        let f = ["home | news", "cookie notice"];
        let s = stage(TextUnit::Line, Position::Anywhere, &f);
        let (t, n) = s.strip(text, s.frequent.as_ref().unwrap());
        assert_eq!((t.as_ref(), n), ("Body one.\nBody two.", 3));
        let s = stage(TextUnit::Line, Position::Edges, &f);
        let (t, n) = s.strip(text, s.frequent.as_ref().unwrap());
        assert_eq!((t.as_ref(), n), ("Body one.\nCookie notice\nBody two.", 2));
    }

    #[test]
    fn paragraphs_are_blank_line_separated_runs() {
        let text = "Chapter 1\n\nA paragraph\nof two lines.\n\n\nNext page";
        let ps = pieces(text, TextUnit::Paragraph);
        let keyed: Vec<&str> = ps
            .iter()
            .filter(|p| p.key.is_some())
            .map(|p| text[p.start..p.end].trim())
            .collect();
        assert_eq!(
            keyed,
            vec!["Chapter 1", "A paragraph\nof two lines.", "Next page"]
        );
        let s = stage(
            TextUnit::Paragraph,
            Position::Edges,
            &["chapter 1", "next page"],
        );
        let (t, n) = s.strip(text, s.frequent.as_ref().unwrap());
        assert_eq!((t.as_ref(), n), ("A paragraph\nof two lines.", 2));
        let (same, none) = s.strip("Nothing repeated", s.frequent.as_ref().unwrap());
        assert_eq!((same.as_ref(), none), ("Nothing repeated", 0));
    }
}
