//! The cluster step: union-find over the edges picks what each cluster
//! keeps and writes every unit's decisions; and what the apply step reads
//! back (decisions, frequent keys).

use super::*;

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
) -> Result<(), PhasedError> {
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

fn check_edge(s: &Sections, a: u32, b: u32, n: usize) -> Result<(), PhasedError> {
    if a as usize >= n || b as usize >= n {
        return Err(PhasedError::Corrupt {
            path: s.path().display().to_string(),
            message: format!("edge ({a}, {b}) names a document past {n}"),
        });
    }
    Ok(())
}

/// `keep = datatrove`: every partition's chain edges, sorted into
/// datatrove's order (the band sits in the key's top bits, see
/// `lsh::Banding::ordered_keys`), joined by size.
fn replay_chains(plan: &Plan, need: usize) -> Result<(Sets, u64), PhasedError> {
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
        plan.fits("cluster (keep = datatrove)", total)?;
    }
    chains.sort_unstable();
    let mut sets = SizedUnionFind::new(n);
    for &(_, a, b) in &chains {
        sets.union(a, b);
    }
    Ok((Sets::BySize(sets), chains.len() as u64))
}

/// At most this many kept documents of one cluster are compared with each
/// later member (see [`verify_against_kept`]).
pub const MAX_KEPT_COMPARED: usize = 64;

/// The cluster step: union-find over the edges of every partition; each
/// cluster keeps one document, and the others' decisions are written per
/// unit. With `verify` (not for `keep = datatrove`), a member is dropped
/// only if its Jaccard with the kept document it is attributed to is at
/// least `verify` (see [`verify_against_kept`]): no chains.
pub fn cluster(
    plan: &Plan,
    keep: Keep,
    verify: Option<f64>,
) -> Result<BTreeMap<String, u64>, PhasedError> {
    let need = plan.total as usize * cluster_bytes_per_doc(keep);
    plan.fits("cluster", need)?;
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
    // Each document's score, when the kept one is the best scored.
    let score: Option<Vec<u32>> = match keep {
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
            Some(score)
        }
    };
    let verified = match verify {
        Some(t) if keep != Keep::Datatrove => {
            Some(verify_against_kept(plan, &mut sets, score.as_deref(), t)?)
        }
        _ => None,
    };
    // Unverified, the kept member of each set, indexed by its root (the
    // set's first document): the best scored, when scores count.
    let best: Option<Vec<u32>> = match (&score, &verified) {
        (Some(score), None) => {
            let mut best = vec![u32::MAX; n];
            for i in 0..n as u32 {
                let r = sets.find(i) as usize;
                if best[r] == u32::MAX || score[i as usize] > score[best[r] as usize] {
                    best[r] = i;
                }
            }
            Some(best)
        }
        _ => None,
    };
    drop(score);
    let keeper = |sets: &mut Sets, i: u32| {
        if let Some((v, _)) = &verified {
            return v.get(&i).copied().unwrap_or(i);
        }
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
            let id = ids.get(&k).ok_or_else(|| PhasedError::Corrupt {
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
    let mut counts = BTreeMap::from([
        ("documents".into(), plan.total),
        ("edges".into(), edges),
        ("clusters".into(), clusters),
        ("dropped".into(), dropped),
    ]);
    if let Some((_, v)) = verified {
        counts.extend(v);
    }
    Ok(counts)
}

/// Each dropped document's kept one, by global index.
type Attributed = HashMap<u32, u32>;

/// What one cluster's verification decided: (dropped, kept one) pairs,
/// members kept though in the cluster, members past the comparison limit.
type ClusterVerdict = (Vec<(u32, u32)>, u64, u64);

/// Within each cluster, in keep order (first, or best scored then first),
/// a member is dropped for the first kept member whose shingles' Jaccard
/// with its own is at least `threshold`, and otherwise kept: every dropped
/// document is within the threshold of the one it is attributed to, and no
/// two kept ones of a cluster are (unless a cluster has more than
/// [`MAX_KEPT_COMPARED`] kept members, where later members are compared
/// with the first ones only). Returns each dropped document's kept one, and
/// counts.
fn verify_against_kept(
    plan: &Plan,
    sets: &mut Sets,
    score: Option<&[u32]>,
    threshold: f64,
) -> Result<(Attributed, BTreeMap<String, u64>), PhasedError> {
    let n = plan.total as usize;
    // (root, member) of every document in a cluster of two or more.
    let mut members: Vec<(u32, u32)> = Vec::new();
    for i in 0..n as u32 {
        let r = sets.find(i);
        if r != i {
            members.push((r, i));
        }
    }
    let need = members.len() * 2 * (std::mem::size_of::<(u32, u32)>() + 8);
    plan.fits("cluster (verify)", need)?;
    let mut roots: Vec<u32> = members.iter().map(|m| m.0).collect();
    roots.sort_unstable();
    roots.dedup();
    members.extend(roots.iter().map(|&r| (r, r)));
    let order = |&(r, i): &(u32, u32)| {
        let s = score.map_or(0, |s| s[i as usize]);
        (r, std::cmp::Reverse(s), i)
    };
    members.sort_unstable_by_key(order);
    let clusters: Vec<&[(u32, u32)]> = members.chunk_by(|a, b| a.0 == b.0).collect();
    let decided: Vec<ClusterVerdict> = clusters
        .par_iter()
        .map(|c| -> Result<_, PhasedError> {
            let mut kept: Vec<(u32, Vec<u32>)> = Vec::new();
            let mut dropped = Vec::new();
            let (mut split, mut capped) = (0u64, 0u64);
            let mut sh = Vec::new();
            for &(_, i) in c.iter() {
                plan.shingles(i, &mut sh)?;
                let to = kept
                    .iter()
                    .find(|(_, k)| jaccard_at_least(k, &sh, threshold))
                    .map(|(k, _)| *k);
                match to {
                    Some(k) => dropped.push((i, k)),
                    None if kept.len() < MAX_KEPT_COMPARED => {
                        if !kept.is_empty() {
                            split += 1;
                        }
                        kept.push((i, std::mem::take(&mut sh)));
                    }
                    None => capped += 1,
                }
            }
            Ok((dropped, split, capped))
        })
        .collect::<Result<_, _>>()?;
    let mut out = HashMap::new();
    let (mut split, mut capped) = (0u64, 0u64);
    for (d, s, c) in decided {
        out.extend(d);
        split += s;
        capped += c;
    }
    Ok((
        out,
        BTreeMap::from([
            ("kept_not_within_verify".into(), split),
            ("past_max_kept_compared".into(), capped),
        ]),
    ))
}

/// The cluster step of repeated-line removal: one list of the frequent keys.
pub fn gather_frequent(plan: &Plan) -> Result<BTreeMap<String, u64>, PhasedError> {
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

pub fn load_frequent(dir: &GlobalDir) -> Result<Vec<u64>, PhasedError> {
    let s = Sections::open(&dir.frequent(), TAG_FREQUENT)?;
    Ok(s.read(0)?
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
        .collect())
}
