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

/// Feeds partition `part` of every unit into a sorter, as global indices.
fn sort_partition<K: Key>(plan: &Plan, part: usize, name: &str) -> Result<Sorter<K>, DedupError> {
    let scratch = plan.dir.scratch(&format!("{name}-{part:05}"));
    if let Some(d) = scratch.parent() {
        std::fs::create_dir_all(d).map_err(|source| DedupError::Io {
            path: d.display().to_string(),
            source,
        })?;
    }
    let mut sorter = Sorter::<K>::new(&scratch, plan.mem);
    for (i, &(u, docs)) in plan.units.iter().enumerate() {
        if docs == 0 {
            continue;
        }
        let s = Sections::open(&plan.dir.keys(u), keys_tag::<K>())?;
        let bytes = s.read(part)?;
        let base = plan.offsets[i];
        parse_records::<K>(&bytes, |k, ord| {
            if ord as u64 >= docs {
                return Err(DedupError::Corrupt {
                    path: s.path().display().to_string(),
                    message: format!("ordinal {ord} past the unit's {docs} documents"),
                });
            }
            sorter.push(k, (base + ord as u64) as u32)
        })?;
    }
    Ok(sorter)
}

// ---------------------------------------------------------------- reduce

/// Opens units' shingle tables for random lookups (a bounded number open at once).
struct ShingleStore<'a> {
    plan: &'a Plan,
    open: std::sync::Mutex<HashMap<usize, std::sync::Arc<Sections>>>,
}

impl ShingleStore<'_> {
    fn get(&self, doc: u32, out: &mut Vec<u32>) -> Result<(), DedupError> {
        let (i, ord) = self.plan.locate(doc);
        let s = {
            let mut open = self.open.lock().expect("no panics while held");
            if let Some(s) = open.get(&i) {
                s.clone()
            } else {
                if open.len() >= 256 {
                    open.clear();
                }
                let s = std::sync::Arc::new(open_keys(&self.plan.dir.keys(self.plan.units[i].0))?);
                open.insert(i, s.clone());
                s
            }
        };
        let parts = self.plan.partitions;
        let mut idx = [0u8; 16];
        s.read_at(shingle_index(parts), ord as u64 * 8, &mut idx)?;
        let start = u64::from_le_bytes(idx[..8].try_into().expect("8"));
        let end = u64::from_le_bytes(idx[8..].try_into().expect("8"));
        if end < start || (end - start) % 4 != 0 {
            return Err(DedupError::Corrupt {
                path: s.path().display().to_string(),
                message: "damaged shingle index".into(),
            });
        }
        let mut bytes = vec![0u8; (end - start) as usize];
        s.read_at(shingle_data(parts), start, &mut bytes)?;
        out.clear();
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4"))),
        );
        Ok(())
    }
}

