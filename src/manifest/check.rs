//! Parse, then check: every problem in a manifest, each with its line and column.
//!
//! serde stops at the first error, which makes users fix a manifest one
//! mistake per run. So the document is first parsed into toml's spanned tree,
//! then each source, stage and table is deserialized on its own and checked,
//! and all problems are returned together.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{Deserialize, IntoDeserializer};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{
    LoadedManifest, Manifest, OutputConfig, OutputFormat, ReaderConfig, SourceConfig,
    MANIFEST_VERSION,
};
use crate::io::expand_pattern;
use crate::stages::StageConfig;

/// One problem in a manifest, located in its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Line, from 1 (0 when the problem concerns the whole file).
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in one manifest file.
#[derive(Debug, Clone)]
pub struct Problems {
    /// The manifest file.
    pub file: PathBuf,
    /// Every problem, in text order.
    pub list: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.list.len();
        writeln!(
            f,
            "manifest {} has {n} problem{}:",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.list {
            writeln!(
                f,
                "  {}:{}:{}: {}",
                self.file.display(),
                p.line,
                p.column,
                p.message
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Reads, parses and checks a manifest, including that every input pattern
/// matches at least one readable file.
pub fn load(path: &Path) -> Result<LoadedManifest, Problems> {
    let fail = |message: String| Problems {
        file: path.to_path_buf(),
        list: vec![Problem {
            line: 0,
            column: 0,
            message,
        }],
    };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read manifest: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        fail(format!(
            "manifest is not valid UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let base = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."));
    let parsed = parse_spanned(&text).map_err(|list| Problems {
        file: path.to_path_buf(),
        list,
    })?;
    let mut list = Vec::new();
    let mut inputs = Vec::with_capacity(parsed.manifest.sources.len());
    // Each file once, however it is spelled (absolute and relative, links).
    let mut identities = std::collections::HashMap::new();
    for (source, spans) in parsed.manifest.sources.iter().zip(&parsed.path_spans) {
        let mut files = Vec::new();
        for (pattern, span) in source.paths.iter().zip(spans) {
            match expand_pattern(&base, pattern) {
                Ok(found) => files.extend(found),
                Err(e) => list.push(locate(
                    &text,
                    span.start,
                    format!("source `{}`: {e}", source.name),
                )),
            }
        }
        files.sort();
        files.dedup();
        files.retain(|(p, _)| match crate::io::file_identity(p) {
            None => true,
            Some(id) => match identities.entry(id) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(p.clone());
                    true
                }
                std::collections::hash_map::Entry::Occupied(o) => {
                    tracing::warn!(
                        "source `{}`: {} is the same file as {}; it is read once",
                        source.name,
                        p.display(),
                        o.get().display()
                    );
                    false
                }
            },
        });
        inputs.push(files);
    }
    let out = &parsed.manifest.output.dir;
    if list.is_empty() && !crate::files::is_url(out) {
        let patterns = parsed.manifest.patterns();
        if let Some(why) = crate::io::output_overlap(
            &crate::files::resolve(&base, out),
            &base,
            &patterns,
            inputs.iter().flatten().map(|(p, _)| p.as_path()),
        ) {
            list.push(locate(&text, parsed.output_dir_at, why));
        }
    }
    if !list.is_empty() {
        return Err(Problems {
            file: path.to_path_buf(),
            list,
        });
    }
    Ok(LoadedManifest {
        warnings: parsed.warnings,
        manifest: parsed.manifest,
        path: path.to_path_buf(),
        base,
        text,
        inputs,
    })
}

/// Parses and checks manifest text without touching the file system.
pub fn parse(text: &str) -> Result<Manifest, Vec<Problem>> {
    parse_spanned(text).map(|p| p.manifest)
}

struct Parsed {
    manifest: Manifest,
    /// Span of every `paths` entry, per source, for input errors found later.
    path_spans: Vec<Vec<Range<usize>>>,
    /// Where `output.dir` is written, for the overlap check against inputs.
    output_dir_at: usize,
    /// Located warnings (see [`LoadedManifest::warnings`]).
    warnings: Vec<Problem>,
}

fn parse_spanned(text: &str) -> Result<Parsed, Vec<Problem>> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(errors
            .iter()
            .map(|e| {
                locate(
                    text,
                    e.span().map(|s| s.start).unwrap_or(0),
                    e.message().to_string(),
                )
            })
            .collect());
    }
    let mut c = Checker {
        text,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    // The columns a batch has at each stage, and who added each.
    let mut columns: Vec<(String, String)> = crate::batch::core_fields()
        .iter()
        .map(|f| (f.name().clone(), "every document has it".to_string()))
        .collect();
    let doc = doc.into_inner();

    let mut version = None;
    let mut name = String::new();
    let mut sources = Vec::new();
    let mut path_spans = Vec::new();
    let mut stages = Vec::new();
    let mut output = None;
    let mut output_at = 0;
    let mut output_dir_at = 0;
    let mut reader = ReaderConfig::default();
    let mut slurm = crate::cluster::SlurmConfig::default();

    for (key, value) in doc.iter() {
        let key_start = key.span().start;
        match key.get_ref().as_ref() {
            "version" => {
                if let Some(v) = c.de::<u32>(value, "version") {
                    if v != MANIFEST_VERSION {
                        c.at(
                            value.span().start,
                            format!("unsupported version {v}: this forja reads version {MANIFEST_VERSION}"),
                        );
                    }
                    version = Some(v);
                }
            }
            "name" => {
                if let Some(v) = c.de::<String>(value, "name") {
                    name = v;
                }
            }
            "source" => {
                for (i, elem) in c.array(value, "source").into_iter().enumerate() {
                    let what = format!("source #{}", i + 1);
                    if let Some(s) = c.de::<SourceConfig>(elem, &what) {
                        path_spans.push(table_array_spans(elem, "paths"));
                        c.check_source(&s, elem, &sources);
                        sources.push(s);
                    }
                }
            }
            "stage" => {
                for (i, elem) in c.array(value, "stage").into_iter().enumerate() {
                    let what = format!("stage #{}", i + 1);
                    if let Some(s) = c.de::<StageConfig>(elem, &what) {
                        for (field, message) in s.problems() {
                            let at = field
                                .and_then(|f| table_key_span(elem, f))
                                .unwrap_or(elem.span())
                                .start;
                            c.at(at, format!("{what} ({}): {message}", s.type_name()));
                        }
                        c.check_columns(&s, elem, &what, &mut columns);
                        stages.push(s);
                    }
                }
            }
            "output" => {
                if let Some(o) = c.de::<OutputConfig>(value, "output") {
                    c.check_output(&o, value);
                    output_at = table_key_span(value, "formats")
                        .unwrap_or(value.span())
                        .start;
                    output_dir_at = table_key_span(value, "dir")
                        .unwrap_or(value.span())
                        .start;
                    output = Some(o);
                }
            }
            "reader" => {
                if let Some(r) = c.de::<ReaderConfig>(value, "reader") {
                    for (field, bad) in [
                        ("max_doc_bytes", r.max_doc_bytes == 0),
                        ("batch_bytes", r.batch_bytes == 0),
                        ("text_files_per_unit", r.text_files_per_unit == 0),
                    ] {
                        if bad {
                            let at = table_key_span(value, field).unwrap_or(value.span());
                            c.at(at.start, format!("reader.{field} must be greater than 0"));
                        }
                    }
                    reader = r;
                }
            }
            "slurm" => {
                if let Some(s) = c.de::<crate::cluster::SlurmConfig>(value, "slurm") {
                    for (field, message) in s.problems() {
                        let top = field.split('.').next().unwrap_or(&field);
                        let at = table_key_span(value, top).unwrap_or(value.span());
                        c.at(at.start, format!("slurm.{field}: {message}"));
                    }
                    slurm = s;
                }
            }
            other => c.at(
                key_start,
                format!(
                    "unknown key `{other}`, expected one of `version`, `name`, `source`, `stage`, `output`, `reader`, `slurm`"
                ),
            ),
        }
    }
    if version.is_none() {
        c.at(0, format!("missing `version = {MANIFEST_VERSION}`"));
    }
    if sources.is_empty() && !doc.contains_key("source") {
        c.at(
            0,
            "no `[[source]]`: a manifest needs at least one input".into(),
        );
    }
    if output.is_none() && !doc.contains_key("output") {
        c.at(0, "missing `[output]` table".into());
    }
    if let Some(o) = &output {
        c.check_megatron(o, &sources, &stages, output_at);
    }
    if !c.problems.is_empty() {
        c.problems.sort_by_key(|p| (p.line, p.column));
        c.problems.dedup();
        return Err(c.problems);
    }
    Ok(Parsed {
        manifest: Manifest {
            version: version.unwrap_or(MANIFEST_VERSION),
            name,
            sources,
            stages,
            output: output.expect("checked above"),
            reader,
            slurm,
        },
        path_spans,
        output_dir_at,
        warnings: c.warnings,
    })
}

struct Checker<'t> {
    text: &'t str,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Checker<'_> {
    fn at(&mut self, offset: usize, message: String) {
        self.problems.push(locate(self.text, offset, message));
    }

    fn warn(&mut self, offset: usize, message: String) {
        self.warnings.push(locate(self.text, offset, message));
    }

    /// What a stage reads must be there (added by an earlier stage, or a
    /// column of every document); what it adds must not be there yet.
    fn check_columns(
        &mut self,
        s: &StageConfig,
        elem: &Spanned<DeValue<'_>>,
        what: &str,
        columns: &mut Vec<(String, String)>,
    ) {
        let name = s.type_name();
        for r in s.reads() {
            if columns.iter().any(|(c, _)| *c == r.column) {
                continue;
            }
            // A fallback the manifest spells out is a choice, not a slip.
            let chosen = r.field.is_some_and(|f| table_key_span(elem, f).is_some());
            if !r.required && chosen {
                continue;
            }
            let at = r
                .field
                .and_then(|f| table_key_span(elem, f))
                .unwrap_or(elem.span())
                .start;
            let message = format!(
                "{what} ({name}) reads `{}`, which no earlier stage adds{}: {}",
                r.column,
                if r.column == "lang" {
                    " (a `lid` stage does)"
                } else {
                    ""
                },
                r.without
            );
            if r.required {
                self.at(at, message);
            } else {
                self.warn(at, message);
            }
        }
        for column in s.adds() {
            match columns.iter().find(|(c, _)| c == column) {
                Some((_, who)) => {
                    let message = format!("{what} ({name}) adds `{column}`, but {who}");
                    self.at(elem.span().start, message);
                }
                None => columns.push((column.to_string(), format!("{what} ({name}) adds it"))),
            }
        }
    }

    /// Deserializes one spanned value, recording a located problem on failure.
    fn de<T: for<'de> Deserialize<'de>>(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        what: &str,
    ) -> Option<T> {
        let owned = value.clone();
        match T::deserialize(owned.into_deserializer()) {
            Ok(v) => Some(v),
            Err(e) => {
                let at = e.span().unwrap_or(value.span()).start;
                self.at(at, format!("{what}: {}", e.message()));
                None
            }
        }
    }

    fn array<'v, 'i>(
        &mut self,
        value: &'v Spanned<DeValue<'i>>,
        what: &str,
    ) -> Vec<&'v Spanned<DeValue<'i>>> {
        match value.get_ref() {
            DeValue::Array(items) => items.iter().collect(),
            _ => {
                self.at(
                    value.span().start,
                    format!("`{what}` must be an array of tables (`[[{what}]]`)"),
                );
                Vec::new()
            }
        }
    }

    fn check_source(
        &mut self,
        s: &SourceConfig,
        elem: &Spanned<DeValue<'_>>,
        earlier: &[SourceConfig],
    ) {
        let span = |key: &str| table_key_span(elem, key).unwrap_or(elem.span()).start;
        let name_ok = s
            .name
            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && s.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !name_ok {
            self.at(
                span("name"),
                format!(
                    "source name {:?} must be ASCII letters, digits, `_`, `-` or `.`, starting with a letter, digit or `_` (it names output folders)",
                    s.name
                ),
            );
        }
        if earlier.iter().any(|e| e.name == s.name) {
            self.at(
                span("name"),
                format!("source name {:?} is used twice", s.name),
            );
        }
        if s.paths.is_empty() {
            self.at(
                span("paths"),
                format!("source `{}`: `paths` is empty", s.name),
            );
        }
        if s.text_field.is_empty() {
            self.at(
                span("text_field"),
                format!("source `{}`: `text_field` is empty", s.name),
            );
        }
        if !(s.weight.is_finite() && s.weight >= 0.0) {
            self.at(
                span("weight"),
                format!(
                    "source `{}`: weight {} must be a finite number >= 0",
                    s.name, s.weight
                ),
            );
        }
        if s.licence.trim().is_empty() {
            self.at(
                span("licence"),
                format!(
                    "source `{}`: `licence` is empty; say under which licence the data is used",
                    s.name
                ),
            );
        }
    }

    /// What the `megatron` format needs from the rest of the manifest.
    fn check_megatron(
        &mut self,
        o: &OutputConfig,
        sources: &[SourceConfig],
        stages: &[StageConfig],
        at: usize,
    ) {
        if !o.formats.contains(&OutputFormat::Megatron) {
            return;
        }
        if !stages.iter().any(|s| matches!(s, StageConfig::Tokenize(_))) {
            self.at(
                at,
                "the `megatron` format writes token ids: add a `tokenize` stage".into(),
            );
        }
        let m = &o.megatron;
        if m.shard_tokens == 0 {
            self.at(
                at,
                "output.megatron.shard_tokens must be greater than 0".into(),
            );
        }
        let total: f64 = m.split.iter().sum();
        if m.split.iter().any(|p| !(p.is_finite() && *p >= 0.0)) || (total - 100.0).abs() > 1e-9 {
            self.at(
                at,
                format!(
                    "output.megatron.split {:?} must be three shares of 100 (train, validation, test)",
                    m.split
                ),
            );
        }
        if m.split[0] <= 0.0 {
            self.at(at, "output.megatron.split gives nothing to train".into());
        }
        for (lang, f) in &m.factors {
            if !(f.is_finite() && *f >= 0.0) {
                self.at(
                    at,
                    format!("output.megatron.factors.{lang} = {f} is not a factor >= 0"),
                );
            }
        }
        if !m.by_source {
            if let Some(s) = sources.iter().find(|s| s.weight != sources[0].weight) {
                self.at(
                    at,
                    format!(
                        "sources `{}` (weight {}) and `{}` (weight {}) would share shards: set output.megatron.by_source = true for source weights to apply",
                        sources[0].name, sources[0].weight, s.name, s.weight
                    ),
                );
            }
        }
    }

    fn check_output(&mut self, o: &OutputConfig, value: &Spanned<DeValue<'_>>) {
        let span = |key: &str| table_key_span(value, key).unwrap_or(value.span()).start;
        if o.dir.trim().is_empty() {
            self.at(span("dir"), "output.dir is empty".into());
        } else if crate::files::is_url(&o.dir) {
            if let Err(e) = crate::io::remote::split(&o.dir) {
                self.at(span("dir"), format!("output.dir: {e}"));
            }
        }
        if o.formats.is_empty() {
            self.at(span("formats"), "output.formats is empty".into());
        }
        if o.shard_bytes == 0 {
            self.at(
                span("shard_bytes"),
                "output.shard_bytes must be greater than 0".into(),
            );
        }
        if !(1..=22).contains(&o.zstd_level) {
            self.at(
                span("zstd_level"),
                format!("output.zstd_level {} is outside 1..=22", o.zstd_level),
            );
        }
    }
}

/// Span of the value under `key` in a table value.
fn table_key_span(value: &Spanned<DeValue<'_>>, key: &str) -> Option<Range<usize>> {
    match value.get_ref() {
        DeValue::Table(t) => t
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v.span()),
        _ => None,
    }
}

