//! Corpus-wide dedup as phases of independent tasks.
//!
//! A global stage runs in four steps, with a barrier after each:
//!
//! 1. **scan** (one task per rank, over its units): the pipeline up to the
//!    stage runs and the stage writes, per unit, its keys into hash-range
//!    partitions (`keys/<unit>.bin`), with a table of document ids and
//!    scores and, when verification is on, the documents' shingles;
//! 2. **reduce** (partition `p` on rank `p % W`): every unit's partition
//!    `p` is sorted in a memory budget (external merge past it) and equal
//!    keys become edges between documents (`reduce/<p>.bin`), or, for
//!    repeated lines, the keys seen in enough documents;
//! 3. **cluster** (one task): union-find over compact `u32` document
//!    indices picks the document each cluster keeps and writes, per unit,
//!    the ordinals to drop and the id of their kept representative
//!    (`decisions/<unit>.bin`);
//! 4. **apply**: the next pass over the input drops them, with the reason
//!    and the representative's id in the ledger.
//!
//! A document's index is its unit's offset (the documents of all earlier
//! units that reached the stage) plus its ordinal in the unit, so indices,
//! and every decision, are the same whatever the world size.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::extsort::{Key, Sorter};
use super::sections::{SectionWriter, Sections};
use super::union_find::{SizedUnionFind, UnionFind};
use super::DedupError;

/// What a sectioned file holds.
pub const TAG_KEYS64: u32 = 0x4B45_0008;
pub const TAG_KEYS128: u32 = 0x4B45_0010;
pub const TAG_EDGES: u32 = 0x4544_4745;
/// Edges with their band key, in datatrove's chain order (`keep = datatrove`).
pub const TAG_CHAIN: u32 = 0x4348_4149;
pub const TAG_DECISIONS: u32 = 0x4445_4349;
pub const TAG_FREQUENT: u32 = 0x4652_4551;
/// A unit's word counts (the tokenizer-training scan).
pub const TAG_WORDS: u32 = 0x5743_0001;
/// A unit's perplexity scores (the perplexity scan).
pub const TAG_SCORES: u32 = 0x5050_4c01;

fn keys_tag<K: Key>() -> u32 {
    if K::BYTES == 8 {
        TAG_KEYS64
    } else {
        TAG_KEYS128
    }
}

/// Opens a unit's keys file, whatever its key width.
fn open_keys(path: &Path) -> Result<Sections, DedupError> {
    // A tokenizer-training scan writes word counts in the same sectioned file.
    Sections::open_any(path, &[TAG_KEYS64, TAG_KEYS128, TAG_WORDS, TAG_SCORES])
}

/// Appends a `(u32, string)` record: a document-table entry (score, id) or
/// a decision (ordinal, id of the kept document).
fn put_record(out: &mut Vec<u8>, n: u32, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s);
}

/// Calls `f` on every `(u32, string)` record of a section.
fn for_each_record(
    bytes: &[u8],
    path: &Path,
    mut f: impl FnMut(u32, &str),
) -> Result<(), DedupError> {
    let mut at = 0;
    while at < bytes.len() {
        let bad = || DedupError::Corrupt {
            path: path.display().to_string(),
            message: format!("damaged record at byte {at}"),
        };
        let head = bytes.get(at..at + 6).ok_or_else(bad)?;
        let n = u32::from_le_bytes(head[..4].try_into().expect("4"));
        let len = u16::from_le_bytes(head[4..6].try_into().expect("2")) as usize;
        let s = bytes.get(at + 6..at + 6 + len).ok_or_else(bad)?;
        f(n, std::str::from_utf8(s).map_err(|_| bad())?);
        at += 6 + len;
    }
    Ok(())
}

/// File name of a global stage's summary (see [`GlobalDir::summary`]).
pub const SUMMARY: &str = "summary.json";

/// Where one global stage keeps its intermediates.
#[derive(Debug, Clone)]
pub struct GlobalDir {
    pub root: PathBuf,
    /// Identifies the run (manifest and inputs): markers of another run do not count.
    pub run: String,
}