/// Jaccard similarity of two sorted, deduplicated lists.
pub fn sorted_jaccard(a: &[u32], b: &[u32]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// The reduce step of document-level dedup: documents sharing a key become
/// edges (each to the group's first and to its predecessor), verified by
/// exact Jaccard (at least `verify`) over the stored shingles when asked.
pub fn reduce_edges<K: Key>(
    plan: &Plan,
    part: usize,
    verify: Option<f64>,
) -> Result<BTreeMap<String, u64>, DedupError> {
    reduce::<K>(plan, part, verify, false)
}

/// The reduce step for `keep = datatrove`: per group, the chain of edges
/// between consecutive members, each with its 64-bit key, unsorted and not
/// deduplicated, so that the cluster step can replay datatrove's edge order.
pub fn reduce_chains(
    plan: &Plan,
    part: usize,
    verify: Option<f64>,
) -> Result<BTreeMap<String, u64>, DedupError> {
    reduce::<u64>(plan, part, verify, true)
}

fn reduce<K: Key>(
    plan: &Plan,
    part: usize,
    verify: Option<f64>,
    chain: bool,
) -> Result<BTreeMap<String, u64>, DedupError> {
    let sorter = sort_partition::<K>(plan, part, "edges")?;
    let spilled_runs = sorter.runs() as u64;
    let tag = if chain { TAG_CHAIN } else { TAG_EDGES };
    let mut w = SectionWriter::new(&plan.dir.reduced(part), 1, tag, plan.mem / 4);
    let store = ShingleStore {
        plan,
        open: Default::default(),
    };
    let (mut groups, mut candidates, mut edges) = (0u64, 0u64, 0u64);
    // (earlier, later, key) of candidate pairs.
    let mut pending: Vec<(u32, u32, K)> = Vec::new();
    let flush = |pending: &mut Vec<(u32, u32, K)>,
                 w: &mut SectionWriter,
                 edges: &mut u64|
     -> Result<(), DedupError> {
        if !chain {
            pending.sort_unstable_by_key(|e| (e.0, e.1));
            pending.dedup_by_key(|e| (e.0, e.1));
        }
        let keep: Vec<bool> = match verify {
            None => vec![true; pending.len()],
            Some(threshold) => pending
                .par_iter()
                .map_init(
                    || (Vec::new(), Vec::new()),
                    |(a, b), &(x, y, _)| -> Result<bool, DedupError> {
                        store.get(x, a)?;
                        store.get(y, b)?;
                        Ok(sorted_jaccard(a, b) >= threshold)
                    },
                )
                .collect::<Result<_, _>>()?,
        };
        let mut rec = Vec::with_capacity(8 + K::BYTES);
        for (&(x, y, k), ok) in pending.iter().zip(keep) {
            if ok {
                rec.clear();
                if chain {
                    k.put(&mut rec);
                }
                rec.extend_from_slice(&x.to_le_bytes());
                rec.extend_from_slice(&y.to_le_bytes());
                w.append(0, &rec)?;
                *edges += 1;
            }
        }
        pending.clear();
        Ok(())
    };
    sorter.for_each_group(|k, docs| {
        if docs.len() < 2 {
            return Ok(());
        }
        groups += 1;
        for i in 1..docs.len() {
            if chain {
                // datatrove's buckets step: each member to the one before it.
                pending.push((docs[i - 1], docs[i], k));
                continue;
            }
            pending.push((docs[0], docs[i], k));
            if i >= 2 {
                pending.push((docs[i - 1], docs[i], k));
            }
        }
        candidates += (docs.len() - 1) as u64;
        if pending.len() >= 1 << 20 {
            flush(&mut pending, &mut w, &mut edges)?;
        }
        Ok(())
    })?;
    flush(&mut pending, &mut w, &mut edges)?;
    w.finish()?;
    Ok(BTreeMap::from([
        ("groups".into(), groups),
        ("candidates".into(), candidates),
        ("edges".into(), edges),
        ("spilled_runs".into(), spilled_runs),
    ]))
}

/// The reduce step of repeated-line removal: keys found in at least
/// `min_docs` documents.
pub fn reduce_frequent(
    plan: &Plan,
    part: usize,
    min_docs: u64,
) -> Result<BTreeMap<String, u64>, DedupError> {
    let sorter = sort_partition::<u64>(plan, part, "lines")?;
    let mut w = SectionWriter::new(&plan.dir.reduced(part), 1, TAG_FREQUENT, plan.mem / 4);
    let (mut distinct, mut frequent) = (0u64, 0u64);
    sorter.for_each_group(|k, docs| {
        distinct += 1;
        if docs.len() as u64 >= min_docs {
            frequent += 1;
            w.append(0, &k.to_le_bytes())?;
        }
        Ok(())
    })?;
    w.finish()?;
    Ok(BTreeMap::from([
        ("distinct".into(), distinct),
        ("frequent".into(), frequent),
    ]))
}

// ---------------------------------------------------------------- cluster

/// Which document of a cluster is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The first in input order.
    #[default]
    First,
    /// The one with the most text bytes (first on ties).
    Longest,
    /// The one with the highest score column (first on ties).
    Score,
    /// The one datatrove 0.10's `MinhashDedupCluster` keeps: union by size
    /// over its edge order (band by band; within a band, group by group;
    /// within a group, each member joined to the one before it), ties to the
    /// earlier set. With `hashing = "datatrove"` this drops the documents a
    /// datatrove run drops. Groups within a band follow their key's order,
    /// not datatrove's signature order; that changes the outcome only when
    /// two groups of one band merge the same clusters, which is rare.
    Datatrove,
}

