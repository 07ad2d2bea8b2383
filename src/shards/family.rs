//! Families: every unit's parts of one (split, language[, source]),
//! concatenated in unit order into shards rolled over at a token count.
//!
//! ```text
//! OUT/megatron/<split>/<lang>[/<source>]/<nnnnn>.{bin,idx}
//! ```
//!
//! The parts are copied byte for byte (token ids are not decoded), so this
//! step runs at disk speed. Which family a rank merges, and so every shard's
//! name and content, depends only on the completed units.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::megatron::{IndexedReader, IndexedWriter, ShardError};
use super::parts::{with_suffix, Split, DOCS_SUFFIX, SHARD_DOCS_SUFFIX};

/// What one family holds, recorded once its shards are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Family {
    pub split: String,
    pub lang: String,
    /// Set when the manifest keeps sources apart (`by_source`).
    pub source: Option<String>,
    pub shards: Vec<ShardInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Path prefix relative to the `megatron` folder, as blend files name it.
    pub prefix: String,
    pub documents: u64,
    pub tokens: u64,
}

impl Family {
    pub fn tokens(&self) -> u64 {
        self.shards.iter().map(|s| s.tokens).sum()
    }
    pub fn documents(&self) -> u64 {
        self.shards.iter().map(|s| s.documents).sum()
    }
}

/// A family to merge: its key and its parts in unit order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Plan {
    pub split: Split,
    pub lang: String,
    pub source: Option<String>,
    /// Part prefixes (without `.bin`/`.idx`).
    pub parts: Vec<PathBuf>,
}

impl Plan {
    /// The family's folder under `megatron/`.
    pub fn rel_dir(&self) -> PathBuf {
        let mut d = PathBuf::from(self.split.name()).join(&self.lang);
        if let Some(s) = &self.source {
            d.push(s);
        }
        d
    }
}

/// Lists the families of the completed units' parts. `units` gives each
/// unit's parts folder and source, in unit order.
/// A unit without documents in a split has no folder for it; any other
/// error reading the folders is reported, never skipped.
pub fn plan(units: &[(PathBuf, &str)], by_source: bool) -> Result<Vec<Plan>, ShardError> {
    let mut families: std::collections::BTreeMap<(Split, String, Option<String>), Vec<PathBuf>> =
        Default::default();
    for (dir, source) in units {
        for split in Split::ALL {
            let d = dir.join(split.name());
            let entries = match fs::read_dir(&d) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                other => other.map_err(io_err(&d))?,
            };
            let mut langs = Vec::new();
            for e in entries {
                let name = e.map_err(io_err(&d))?.file_name();
                // Part names are language codes (`parts::lang_name`): ASCII.
                if let Some(lang) = name.to_str().and_then(|n| n.strip_suffix(".idx")) {
                    langs.push(lang.to_string());
                }
            }
            langs.sort();
            for lang in langs {
                let key = (split, lang.clone(), by_source.then(|| source.to_string()));
                families.entry(key).or_default().push(d.join(&lang));
            }
        }
    }
    Ok(families
        .into_iter()
        .map(|((split, lang, source), parts)| Plan {
            split,
            lang,
            source,
            parts,
        })
        .collect())
}

/// Bytes copied per read while concatenating parts.
const COPY_BYTES: usize = 16 << 20;

