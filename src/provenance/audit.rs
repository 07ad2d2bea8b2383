//! `forja audit`: which document, source and licence a token of a shard
//! belongs to, and where a document went.
//!
//! Every Megatron shard `<prefix>.bin/.idx` has `<prefix>.docs.jsonl.zst`
//! beside it: one JSON object per document, in shard order (id, source,
//! licence, input file and line; see `shards::parts::DocOrigin`). A
//! token's document is found from the `.idx` lengths alone.

use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use serde::Serialize;

use super::ProvenanceError;
use crate::files::MEGATRON_DIR;
use crate::ledger::Kind;
use crate::shards::parts::{with_suffix, DocOrigin, SHARD_DOCS_SUFFIX};
use crate::shards::IndexedReader;

/// A token's place: its shard, its document there and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenOrigin {
    pub shard: String,
    pub token: u64,
    /// Index of the document in the shard.
    pub document: usize,
    /// The document's tokens in the shard: `[start, end)`.
    pub tokens: (u64, u64),
    pub origin: DocOrigin,
}

fn bad(path: &Path, message: impl Into<String>) -> ProvenanceError {
    ProvenanceError::Bad {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The prefix of shard `shard`: a path to the shard (`.bin`, `.idx` or the
/// prefix), or a prefix relative to `OUT/megatron/` as blend files name it.
pub fn shard_prefix(out: &Path, shard: &str) -> PathBuf {
    let given = crate::shards::inspect::shard_prefix(Path::new(shard));
    if with_suffix(&given, ".idx").exists() {
        return given;
    }
    out.join(MEGATRON_DIR).join(given)
}

/// The provenance lines of a shard.
pub fn shard_origins(prefix: &Path) -> Result<Vec<DocOrigin>, ProvenanceError> {
    let path = with_suffix(prefix, SHARD_DOCS_SUFFIX);
    let packed = std::fs::read(&path).map_err(super::io_err(&path))?;
    let raw = zstd::decode_all(&packed[..]).map_err(super::io_err(&path))?;
    raw.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_slice(l).map_err(|e| bad(&path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// Which document of shard `shard` holds its token `token` (0-based).
pub fn token_origin(out: &Path, shard: &str, token: u64) -> Result<TokenOrigin, ProvenanceError> {
    let prefix = shard_prefix(out, shard);
    let r = IndexedReader::open(&prefix).map_err(|e| bad(&prefix, e.to_string()))?;
    let mut start = 0u64;
    let mut doc = None;
    for (i, &len) in r.lengths.iter().enumerate() {
        let end = start + len as u64;
        if token < end {
            doc = Some((i, start, end));
            break;
        }
        start = end;
    }
    let Some((i, s, e)) = doc else {
        return Err(bad(
            &prefix,
            format!("the shard has {start} tokens; token {token} is past its end"),
        ));
    };
    let origins = shard_origins(&prefix)?;
    if origins.len() != r.len() {
        return Err(bad(
            &with_suffix(&prefix, SHARD_DOCS_SUFFIX),
            format!(
                "{} documents listed for {} in the shard",
                origins.len(),
                r.len()
            ),
        ));
    }
    Ok(TokenOrigin {
        shard: prefix.display().to_string(),
        token,
        document: i,
        tokens: (s, e),
        origin: origins[i].clone(),
    })
}

/// Where a document went: dropped or rejected (with the ledger's reason and
/// detail: the kept copy's id for duplicates), or kept, with each shard and
/// token range it landed in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocFate {
    pub id: String,
    /// Its ledger row: `read` for a rejected document, else the stage that dropped it.
    pub dropped: Option<crate::ledger::LedgerRow>,
    /// The ledger's rows of kind `modified`: each stage that changed its
    /// text (PII redaction), with what it did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<crate::ledger::LedgerRow>,
    pub shards: Vec<Landed>,
    /// A kept document's row in the Parquet output: where it came from and
    /// every stage's columns (text and token ids left out), and the file;
    /// for a dropped one, the stages' columns as they were when it was
    /// dropped (the ledger keeps them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parquet: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Landed {
    pub shard: String,
    pub document: usize,
    pub tokens: (u64, u64),
    pub origin: DocOrigin,
}

/// Looks `id` up in the ledger and in every shard's provenance.
pub fn doc_fate(out: &Path, id: &str) -> Result<DocFate, ProvenanceError> {
    let mut fate = DocFate {
        id: id.to_string(),
        dropped: None,
        changed: Vec::new(),
        shards: Vec::new(),
        annotations: None,
        parquet: None,
    };
    for f in super::files_ending(&out.join("ledger"), ".parquet")? {
        let rows = crate::ledger::read_rows(&f).map_err(|e| bad(&f, e.to_string()))?;
        for mut r in rows.into_iter().filter(|r| r.id == id) {
            if r.reason.kind() == Kind::Modified {
                // The columns are the Parquet row's, shown below.
                r.annotations.clear();
                fate.changed.push(r);
            } else {
                fate.dropped = Some(r);
            }
        }
    }
    if let Some(r) = &mut fate.dropped {
        // Shown once, as JSON, beside the row.
        let ann = std::mem::take(&mut r.annotations);
        if !ann.is_empty() {
            fate.annotations = Some(serde_json::from_str(&ann).map_err(|e| {
                bad(
                    &out.join("ledger"),
                    format!("{id}: annotations are not JSON: {e}"),
                )
            })?);
        }
        return Ok(fate);
    }
    if let Some((file, row)) = parquet_row(&out.join("parquet"), id)? {
        fate.parquet = Some(file);
        fate.annotations = Some(row);
    }
    for prefix in shard_prefixes(&out.join(MEGATRON_DIR))? {
        let origins = shard_origins(&prefix)?;
        let Some(i) = origins.iter().position(|o| o.id == id) else {
            continue;
        };
        let r = IndexedReader::open(&prefix).map_err(|e| bad(&prefix, e.to_string()))?;
        let start: u64 = r.lengths[..i].iter().map(|&l| l as u64).sum();
        fate.shards.push(Landed {
            shard: prefix
                .strip_prefix(out.join(MEGATRON_DIR))
                .unwrap_or(&prefix)
                .display()
                .to_string(),
            document: i,
            tokens: (start, start + r.lengths[i] as u64),
            origin: origins[i].clone(),
        });
    }
    Ok(fate)
}

/// Every shard under `dir` (by its provenance file), sorted.
fn shard_prefixes(dir: &Path) -> Result<Vec<PathBuf>, ProvenanceError> {
    Ok(super::files_ending(dir, SHARD_DOCS_SUFFIX)?
        .into_iter()
        .map(|p| {
            let s = p.to_string_lossy();
            PathBuf::from(&s[..s.len() - SHARD_DOCS_SUFFIX.len()])
        })
        .collect())
}

/// Documents and tokens (bytes for dropped ones, which were never
/// tokenized) per licence and per source.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Licences {
    pub licences: std::collections::BTreeMap<String, Tally>,
    pub sources: std::collections::BTreeMap<String, Tally>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    pub shard_documents: u64,
    pub shard_tokens: u64,
    /// Dropped by a stage or rejected by a reader (from the ledger).
    pub dropped_documents: u64,
    pub dropped_bytes: u64,
}

/// Tallies every shard's provenance and the ledger; a source's licence
/// for dropped documents comes from the run manifest.
pub fn licences(out: &Path) -> Result<Licences, ProvenanceError> {
    let mut t = Licences::default();
    for prefix in shard_prefixes(&out.join(MEGATRON_DIR))? {
        let origins = shard_origins(&prefix)?;
        let r = IndexedReader::open(&prefix).map_err(|e| bad(&prefix, e.to_string()))?;
        for (o, &len) in origins.iter().zip(&r.lengths) {
            for e in [
                t.licences.entry(o.licence.clone()).or_default(),
                t.sources.entry(o.source.clone()).or_default(),
            ] {
                e.shard_documents += 1;
                e.shard_tokens += len as u64;
            }
        }
    }
    let rm: super::RunManifest = super::read_json(&out.join(super::RUN_MANIFEST))?;
    let licence_of = rm.licences();
    for f in super::files_ending(&out.join("ledger"), ".parquet")? {
        for r in crate::ledger::read_rows(&f).map_err(|e| bad(&f, e.to_string()))? {
            if r.reason.kind() == Kind::Modified {
                continue; // kept, and counted with the shards
            }
            let lic = licence_of
                .get(&r.source)
                .cloned()
                .unwrap_or_else(|| "unknown".into());
            for e in [
                t.licences.entry(lic).or_default(),
                t.sources.entry(r.source.clone()).or_default(),
            ] {
                e.dropped_documents += 1;
                e.dropped_bytes += r.bytes;
            }
        }
    }
    Ok(t)
}

/// The Parquet output row of document `id`, as JSON, and its file.
fn parquet_row(
    dir: &Path,
    id: &str,
) -> Result<Option<(String, serde_json::Value)>, ProvenanceError> {
    let files = super::files_ending(dir, ".parquet")?;
    for f in files {
        for b in crate::ledger::read_parquet(&f).map_err(|e| bad(&f, e.to_string()))? {
            let ids = b.column(crate::batch::ID).as_string::<i32>();
            let Some(row) = (0..b.num_rows()).find(|&r| ids.value(r) == id) else {
                continue;
            };
            let mut obj = serde_json::Map::new();
            for (field, col) in b.schema().fields().iter().zip(b.columns()) {
                if matches!(field.name().as_str(), "text" | "token_ids") {
                    continue;
                }
                if let Some(v) = crate::batch::cell_json(col.as_ref(), row) {
                    obj.insert(field.name().clone(), v);
                }
            }
            return Ok(Some((
                f.display().to_string(),
                serde_json::Value::Object(obj),
            )));
        }
    }
    Ok(None)
}