/// Memory the cluster step needs per document.
pub fn cluster_bytes_per_doc(keep: Keep) -> usize {
    match keep {
        Keep::First => 4,
        // parent, score and best member: 12; the bitset of needed ids rounds it up.
        Keep::Longest | Keep::Score => 12,
        // parent and set size; plus 16 bytes per edge, checked when read.
        Keep::Datatrove => 8,
    }
}

/// Reads a unit's document table: `f(ordinal, score, id)`.
fn read_doc_table(
    plan: &Plan,
    unit: usize,
    mut f: impl FnMut(u32, u32, &str),
) -> Result<(), DedupError> {
    let path = plan.dir.keys(unit);
    let bytes = open_keys(&path)?.read(doc_table(plan.partitions))?;
    let mut ord = 0;
    for_each_record(&bytes, &path, |score, id| {
        f(ord, score, id);
        ord += 1;
    })
}

/// The union-find of a cluster step.
enum Sets {
    Smallest(UnionFind),
    BySize(SizedUnionFind),
}

impl Sets {
    fn find(&mut self, x: u32) -> u32 {
        match self {
            Sets::Smallest(u) => u.find(x),
            Sets::BySize(u) => u.find(x),
        }
    }
}

fn check_edge(s: &Sections, a: u32, b: u32, n: usize) -> Result<(), DedupError> {
    if a as usize >= n || b as usize >= n {
        return Err(DedupError::Corrupt {
            path: s.path().display().to_string(),
            message: format!("edge ({a}, {b}) names a document past {n}"),
        });
    }
    Ok(())
}

/// `keep = datatrove`: every partition's chain edges, sorted into
/// datatrove's order (the band sits in the key's top bits, see
/// `lsh::Banding::ordered_keys`), joined by size.
fn replay_chains(plan: &Plan, need: usize) -> Result<(Sets, u64), DedupError> {
    let n = plan.total as usize;
    let mut chains: Vec<(u64, u32, u32)> = Vec::new();
    for p in 0..plan.partitions {
        let s = Sections::open(&plan.dir.reduced(p), TAG_CHAIN)?;
        for r in s.read(0)?.chunks_exact(16) {
            let k = u64::from_le_bytes(r[..8].try_into().expect("8"));
            let a = u32::from_le_bytes(r[8..12].try_into().expect("4"));
            let b = u32::from_le_bytes(r[12..].try_into().expect("4"));
            check_edge(&s, a, b, n)?;
            chains.push((k, a, b));
        }
        let total = need + chains.len() * std::mem::size_of::<(u64, u32, u32)>();
        if total > plan.mem {
            return Err(DedupError::Memory {
                step: "cluster (keep = datatrove)",
                need: total,
                budget: plan.mem,
                docs: plan.total,
            });
        }
    }
    chains.sort_unstable();
    let mut sets = SizedUnionFind::new(n);
    for &(_, a, b) in &chains {
        sets.union(a, b);
    }
    Ok((Sets::BySize(sets), chains.len() as u64))
}