/// Writes a family's shards under `root/<rel_dir>/`, replacing any there.
pub fn merge(plan: &Plan, root: &Path, shard_tokens: u64) -> Result<Family, ShardError> {
    let dir = root.join(plan.rel_dir());
    if dir.exists() {
        // Shards of an interrupted attempt; the folder is this family's alone
        // (a by_source family's folder holds only its own shards too).
        for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let p = e.map_err(io_err(&dir))?.path();
            if p.is_file() {
                fs::remove_file(&p).map_err(io_err(&p))?;
            }
        }
    }
    let mut shards = Vec::new();
    let mut open: Option<IndexedWriter> = None;
    let mut buf = Vec::new();
    // The open shard's provenance lines, in its document order.
    let mut docs: Vec<u8> = Vec::new();
    for part in &plan.parts {
        let mut r = IndexedReader::open(part)?;
        let origin_path = with_suffix(part, DOCS_SUFFIX);
        let origin = fs::read(&origin_path).map_err(io_err(&origin_path))?;
        let lines: Vec<&[u8]> = origin.split_inclusive(|&b| b == b'\n').collect();
        if lines.len() != r.len() {
            return Err(ShardError::Format {
                path: origin_path.display().to_string(),
                message: format!("{} provenance lines for {} documents", lines.len(), r.len()),
            });
        }
        let mut i = 0;
        while i < r.len() {
            let w = match &mut open {
                Some(w) => w,
                None => {
                    let prefix = dir.join(format!("{:05}", shards.len()));
                    open.insert(IndexedWriter::create(&prefix, r.dtype)?)
                }
            };
            // The run of documents that fills this shard (at least one).
            let mut end = i;
            let mut tokens = w.tokens();
            while end < r.len() && (end == i || tokens < shard_tokens) {
                tokens += r.lengths[end] as u64;
                end += 1;
            }
            copy_run(&mut r, i..end, w, &mut buf)?;
            for l in &lines[i..end] {
                docs.extend_from_slice(l);
            }
            i = end;
            if w.tokens() >= shard_tokens {
                let w = open.take().expect("open");
                shards.push(finish(w, root, &mut docs)?);
            }
        }
    }
    if let Some(w) = open.take() {
        shards.push(finish(w, root, &mut docs)?);
    }
    Ok(Family {
        split: plan.split.name().into(),
        lang: plan.lang.clone(),
        source: plan.source.clone(),
        shards,
    })
}

/// Appends documents `docs` of `r` to `w`, in blocks of up to `COPY_BYTES`.
fn copy_run(
    r: &mut IndexedReader,
    docs: std::ops::Range<usize>,
    w: &mut IndexedWriter,
    buf: &mut Vec<u8>,
) -> Result<(), ShardError> {
    let size = r.dtype.size() as u64;
    let mut i = docs.start;
    while i < docs.end {
        let mut end = i + 1;
        let mut bytes = r.lengths[i] as u64 * size;
        while end < docs.end && bytes + r.lengths[end] as u64 * size <= COPY_BYTES as u64 {
            bytes += r.lengths[end] as u64 * size;
            end += 1;
        }
        r.read_run(i..end, buf)?;
        w.add_raw(buf, &r.lengths[i..end], r.dtype)?;
        i = end;
    }
    Ok(())
}