/// Spans of the entries of the array under `key` in a table value.
fn table_array_spans(value: &Spanned<DeValue<'_>>, key: &str) -> Vec<Range<usize>> {
    let DeValue::Table(t) = value.get_ref() else {
        return Vec::new();
    };
    match t.iter().find(|(k, _)| k.get_ref().as_ref() == key) {
        Some((_, v)) => match v.get_ref() {
            DeValue::Array(items) => items.iter().map(|i| i.span()).collect(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    }
}

/// Turns a byte offset into a 1-based line and column (in characters).
fn locate(text: &str, offset: usize, message: String) -> Problem {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    Problem {
        line,
        column,
        message,
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "version = 1\n\n[[source]]\nname = \"a\"\npaths = [\"x.jsonl\"]\nformat = \"jsonl\"\nlicence = \"MIT\"\n\n[[stage]]\ntype = \"length\"\nmin_chars = 10\n\n[output]\ndir = \"out\"\n";

    #[test]
    fn good_manifest_parses() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.sources[0].name, "a");
        assert_eq!(m.stages.len(), 1);
    }

    #[test]
    fn every_problem_is_reported_with_its_location() {
        let bad = GOOD
            .replace("format = \"jsonl\"", "format = \"jsnl\"")
            .replace(
                "min_chars = 10",
                "min_chars = 10\nmax_chars = 5\ncolour = 1",
            )
            .replace("dir = \"out\"", "dir = \"out\"\nzstd_level = 99");
        let problems = parse(&bad).unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        // format on line 6; unknown `colour` on line 13; zstd_level on line 17.
        assert!(lines.contains(&6), "{problems:?}");
        assert!(
            problems.iter().any(|p| p.message.contains("colour")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.line == 17 && p.message.contains("zstd_level")),
            "{problems:?}"
        );
        assert!(problems.len() >= 3);
    }

    #[test]
    fn semantic_problems_point_at_the_field() {
        let bad = GOOD.replace("min_chars = 10", "min_chars = 10\nmax_chars = 5");
        let problems = parse(&bad).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, 11);
        assert!(problems[0].message.contains("min_chars"));
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let problems = parse("version = 1\n[[source]\nname = 3\n").unwrap_err();
        assert_eq!(problems[0].line, 2, "{problems:?}");
    }

    #[test]
    fn missing_parts_are_named() {
        let problems = parse("name = \"x\"\n").unwrap_err();
        let all: String = problems.iter().map(|p| p.message.clone()).collect();
        assert!(all.contains("version") && all.contains("source") && all.contains("output"));
    }

    #[test]
    fn locate_counts_characters_not_bytes() {
        let p = locate("é = 1\nàb = x", 10, String::new());
        assert_eq!((p.line, p.column), (2, 3)); // é=1 byte-wise is 2 bytes; offset 10 is the space after "àb"
    }
}