/// The cluster step: union-find over the edges of every partition; each
/// cluster keeps one document, and the others' decisions are written per unit.
pub fn cluster(plan: &Plan, keep: Keep) -> Result<BTreeMap<String, u64>, DedupError> {
    let need = plan.total as usize * cluster_bytes_per_doc(keep);
    if need > plan.mem {
        return Err(DedupError::Memory {
            step: "cluster",
            need,
            budget: plan.mem,
            docs: plan.total,
        });
    }
    let n = plan.total as usize;
    let (mut sets, edges) = if keep == Keep::Datatrove {
        replay_chains(plan, need)?
    } else {
        let mut sets = UnionFind::new(n);
        let mut edges = 0u64;
        for p in 0..plan.partitions {
            let s = Sections::open(&plan.dir.reduced(p), TAG_EDGES)?;
            for r in s.read(0)?.chunks_exact(8) {
                let a = u32::from_le_bytes(r[..4].try_into().expect("4"));
                let b = u32::from_le_bytes(r[4..].try_into().expect("4"));
                check_edge(&s, a, b, n)?;
                sets.union(a, b);
                edges += 1;
            }
        }
        (Sets::Smallest(sets), edges)
    };
    // The kept member of each set, indexed by its root (the set's first document).
    let best: Option<Vec<u32>> = match keep {
        Keep::First | Keep::Datatrove => None,
        Keep::Longest | Keep::Score => {
            let mut score = vec![0u32; n];
            for (i, &(u, docs)) in plan.units.iter().enumerate() {
                if docs == 0 {
                    continue;
                }
                let base = plan.offsets[i] as usize;
                read_doc_table(plan, u, |ord, sc, _| score[base + ord as usize] = sc)?;
            }
            let mut best = vec![u32::MAX; n];
            for i in 0..n as u32 {
                let r = sets.find(i) as usize;
                if best[r] == u32::MAX || score[i as usize] > score[best[r] as usize] {
                    best[r] = i;
                }
            }
            Some(best)
        }
    };
    let keeper = |sets: &mut Sets, i: u32| {
        let r = sets.find(i);
        best.as_ref().map_or(r, |b| b[r as usize])
    };
    // Ids of the representatives that dropped documents point to.
    let mut wanted = vec![0u64; n.div_ceil(64)];
    let mut dropped = 0u64;
    for i in 0..n as u32 {
        let k = keeper(&mut sets, i);
        if k != i {
            wanted[k as usize / 64] |= 1 << (k % 64);
            dropped += 1;
        }
    }
    let mut ids: HashMap<u32, Box<str>> = HashMap::new();
    if dropped > 0 {
        for (i, &(u, docs)) in plan.units.iter().enumerate() {
            if docs == 0 {
                continue;
            }
            let base = plan.offsets[i] as u32;
            read_doc_table(plan, u, |ord, _, id| {
                let g = base + ord;
                if wanted[g as usize / 64] & (1 << (g % 64)) != 0 {
                    ids.insert(g, id.into());
                }
            })?;
        }
    }
    drop(wanted);
    let clusters = ids.len() as u64;
    let mut rec = Vec::new();
    for (i, &(u, docs)) in plan.units.iter().enumerate() {
        let mut w = SectionWriter::new(&plan.dir.decisions(u), 1, TAG_DECISIONS, plan.mem / 4);
        let base = plan.offsets[i] as u32;
        for ord in 0..docs as u32 {
            let g = base + ord;
            let k = keeper(&mut sets, g);
            if k == g {
                continue;
            }
            let id = ids.get(&k).ok_or_else(|| DedupError::Corrupt {
                path: plan.dir.keys(u).display().to_string(),
                message: format!("no id for document {k}"),
            })?;
            rec.clear();
            put_record(&mut rec, ord, id);
            w.append(0, &rec)?;
        }
        w.set_docs(docs);
        w.finish()?;
    }
    Ok(BTreeMap::from([
        ("documents".into(), plan.total),
        ("edges".into(), edges),
        ("clusters".into(), clusters),
        ("dropped".into(), dropped),
    ]))
}

/// The cluster step of repeated-line removal: one list of the frequent keys.
pub fn gather_frequent(plan: &Plan) -> Result<BTreeMap<String, u64>, DedupError> {
    let mut w = SectionWriter::new(&plan.dir.frequent(), 1, TAG_FREQUENT, plan.mem / 4);
    let mut n = 0u64;
    for p in 0..plan.partitions {
        let s = Sections::open(&plan.dir.reduced(p), TAG_FREQUENT)?;
        let bytes = s.read(0)?;
        n += bytes.len() as u64 / 8;
        w.append(0, &bytes)?;
    }
    w.set_docs(n);
    w.finish()?;
    Ok(BTreeMap::from([("frequent".into(), n)]))
}

pub fn load_frequent(dir: &GlobalDir) -> Result<Vec<u64>, DedupError> {
    let s = Sections::open(&dir.frequent(), TAG_FREQUENT)?;
    Ok(s.read(0)?
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
        .collect())
}

// ---------------------------------------------------------------- apply side

/// (ordinal in the unit, id of the kept representative) of a dropped document.
pub type Decision = (u32, Box<str>);