impl GlobalDir {
    pub fn new(root: PathBuf, run: String) -> Self {
        GlobalDir { root, run }
    }
    pub fn keys(&self, unit: usize) -> PathBuf {
        self.root.join("keys").join(format!("{unit:06}.bin"))
    }
    pub fn scan_marker(&self, unit: usize) -> PathBuf {
        self.root.join("keys").join(format!("{unit:06}.done.json"))
    }
    pub fn reduced(&self, part: usize) -> PathBuf {
        self.root.join("reduce").join(format!("{part:05}.bin"))
    }
    pub fn reduce_marker(&self, part: usize) -> PathBuf {
        self.root
            .join("reduce")
            .join(format!("{part:05}.done.json"))
    }
    pub fn cluster_marker(&self) -> PathBuf {
        self.root.join("cluster.done.json")
    }
    pub fn decisions(&self, unit: usize) -> PathBuf {
        self.root.join("decisions").join(format!("{unit:06}.bin"))
    }
    /// What the cluster step found for the whole run, as JSON: `stats.json`
    /// reports it under `global` (the perplexity stage's cut-offs).
    pub fn summary(&self) -> PathBuf {
        self.root.join(SUMMARY)
    }
    pub fn frequent(&self) -> PathBuf {
        self.root.join("frequent.bin")
    }
    fn scratch(&self, name: &str) -> PathBuf {
        self.root.join("scratch").join(name)
    }

    /// True if `path` is a marker of this run.
    pub fn marker_ok(&self, path: &Path) -> bool {
        read_marker(path).is_some_and(|m| m.run == self.run)
    }

