//! The run's funnel: documents and bytes in, out and dropped, per stage and source.
//!
//! Stats are kept per unit of work, saved with the unit's completion marker,
//! and summed in unit order, so resumed and multi-rank runs give the same
//! `stats.json` as one uninterrupted run. Nothing time-dependent goes in here:
//! the file must be byte-identical across thread counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Kind, LedgerRow, Reason};

/// The funnel of a run (or of one unit or rank): what was read, kept,
/// dropped and rejected, per source, per stage and per file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Documents read from the inputs.
    pub documents_read: u64,
    /// Bytes of text read.
    pub bytes_read: u64,
    /// Documents kept (in the outputs).
    pub kept: u64,
    /// Bytes of text kept.
    pub kept_bytes: u64,
    /// Documents a stage dropped, with a reason in the ledger.
    pub dropped: u64,
    /// Documents a reader rejected, with a reason in the ledger.
    pub rejected: u64,
    /// Kept documents whose text a stage changed (PII redaction), counted
    /// once per stage that changed them; not part of `read = kept + dropped +
    /// rejected`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub modified: u64,
    /// The same counts per source.
    pub sources: BTreeMap<String, SourceCounts>,
    /// `read` first, then every stage in manifest order.
    pub stages: Vec<StageCounts>,
    /// Every input file read, with its documents and how its reading ended.
    pub files: Vec<FileStats>,
    /// What global stages found for the whole run (e.g. the perplexity
    /// stage's per-language cut-offs), by their folder under `_forja/global`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub global: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceCounts {
    pub read: u64,
    pub kept: u64,
    pub dropped: u64,
    pub rejected: u64,
    pub bytes_read: u64,
    pub bytes_kept: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageCounts {
    pub name: String,
    pub docs_in: u64,
    pub bytes_in: u64,
    pub docs_out: u64,
    pub bytes_out: u64,
    pub dropped: BTreeMap<Reason, u64>,
    /// Documents the stage passed on with their text changed, by reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub modified: BTreeMap<Reason, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    Complete,
    /// The compressed stream broke; what came before the damage was read.
    Truncated,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileStats {
    pub source: String,
    pub path: String,
    pub documents: u64,
    /// Whitespace-only lines of JSON Lines files: not documents, but counted.
    pub blank_lines: u64,
    /// WARC records that carry no page (`warcinfo`, `request`, non-HTML
    /// responses, ...): not documents, but counted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_records: u64,
    pub status: FileStatus,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

impl Stats {
    /// An empty funnel with one row for the reader and one per stage.
    pub fn new(stage_names: &[&str]) -> Stats {
        let mut stages = vec![StageCounts {
            name: "read".into(),
            ..Default::default()
        }];
        stages.extend(stage_names.iter().map(|n| StageCounts {
            name: (*n).into(),
            ..Default::default()
        }));
        Stats {
            stages,
            ..Default::default()
        }
    }

    /// Documents seen by a reader (whether they could be parsed or not).
    pub fn read_many(&mut self, source: &str, docs: u64, bytes: u64) {
        self.documents_read += docs;
        self.bytes_read += bytes;
        let s = self.sources.entry(source.to_string()).or_default();
        s.read += docs;
        s.bytes_read += bytes;
        let r = &mut self.stages[0];
        r.docs_in += docs;
        r.bytes_in += bytes;
    }

    /// Documents that reached the output.
    pub fn keep_many(&mut self, source: &str, docs: u64, bytes: u64) {
        self.kept += docs;
        self.kept_bytes += bytes;
        let s = self.sources.entry(source.to_string()).or_default();
        s.kept += docs;
        s.bytes_kept += bytes;
    }

    /// A ledger row; `stage` is 0 for the reader, else 1 + stage index.
    pub fn ledger(&mut self, stage: usize, row: &LedgerRow) {
        let s = self.sources.entry(row.source.clone()).or_default();
        let counts = &mut self.stages[stage];
        match row.reason.kind() {
            Kind::Dropped => {
                self.dropped += 1;
                s.dropped += 1;
            }
            Kind::Rejected => {
                self.rejected += 1;
                s.rejected += 1;
            }
            Kind::Modified => {
                self.modified += 1;
                *counts.modified.entry(row.reason).or_default() += 1;
                return;
            }
        }
        *counts.dropped.entry(row.reason).or_default() += 1;
    }

    /// Documents and bytes a stage passed on.
    pub fn stage_flow(&mut self, stage: usize, docs_in: u64, bytes_in: u64, out: (u64, u64)) {
        let s = &mut self.stages[stage];
        s.docs_in += docs_in;
        s.bytes_in += bytes_in;
        s.docs_out += out.0;
        s.bytes_out += out.1;
    }

    /// Adds another part of the same run (a later unit or another rank).
    pub fn merge(&mut self, other: &Stats) {
        self.documents_read += other.documents_read;
        self.bytes_read += other.bytes_read;
        self.kept += other.kept;
        self.kept_bytes += other.kept_bytes;
        self.dropped += other.dropped;
        self.rejected += other.rejected;
        self.modified += other.modified;
        for (name, c) in &other.sources {
            let s = self.sources.entry(name.clone()).or_default();
            s.read += c.read;
            s.kept += c.kept;
            s.dropped += c.dropped;
            s.rejected += c.rejected;
            s.bytes_read += c.bytes_read;
            s.bytes_kept += c.bytes_kept;
        }
        if self.stages.is_empty() {
            self.stages = other
                .stages
                .iter()
                .map(|s| StageCounts {
                    name: s.name.clone(),
                    ..Default::default()
                })
                .collect();
        }
        for (mine, theirs) in self.stages.iter_mut().zip(&other.stages) {
            mine.docs_in += theirs.docs_in;
            mine.bytes_in += theirs.bytes_in;
            mine.docs_out += theirs.docs_out;
            mine.bytes_out += theirs.bytes_out;
            for (r, n) in &theirs.dropped {
                *mine.dropped.entry(*r).or_default() += n;
            }
            for (r, n) in &theirs.modified {
                *mine.modified.entry(*r).or_default() += n;
            }
        }
        self.files.extend(other.files.iter().cloned());
    }

    /// `read = kept + dropped + rejected`, overall and per source.
    pub fn check_invariant(&self) -> Result<(), String> {
        let total = self.kept + self.dropped + self.rejected;
        if total != self.documents_read {
            return Err(format!(
                "documents read ({}) != kept ({}) + dropped ({}) + rejected ({})",
                self.documents_read, self.kept, self.dropped, self.rejected
            ));
        }
        for (name, s) in &self.sources {
            if s.read != s.kept + s.dropped + s.rejected {
                return Err(format!(
                    "source `{name}`: read ({}) != kept ({}) + dropped ({}) + rejected ({})",
                    s.read, s.kept, s.dropped, s.rejected
                ));
            }
        }
        Ok(())
    }

    /// What a user should not miss: sources that kept none of the
    /// documents they read, and why (the `read` step's rejections name a
    /// wrong `text_field`; drops name the stage). Empty when all is well.
    pub fn warnings(&self) -> Vec<String> {
        // Reasons are counted per stage, not per source: the run's reasons.
        let why: Vec<String> = self
            .stages
            .iter()
            .filter_map(|stage| {
                let r: Vec<String> = stage
                    .dropped
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(r, n)| format!("{}={n}", r.as_str()))
                    .collect();
                (!r.is_empty()).then(|| format!("{}: {}", stage.name, r.join(" ")))
            })
            .collect();
        let why = if why.is_empty() {
            "no reason recorded".to_string()
        } else {
            why.join("; ")
        };
        let missing_text = self.stages.iter().any(|st| {
            st.dropped
                .get(&Reason::MissingTextField)
                .is_some_and(|n| *n > 0)
        });
        let mut out = Vec::new();
        for (name, s) in &self.sources {
            if s.read == 0 || s.kept > 0 {
                continue;
            }
            let mut w = format!(
                "source `{name}` kept none of its {} documents ({} rejected, {} dropped; reasons in this run: {why})",
                s.read, s.rejected, s.dropped
            );
            if missing_text {
                w.push_str(": is the source's `text_field` the field that holds the text?");
            }
            out.push(w);
        }
        out
    }

    /// The funnel as a table for the terminal.
    pub fn funnel(&self) -> String {
        let mut out = String::new();
        let mb = |b: u64| b as f64 / 1e6;
        out.push_str(&format!(
            "{:<16} {:>12} {:>12} {:>12} {:>10}  reasons\n",
            "stage", "docs in", "docs out", "dropped", "MB out"
        ));
        for s in &self.stages {
            let dropped: u64 = s.dropped.values().sum();
            let reasons = s
                .dropped
                .iter()
                .chain(&s.modified)
                .map(|(r, n)| format!("{}={n}", r.as_str()))
                .collect::<Vec<_>>()
                .join(" ");
            out.push_str(&format!(
                "{:<16} {:>12} {:>12} {:>12} {:>10.2}  {reasons}\n",
                s.name,
                s.docs_in,
                s.docs_out,
                dropped,
                mb(s.bytes_out)
            ));
        }
        out.push_str(&format!(
            "\nread {} documents ({:.2} MB): kept {} ({:.2} MB), dropped {}, rejected {}\n",
            self.documents_read,
            mb(self.bytes_read),
            self.kept,
            mb(self.kept_bytes),
            self.dropped,
            self.rejected
        ));
        if self.modified > 0 {
            out.push_str(&format!(
                "text changed in {} kept documents (ledger rows of kind modified)\n",
                self.modified
            ));
        }
        for (name, s) in &self.sources {
            out.push_str(&format!(
                "  source {name:<20} read {:>9}  kept {:>9}  dropped {:>9}  rejected {:>7}\n",
                s.read, s.kept, s.dropped, s.rejected
            ));
        }
        let truncated: Vec<&FileStats> = self
            .files
            .iter()
            .filter(|f| f.status == FileStatus::Truncated)
            .collect();
        for f in truncated {
            out.push_str(&format!(
                "  truncated file: {} ({})\n",
                f.path,
                f.detail.as_deref().unwrap_or("")
            ));
        }
        out
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(reason: Reason) -> LedgerRow {
        LedgerRow {
            id: "a:1".into(),
            source: "a".into(),
            file: "f".into(),
            line: 1,
            stage: "x".into(),
            reason,
            detail: String::new(),
            bytes: 0,
            annotations: String::new(),
        }
    }

    #[test]
    fn invariant_holds_and_fails() {
        let mut s = Stats::new(&["length"]);
        s.read_many("a", 3, 30);
        s.keep_many("a", 1, 10);
        s.ledger(1, &row(Reason::TooShort));
        assert!(s.check_invariant().is_err());
        s.ledger(0, &row(Reason::MalformedJson));
        s.check_invariant().unwrap();
        assert_eq!(s.stages[1].dropped[&Reason::TooShort], 1);
        // The kept document's text was changed: counted, but not as a drop.
        s.ledger(1, &row(Reason::PiiRedacted));
        s.check_invariant().unwrap();
        assert_eq!((s.dropped, s.modified), (1, 1));
        assert_eq!(s.stages[1].modified[&Reason::PiiRedacted], 1);
        assert_eq!(s.stages[1].dropped.len(), 1);
        assert!(s.funnel().contains("pii_redacted=1"));
        let mut twice = s.clone();
        twice.merge(&s);
        assert_eq!(twice.stages[1].modified[&Reason::PiiRedacted], 2);
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::new(&["length"]);
        a.read_many("a", 1, 5);
        a.keep_many("a", 1, 5);
        let mut b = a.clone();
        b.merge(&a);
        assert_eq!(b.documents_read, 2);
        assert_eq!(b.sources["a"].kept, 2);
        b.check_invariant().unwrap();
        assert!(b.funnel().contains("read 2 documents"));
    }

    #[test]
    fn a_source_that_keeps_nothing_is_named_with_its_reasons() {
        let mut s = Stats::new(&["length"]);
        s.read_many("a", 2, 20);
        s.ledger(0, &row(Reason::MissingTextField));
        s.ledger(0, &row(Reason::MissingTextField));
        s.read_many("b", 1, 10);
        s.keep_many("b", 1, 10);
        s.check_invariant().unwrap();
        let w = s.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("`a` kept none of its 2 documents"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("missing_text_field=2") && w[0].contains("`text_field`"));
        let mut ok = Stats::new(&["length"]);
        ok.read_many("a", 1, 5);
        ok.keep_many("a", 1, 5);
        assert!(ok.warnings().is_empty());
    }
}