/// A unit's decisions: how many documents of the unit reached the stage,
/// and the decisions for those dropped, ascending.
pub fn load_decisions(dir: &GlobalDir, unit: usize) -> Result<(u64, Vec<Decision>), DedupError> {
    let path = dir.decisions(unit);
    let s = Sections::open(&path, TAG_DECISIONS)?;
    let mut out = Vec::new();
    for_each_record(&s.read(0)?, &path, |ord, id| out.push((ord, id.into())))?;
    Ok((s.docs, out))
}

/// Where a document-level global stage (exact or near dedup) is in a run.
#[derive(Default)]
pub enum DocRole {
    /// Not set up by the phased runner yet.
    #[default]
    Idle,
    Scan {
        dir: GlobalDir,
        budget: usize,
        current: Option<UnitKeys>,
    },
    Apply {
        dir: GlobalDir,
        unit: Option<usize>,
        decisions: Vec<Decision>,
        docs: u64,
        next: usize,
        ord: u32,
    },
}

impl DocRole {
    pub fn scan(dir: &GlobalDir, budget: usize) -> Self {
        DocRole::Scan {
            dir: dir.clone(),
            budget,
            current: None,
        }
    }

    /// The runner calls this once the cluster step's marker is there.
    pub fn apply(dir: &GlobalDir) -> Self {
        DocRole::Apply {
            dir: dir.clone(),
            unit: None,
            decisions: Vec::new(),
            docs: 0,
            next: 0,
            ord: 0,
        }
    }

    pub fn is_scan(&self) -> bool {
        matches!(self, DocRole::Scan { .. })
    }

    pub fn enter_unit<K: Key>(&mut self, unit: usize, parts: usize) -> Result<(), DedupError> {
        match self {
            DocRole::Idle => Err(DedupError::Missing(
                "a global stage ran outside its phases".into(),
            )),
            DocRole::Scan {
                dir,
                budget,
                current,
            } => {
                if current.as_ref().map(UnitKeys::unit) != Some(unit) {
                    *current = Some(UnitKeys::new::<K>(dir, unit, parts, *budget));
                }
                Ok(())
            }
            DocRole::Apply {
                dir,
                unit: cur,
                decisions,
                docs,
                next,
                ord,
            } => {
                if *cur != Some(unit) {
                    (*docs, *decisions) = load_decisions(dir, unit)?;
                    *cur = Some(unit);
                    *next = 0;
                    *ord = 0;
                }
                Ok(())
            }
        }
    }

    /// The keys writer of the unit being scanned.
    pub fn keys(&mut self) -> Option<&mut UnitKeys> {
        match self {
            DocRole::Scan { current, .. } => current.as_mut(),
            _ => None,
        }
    }

    /// The rows of the next `rows` documents that are dropped, with the id
    /// of the document kept in their place.
    pub fn take(&mut self, rows: usize) -> Vec<(usize, Box<str>)> {
        let DocRole::Apply {
            decisions,
            next,
            ord,
            ..
        } = self
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let end = *ord + rows as u32;
        while *next < decisions.len() && decisions[*next].0 < end {
            let (o, id) = &decisions[*next];
            out.push(((*o - *ord) as usize, id.clone()));
            *next += 1;
        }
        *ord = end;
        out
    }

    /// Ends a unit: the scan writes its keys file; the apply side checks
    /// that it saw as many documents as the scan did.
    pub fn finish_unit(&mut self, with_shingles: bool) -> Result<(), DedupError> {
        match self {
            DocRole::Idle => Ok(()),
            DocRole::Scan { current, .. } => {
                if let Some(k) = current.take() {
                    k.finish(with_shingles)?;
                }
                Ok(())
            }
            DocRole::Apply {
                dir,
                unit,
                docs,
                ord,
                ..
            } => {
                if let Some(u) = unit.take() {
                    if *ord as u64 != *docs {
                        return Err(DedupError::Corrupt {
                            path: dir.decisions(u).display().to_string(),
                            message: format!(
                                "the scan saw {docs} documents in unit {u} and this pass {ord}: \
                                 the input or the stages before this one changed; start the run over"
                            ),
                        });
                    }
                }
                Ok(())
            }
        }
    }
}