    /// Writes unit `unit`'s scan file whole: `sections[i]` as section `i`
    /// of a sectioned file tagged `tag`, which the scan saw `docs`
    /// documents for. For stages whose scan keeps its own records (scores,
    /// word counts) rather than keys.
    pub fn write_unit_sections(
        &self,
        unit: usize,
        tag: u32,
        docs: u64,
        sections: &[Vec<u8>],
    ) -> Result<(), DedupError> {
        let path = self.keys(unit);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(super::sections::io(p))?;
        }
        let mut w = SectionWriter::new(&path, sections.len(), tag, 64 << 20);
        w.set_docs(docs);
        for (i, bytes) in sections.iter().enumerate() {
            w.append(i, bytes)?;
        }
        w.finish()
    }

    /// Section `s` of unit `unit`'s scan file (written with `tag`),
    /// checksum verified.
    pub fn read_unit_section(
        &self,
        unit: usize,
        tag: u32,
        s: usize,
    ) -> Result<Vec<u8>, DedupError> {
        Sections::open_any(&self.keys(unit), &[tag])?.read(s)
    }

    /// Writes what the reduce step found in partition `part`, whole.
    pub fn write_reduced(&self, part: usize, bytes: &[u8]) -> Result<(), DedupError> {
        let out = self.reduced(part);
        if let Some(p) = out.parent() {
            std::fs::create_dir_all(p).map_err(super::sections::io(p))?;
        }
        crate::files::atomic_write(&out, bytes).map_err(super::sections::io(&out))
    }

    /// What [`GlobalDir::write_reduced`] wrote for partition `part`.
    pub fn read_reduced(&self, part: usize) -> Result<Vec<u8>, DedupError> {
        let path = self.reduced(part);
        std::fs::read(&path).map_err(super::sections::io(&path))
    }

    /// Writes the cluster step's summary of the whole run (JSON).
    pub fn write_summary(&self, bytes: &[u8]) -> Result<(), DedupError> {
        let path = self.summary();
        crate::files::atomic_write(&path, bytes).map_err(super::sections::io(&path))
    }

    /// What [`GlobalDir::write_summary`] wrote.
    pub fn read_summary(&self) -> Result<Vec<u8>, DedupError> {
        let path = self.summary();
        std::fs::read(&path).map_err(super::sections::io(&path))
    }

    pub fn write_marker(
        &self,
        path: &Path,
        counts: BTreeMap<String, u64>,
    ) -> Result<(), DedupError> {
        let m = Marker {
            run: self.run.clone(),
            counts,
        };
        let mut bytes = serde_json::to_vec_pretty(&m).expect("marker serializes");
        bytes.push(b'\n');
        crate::files::atomic_write(path, &bytes).map_err(|source| DedupError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

/// A step's completion marker: written last, after the files it vouches for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    pub run: String,
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
}

pub fn read_marker(path: &Path) -> Option<Marker> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// What the reduce and cluster steps know about the scanned units.
#[derive(Debug, Clone)]
pub struct Plan {
    pub dir: GlobalDir,
    /// Every unit of the run, in order, with the documents that reached the stage.
    pub units: Vec<(usize, u64)>,
    /// Index of each unit's first document.
    pub offsets: Vec<u64>,
    pub total: u64,
    pub partitions: usize,
    /// Memory budget in bytes.
    pub mem: usize,
}

impl Plan {
    /// Reads the scanned units' headers; every unit must have been scanned.
    pub fn load(
        dir: &GlobalDir,
        units: &[usize],
        partitions: usize,
        mem: usize,
    ) -> Result<Plan, DedupError> {
        let mut out = Vec::with_capacity(units.len());
        let mut offsets = Vec::with_capacity(units.len());
        let mut total = 0u64;
        for &u in units {
            let s = open_keys(&dir.keys(u))?;
            offsets.push(total);
            total += s.docs;
            out.push((u, s.docs));
        }
        if total > u32::MAX as u64 {
            return Err(DedupError::TooMany { docs: total });
        }
        Ok(Plan {
            dir: dir.clone(),
            units: out,
            offsets,
            total,
            partitions,
            mem,
        })
    }

    /// The unit position and ordinal of a document index.
    fn locate(&self, doc: u32) -> (usize, u32) {
        let i = self.offsets.partition_point(|&o| o <= doc as u64) - 1;
        (i, (doc as u64 - self.offsets[i]) as u32)
    }
}

// ---------------------------------------------------------------- scan side

/// Section layout of a document-level keys file: `partitions` key sections,
/// then the document table, then shingles and their offsets.
fn doc_table(parts: usize) -> usize {
    parts
}
fn shingle_data(parts: usize) -> usize {
    parts + 1
}
fn shingle_index(parts: usize) -> usize {
    parts + 2
}

/// One unit's keys, written as the scan sees its documents.
pub struct UnitKeys {
    unit: usize,
    w: SectionWriter,
    parts: usize,
    docs: u32,
    rec: Vec<u8>,
}

impl UnitKeys {
    pub fn new<K: Key>(dir: &GlobalDir, unit: usize, parts: usize, budget: usize) -> Self {
        UnitKeys {
            unit,
            w: SectionWriter::new(&dir.keys(unit), parts + 3, keys_tag::<K>(), budget),
            parts,
            docs: 0,
            rec: Vec::with_capacity(32),
        }
    }

    pub fn unit(&self) -> usize {
        self.unit
    }

    /// Starts the next document without a table entry (for stages whose
    /// decisions are not per document); returns its ordinal in the unit.
    pub fn next_doc(&mut self) -> u32 {
        self.docs += 1;
        self.docs - 1
    }

    /// Starts the next document, with its id and score in the document
    /// table; returns its ordinal in the unit.
    pub fn doc(
        &mut self,
        id: &str,
        score: u32,
        shingles: Option<&[u32]>,
    ) -> Result<u32, DedupError> {
        let ord = self.next_doc();
        self.rec.clear();
        put_record(&mut self.rec, score, id);
        self.w.append(doc_table(self.parts), &self.rec)?;
        if let Some(sh) = shingles {
            let start = self.w.len(shingle_data(self.parts));
            self.w
                .append(shingle_index(self.parts), &start.to_le_bytes())?;
            for s in sh {
                self.w.append(shingle_data(self.parts), &s.to_le_bytes())?;
            }
        }
        Ok(ord)
    }

    pub fn key<K: Key>(&mut self, key: K, ord: u32) -> Result<(), DedupError> {
        self.rec.clear();
        key.put(&mut self.rec);
        self.rec.extend_from_slice(&ord.to_le_bytes());
        let p = key.partition(self.parts);
        self.w.append(p, &self.rec)
    }

    pub fn finish(mut self, with_shingles: bool) -> Result<(), DedupError> {
        if with_shingles {
            let end = self.w.len(shingle_data(self.parts));
            self.w
                .append(shingle_index(self.parts), &end.to_le_bytes())?;
        }
        self.w.set_docs(self.docs as u64);
        self.w.finish()
    }
}

fn parse_records<K: Key>(
    bytes: &[u8],
    mut f: impl FnMut(K, u32) -> Result<(), DedupError>,
) -> Result<(), DedupError> {
    for r in bytes.chunks_exact(K::BYTES + 4) {
        f(
            K::get(r),
            u32::from_le_bytes(r[K::BYTES..].try_into().expect("4 bytes")),
        )?;
    }
    Ok(())
}

mod cluster;
mod reduce;

pub use cluster::*;
pub use reduce::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, GlobalDir) {
        let t = tempfile::tempdir().unwrap();
        let d = GlobalDir::new(t.path().join("g"), "run-1".into());
        (t, d)
    }

    #[test]
    fn a_units_sections_come_back_as_written_and_only_under_their_tag() {
        let (_t, d) = dir();
        let sections = vec![b"first".to_vec(), Vec::new(), vec![7u8; 100_000]];
        d.write_unit_sections(3, TAG_SCORES, 42, &sections).unwrap();
        for (i, s) in sections.iter().enumerate() {
            assert_eq!(&d.read_unit_section(3, TAG_SCORES, i).unwrap(), s);
        }
        // Another stage's tag, a missing section or unit: errors, not data.
        assert!(d.read_unit_section(3, TAG_WORDS, 0).is_err());
        assert!(d.read_unit_section(3, TAG_SCORES, 3).is_err());
        assert!(d.read_unit_section(4, TAG_SCORES, 0).is_err());
        // A flipped byte fails the checksum.
        let path = d.keys(3);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(d.read_unit_section(3, TAG_SCORES, 2).is_err());
    }

    #[test]
    fn reduced_partitions_and_the_summary_are_whole_files() {
        let (_t, d) = dir();
        assert!(d.read_reduced(0).is_err());
        d.write_reduced(0, b"part zero").unwrap();
        d.write_reduced(1, b"").unwrap();
        assert_eq!(d.read_reduced(0).unwrap(), b"part zero");
        assert_eq!(d.read_reduced(1).unwrap(), b"");
        d.write_summary(b"{\"a\": 1}\n").unwrap();
        assert_eq!(d.read_summary().unwrap(), b"{\"a\": 1}\n");
        // Written under a temporary name and renamed: nothing else is left.
        let names: Vec<String> = std::fs::read_dir(d.root.join("reduce"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    }

    #[test]
    fn a_marker_counts_only_for_its_own_run() {
        let (_t, d) = dir();
        let m = d.cluster_marker();
        assert!(!d.marker_ok(&m));
        std::fs::create_dir_all(&d.root).unwrap();
        d.write_marker(&m, [("edges".to_string(), 5)].into())
            .unwrap();
        assert!(d.marker_ok(&m));
        assert_eq!(read_marker(&m).unwrap().counts["edges"], 5);
        let other = GlobalDir::new(d.root.clone(), "run-2".into());
        assert!(
            !other.marker_ok(&m),
            "a marker of another run does not count"
        );
        std::fs::write(&m, b"{ not json").unwrap();
        assert!(!d.marker_ok(&m));
    }
}
