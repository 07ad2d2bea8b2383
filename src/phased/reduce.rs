//! The reduce step: each partition's keys sorted in a memory budget, and
//! equal keys turned into edges (verified by shingle Jaccard when asked),
//! chains, or the keys frequent enough to drop.

use std::borrow::Cow;

use super::*;
use crate::files::guarded_map::GuardedMap;

/// Feeds partition `part` of every unit into a sorter, as global indices.
fn sort_partition<K: Key>(plan: &Plan, part: usize, name: &str) -> Result<Sorter<K>, PhasedError> {
    let scratch = plan.dir.scratch(&format!("{name}-{part:05}"));
    if let Some(d) = scratch.parent() {
        std::fs::create_dir_all(d).map_err(|source| PhasedError::Io {
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
                return Err(PhasedError::Corrupt {
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

/// A unit's keys file, open for shingle lookups: memory-mapped when it
/// can be (a lookup is then a copy, not two system calls), else read.
pub(super) struct ShingleFile {
    sections: Sections,
    map: Option<GuardedMap>,
}

impl std::fmt::Debug for ShingleFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShingleFile")
            .field("path", &self.sections.path())
            .field("mapped", &self.map.is_some())
            .finish()
    }
}

impl ShingleFile {
    fn corrupt(&self, message: &str) -> PhasedError {
        PhasedError::Corrupt {
            path: self.sections.path().display().to_string(),
            message: message.into(),
        }
    }

    /// `len` bytes at `at` in section `s`, bounds checked first: borrowed
    /// from the map, or read.
    fn bytes(&self, s: usize, at: u64, len: u64) -> Result<Cow<'_, [u8]>, PhasedError> {
        let (off, size) = self
            .sections
            .range(s)
            .ok_or_else(|| self.corrupt("no shingle sections"))?;
        if at.checked_add(len).is_none_or(|end| end > size) {
            return Err(self.corrupt(&format!("lookup past the end of section {s}")));
        }
        match &self.map {
            Some(map) => map
                .get((off + at) as usize..(off + at + len) as usize)
                .map(Cow::Borrowed)
                .ok_or_else(|| self.corrupt("a section past the end of the file")),
            None => {
                let mut buf = vec![0u8; len as usize];
                self.sections.read_at(s, at, &mut buf)?;
                Ok(Cow::Owned(buf))
            }
        }
    }
}

/// Open files past this are closed (all at once) before another opens;
/// the guarded maps of the whole process are limited too.
const OPEN_FILES: usize = 128;

/// Keys files open for shingle lookups, by unit position.
pub(super) type OpenShingleFiles =
    std::sync::Arc<std::sync::Mutex<HashMap<usize, std::sync::Arc<ShingleFile>>>>;

impl Plan {
    fn shingle_file(&self, i: usize) -> Result<std::sync::Arc<ShingleFile>, PhasedError> {
        let mut open = self.shingle_files.lock().expect("no panics while held");
        if let Some(s) = open.get(&i) {
            return Ok(s.clone());
        }
        if open.len() >= OPEN_FILES {
            open.clear();
        }
        let sections = open_keys(&self.dir.keys(self.units[i].0))?;
        // No map (no slot left, or an empty file): plain reads.
        let map = GuardedMap::new(sections.file()).ok();
        let f = std::sync::Arc::new(ShingleFile { sections, map });
        open.insert(i, f.clone());
        Ok(f)
    }

    /// Document `doc`'s stored shingles, sorted, into `out` (files stay
    /// open in the plan, across the task's partitions).
    pub(super) fn shingles(&self, doc: u32, out: &mut Vec<u32>) -> Result<(), PhasedError> {
        let (i, ord) = self.locate(doc);
        let f = self.shingle_file(i)?;
        let idx = f.bytes(shingle_index(self.partitions), ord as u64 * 8, 16)?;
        let start = u64::from_le_bytes(idx[..8].try_into().expect("8"));
        let end = u64::from_le_bytes(idx[8..].try_into().expect("8"));
        if end < start || (end - start) % 4 != 0 {
            return Err(f.corrupt("damaged shingle index"));
        }
        let bytes = f.bytes(shingle_data(self.partitions), start, end - start)?;
        out.clear();
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4"))),
        );
        if f.map.as_ref().is_some_and(|m| m.faulted()) {
            return Err(f.corrupt("the file shrank while it was read"));
        }
        Ok(())
    }
}

/// True if the Jaccard similarity of two sorted, deduplicated lists is at
/// least `t`: the same answer as [`sorted_jaccard`]` >= t`, but it stops
/// as soon as the answer is known (sizes too far apart, or too few left to
/// reach the intersection needed).
pub fn jaccard_at_least(a: &[u32], b: &[u32], t: f64) -> bool {
    let (la, lb) = (a.len(), b.len());
    // J >= t  <=>  inter * (1 + t) >= t * (la + lb); the bound below leaves
    // a margin, so only pairs that certainly fall short stop early, and the
    // answer is always the exact one.
    if la == 0 && lb == 0 {
        return sorted_jaccard(a, b) >= t;
    }
    let need = t * (la + lb) as f64 / (1.0 + t) - 1e-6;
    if (la.min(lb) as f64) < need {
        return false;
    }
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < la && j < lb {
        if ((inter + (la - i).min(lb - j)) as f64) < need {
            return false;
        }
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
    // `inter` is final here: what sorted_jaccard computes.
    inter as f64 / (la + lb - inter) as f64 >= t
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
) -> Result<BTreeMap<String, u64>, PhasedError> {
    reduce::<K>(plan, part, verify, false)
}

/// The reduce step for `keep = datatrove`: per group, the chain of edges
/// between consecutive members, each with its 64-bit key, unsorted and not
/// deduplicated, so that the cluster step can replay datatrove's edge order.
pub fn reduce_chains(
    plan: &Plan,
    part: usize,
    verify: Option<f64>,
) -> Result<BTreeMap<String, u64>, PhasedError> {
    reduce::<u64>(plan, part, verify, true)
}

fn reduce<K: Key>(
    plan: &Plan,
    part: usize,
    verify: Option<f64>,
    chain: bool,
) -> Result<BTreeMap<String, u64>, PhasedError> {
    let sorter = sort_partition::<K>(plan, part, "edges")?;
    let spilled_runs = sorter.runs() as u64;
    let tag = if chain { TAG_CHAIN } else { TAG_EDGES };
    let mut w = SectionWriter::new(&plan.dir.reduced(part), 1, tag, plan.mem / 4);
    let (mut groups, mut candidates, mut edges) = (0u64, 0u64, 0u64);
    // (earlier, later, key) of candidate pairs.
    let mut pending: Vec<(u32, u32, K)> = Vec::new();
    let flush = |pending: &mut Vec<(u32, u32, K)>,
                 w: &mut SectionWriter,
                 edges: &mut u64|
     -> Result<(), PhasedError> {
        if !chain {
            pending.sort_unstable_by_key(|e| (e.0, e.1));
            pending.dedup_by_key(|e| (e.0, e.1));
        }
        let keep: Vec<bool> = match verify {
            None => vec![true; pending.len()],
            Some(threshold) => {
                // Pairs an earlier partition verified are not read again.
                let known: Vec<Option<bool>> = {
                    let memo = plan.verified.lock().expect("no panics while held");
                    pending
                        .iter()
                        .map(|&(x, y, _)| memo.get(&(x, y)).copied())
                        .collect()
                };
                let keep: Vec<bool> = pending
                    .par_iter()
                    .zip(known.par_iter())
                    .map_init(
                        || (Vec::new(), Vec::new()),
                        |(a, b), (&(x, y, _), known)| -> Result<bool, PhasedError> {
                            if let Some(k) = known {
                                return Ok(*k);
                            }
                            plan.shingles(x, a)?;
                            plan.shingles(y, b)?;
                            Ok(jaccard_at_least(a, b, threshold))
                        },
                    )
                    .collect::<Result<_, _>>()?;
                let mut memo = plan.verified.lock().expect("no panics while held");
                let room = (plan.mem / 8) / 24;
                for (&(x, y, _), (&k, known)) in pending.iter().zip(keep.iter().zip(&known)) {
                    if known.is_none() && memo.len() < room {
                        memo.insert((x, y), k);
                    }
                }
                keep
            }
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
) -> Result<BTreeMap<String, u64>, PhasedError> {
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