/// Commits a shard and, beside it, its documents' provenance.
fn finish(w: IndexedWriter, root: &Path, docs: &mut Vec<u8>) -> Result<ShardInfo, ShardError> {
    let prefix = w.prefix().to_path_buf();
    let (documents, tokens) = w.finish()?;
    let path = with_suffix(&prefix, SHARD_DOCS_SUFFIX);
    let packed = zstd::encode_all(&docs[..], 3).map_err(io_err(&path))?;
    crate::files::atomic_write(&path, &packed).map_err(io_err(&path))?;
    docs.clear();
    let rel = prefix.strip_prefix(root).unwrap_or(&prefix);
    Ok(ShardInfo {
        // Forward slashes whatever the platform: blend files are read on Linux clusters.
        prefix: rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        documents: documents as u64,
        tokens,
    })
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ShardError + '_ {
    move |source| ShardError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::megatron::DType;

    /// A part and its provenance lines, each document named by its first token.
    fn part(path: &Path, docs: &[Vec<u32>]) {
        let mut w = IndexedWriter::create(path, DType::U16).unwrap();
        let mut lines = String::new();
        for d in docs {
            w.add(d).unwrap();
            let o = crate::shards::parts::DocOrigin {
                id: format!("d{}", d[0]),
                source: "s".into(),
                licence: "l".into(),
                file: "f".into(),
                line: d[0] as u64,
            };
            lines += &(serde_json::to_string(&o).unwrap() + "\n");
        }
        w.finish().unwrap();
        fs::write(with_suffix(path, DOCS_SUFFIX), lines).unwrap();
    }

    #[test]
    fn parts_concatenate_in_unit_order_and_roll_at_documents() {
        let dir = tempfile::tempdir().unwrap();
        let u0 = dir.path().join("parts/000000");
        let u1 = dir.path().join("parts/000001");
        let a: Vec<Vec<u32>> = (0..5).map(|i| vec![i; 3]).collect();
        let b: Vec<Vec<u32>> = (10..14).map(|i| vec![i; 2]).collect();
        part(&u0.join("train/es"), &a);
        part(&u1.join("train/es"), &b);
        part(&u1.join("test/en"), &[vec![7]]);
        let plans = plan(&[(u0, "s0"), (u1, "s1")], false).unwrap();
        assert_eq!(plans.len(), 2);
        assert_eq!(
            (plans[0].split, plans[0].lang.as_str()),
            (Split::Train, "es")
        );
        assert_eq!(plans[0].parts.len(), 2);
        let root = dir.path().join("megatron");
        // 7 tokens per shard: docs are 3,3,3 | 3,3,2 | 2,2,2 ... never split.
        let fam = merge(&plans[0], &root, 7).unwrap();
        let sizes: Vec<(u64, u64)> = fam.shards.iter().map(|s| (s.documents, s.tokens)).collect();
        assert_eq!(sizes, [(3, 9), (3, 8), (3, 6)]);
        assert_eq!(fam.shards[1].prefix, "train/es/00001");
        let mut all = Vec::new();
        for s in &fam.shards {
            let mut r = IndexedReader::open(&root.join(&s.prefix)).unwrap();
            for i in 0..r.len() {
                all.push(r.get(i).unwrap());
            }
        }
        let want: Vec<Vec<u32>> = a.iter().chain(&b).cloned().collect();
        assert_eq!(all, want);
        // Each shard's provenance lists its own documents, in order.
        let mut ids = Vec::new();
        for s in &fam.shards {
            let docs = with_suffix(&root.join(&s.prefix), SHARD_DOCS_SUFFIX);
            let raw = zstd::decode_all(&std::fs::read(docs).unwrap()[..]).unwrap();
            let origins: Vec<crate::shards::parts::DocOrigin> = raw
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect();
            assert_eq!(origins.len() as u64, s.documents);
            ids.extend(origins.into_iter().map(|o| o.id));
        }
        let want_ids: Vec<String> = want.iter().map(|d| format!("d{}", d[0])).collect();
        assert_eq!(ids, want_ids);
        // Merging again replaces the shards rather than adding to them.
        let again = merge(&plans[0], &root, 100).unwrap();
        assert_eq!(again.shards.len(), 1);
        assert_eq!(fs::read_dir(root.join("train/es")).unwrap().count(), 3);
    }

    #[test]
    fn a_part_without_its_provenance_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let u0 = dir.path().join("0");
        part(&u0.join("train/es"), &[vec![1], vec![2]]);
        fs::write(u0.join("train/es").with_extension("docs.jsonl"), "{}\n").unwrap();
        let plans = plan(&[(u0, "a")], false).unwrap();
        let err = merge(&plans[0], &dir.path().join("m"), 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 provenance lines for 2 documents"), "{err}");
    }

    #[test]
    fn by_source_keeps_sources_apart() {
        let dir = tempfile::tempdir().unwrap();
        let u0 = dir.path().join("0");
        let u1 = dir.path().join("1");
        part(&u0.join("train/es"), &[vec![1]]);
        part(&u1.join("train/es"), &[vec![2]]);
        let plans = plan(&[(u0, "a"), (u1, "b")], true).unwrap();
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[1].rel_dir(), PathBuf::from("train/es/b"));
    }
}
