//! The scan's side of the engine: what a stage's pure `process` returns
//! for a batch ([`Scanned`]), and the [`ScanWriter`] that turns it into
//! one sectioned file per unit.

use std::any::Any;

use super::extsort::Key;
use super::sections::SectionWriter;
use super::*;

/// How a stage's scan is kept, and what its apply pass needs back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanLayout {
    /// Document keys in hash-range partitions (the dedup stages).
    Keys {
        /// `u128` keys rather than `u64`.
        wide: bool,
        /// A document table (id and score per document).
        table: bool,
        /// Each document's shingles, for verification.
        shingles: bool,
        /// The apply pass reads the run's frequent keys (repeated lines)
        /// rather than each unit's decisions.
        frequent: bool,
    },
    /// The stage's own records: `partitions` sections its [`Records`]
    /// combiner seals for the reduce step, then one record per document
    /// (framed by the engine) for the apply pass.
    Records {
        /// The tag of its files.
        tag: u32,
        /// The apply pass reads one record per document back.
        per_doc: bool,
        /// The apply pass reads the summary the cluster step wrote.
        summary: bool,
    },
}

/// What a stage's scan found in one batch, row by row.
pub enum Scanned {
    /// `u64` keys (near dedup, repeated lines).
    Keys64(DocKeys<u64>),
    /// `u128` keys (exact dedup).
    Keys128(DocKeys<u128>),
    /// The stage's own records.
    Records {
        /// Rows of the batch.
        rows: usize,
        /// One record per row for the apply pass (empty if it needs none).
        docs: Vec<Vec<u8>>,
        /// What its [`Records`] combiner folds into the unit's sections.
        part: Box<dyn Any + Send>,
    },
}

/// One batch's document keys.
#[derive(Debug, Default)]
pub struct DocKeys<K> {
    /// Rows of the batch.
    pub rows: usize,
    /// Each row's score in the document table (empty when there is no table).
    pub scores: Vec<u32>,
    /// Each row's shingles (empty unless they are verified).
    pub shingles: Vec<Vec<u32>>,
    /// The keys of every row, in row order.
    pub keys: Vec<K>,
    /// Where each row's keys end in `keys`.
    pub ends: Vec<usize>,
}

impl<K: Key> DocKeys<K> {
    /// Room for `rows` rows.
    pub fn with_rows(rows: usize) -> Self {
        DocKeys {
            rows,
            scores: Vec::new(),
            shingles: Vec::new(),
            keys: Vec::new(),
            ends: Vec::with_capacity(rows),
        }
    }

    /// Ends the current row's keys.
    pub fn end_row(&mut self) {
        self.ends.push(self.keys.len());
    }
}

/// A stage's combiner for its own records: pure functions the engine calls
/// in input order, keeping the state between them.
pub trait Records: Send + Sync {
    /// Folds one batch's part into the unit's (`None` for the unit's first).
    fn combine(
        &self,
        acc: Option<Box<dyn Any + Send>>,
        next: Box<dyn Any + Send>,
    ) -> Box<dyn Any + Send>;
    /// The unit's `partitions` sections for the reduce step (`None` for a
    /// unit without documents).
    fn seal(&self, acc: Option<Box<dyn Any + Send>>) -> Result<Vec<Vec<u8>>, PhasedError>;
}

/// A [`Records::combine`] for parts of type `T`: `merge` folds the next
/// part into the unit's.
pub fn combine_parts<T: Any + Send>(
    acc: Option<Box<dyn Any + Send>>,
    next: Box<dyn Any + Send>,
    merge: impl FnOnce(&mut T, T),
) -> Box<dyn Any + Send> {
    let Some(acc) = acc else { return next };
    let mut acc = acc
        .downcast::<T>()
        .expect("a stage's parts are of one type");
    merge(
        &mut acc,
        *next
            .downcast::<T>()
            .expect("a stage's parts are of one type"),
    );
    acc
}

/// The unit's part as `T`, for [`Records::seal`] (`None` for a unit
/// without documents).
pub fn sealed_part<T: Any>(acc: Option<Box<dyn Any + Send>>) -> Result<Option<T>, PhasedError> {
    acc.map(|a| {
        a.downcast::<T>()
            .map(|a| *a)
            .map_err(|_| mismatch("a part of another type"))
    })
    .transpose()
}

/// The unit being scanned.
enum UnitScan {
    Keys(UnitKeys),
    Records {
        docs: u64,
        per_doc: Vec<u8>,
        acc: Option<Box<dyn Any + Send>>,
    },
}

/// Writes one stage's scan, one unit at a time, in input order.
pub struct ScanWriter {
    dir: GlobalDir,
    layout: ScanLayout,
    parts: usize,
    budget: usize,
    current: Option<(usize, UnitScan)>,
}

fn mismatch(what: &str) -> PhasedError {
    PhasedError::Missing(format!(
        "the scan got {what}, not what the stage's layout says"
    ))
}

impl ScanWriter {
    /// A writer into `dir` of `parts` partitions, holding at most `budget`
    /// bytes of a unit's keys in memory.
    pub fn new(dir: &GlobalDir, layout: ScanLayout, parts: usize, budget: usize) -> Self {
        ScanWriter {
            dir: dir.clone(),
            layout,
            parts,
            budget,
            current: None,
        }
    }

    fn enter(&mut self, unit: usize) -> &mut UnitScan {
        if self.current.as_ref().map(|c| c.0) != Some(unit) {
            let s = match self.layout {
                ScanLayout::Keys { wide: true, .. } => UnitScan::Keys(UnitKeys::new::<u128>(
                    &self.dir,
                    unit,
                    self.parts,
                    self.budget,
                )),
                ScanLayout::Keys { wide: false, .. } => UnitScan::Keys(UnitKeys::new::<u64>(
                    &self.dir,
                    unit,
                    self.parts,
                    self.budget,
                )),
                ScanLayout::Records { .. } => UnitScan::Records {
                    docs: 0,
                    per_doc: Vec::new(),
                    acc: None,
                },
            };
            self.current = Some((unit, s));
        }
        &mut self.current.as_mut().expect("entered").1
    }

    /// Adds one batch of unit `unit`: `id(row)` is each row's document id.
    pub fn add<'a>(
        &mut self,
        unit: usize,
        id: &dyn Fn(usize) -> &'a str,
        scanned: Scanned,
        records: Option<&dyn Records>,
    ) -> Result<(), PhasedError> {
        let layout = self.layout;
        match (self.enter(unit), scanned) {
            (UnitScan::Keys(w), Scanned::Keys64(k)) => add_keys(w, layout, id, k),
            (UnitScan::Keys(w), Scanned::Keys128(k)) => add_keys(w, layout, id, k),
            (
                UnitScan::Records { docs, per_doc, acc },
                Scanned::Records {
                    rows,
                    docs: d,
                    part,
                },
            ) => {
                let r = records.ok_or_else(|| mismatch("records without a combiner"))?;
                if let ScanLayout::Records { per_doc: true, .. } = layout {
                    if d.len() != rows {
                        return Err(mismatch("a batch without a record per row"));
                    }
                    for rec in &d {
                        let len = u32::try_from(rec.len())
                            .map_err(|_| mismatch("a record over 4 GiB"))?;
                        per_doc.extend_from_slice(&len.to_le_bytes());
                        per_doc.extend_from_slice(rec);
                    }
                }
                *docs += rows as u64;
                *acc = Some(r.combine(acc.take(), part));
                Ok(())
            }
            _ => Err(mismatch("another kind of scan")),
        }
    }

    /// Ends unit `unit` (entered or, with no documents, not): writes its file.
    pub fn end(&mut self, unit: usize, records: Option<&dyn Records>) -> Result<(), PhasedError> {
        self.enter(unit);
        let (u, s) = self.current.take().expect("entered");
        match s {
            UnitScan::Keys(w) => {
                let shingles = matches!(self.layout, ScanLayout::Keys { shingles: true, .. });
                w.finish(shingles)
            }
            UnitScan::Records { docs, per_doc, acc } => {
                let (ScanLayout::Records { tag, .. }, Some(r)) = (self.layout, records) else {
                    return Err(mismatch("records without a combiner"));
                };
                let mut sections = r.seal(acc)?;
                if sections.len() != self.parts {
                    return Err(mismatch("a number of sections other than the partitions"));
                }
                sections.push(per_doc);
                self.dir.write_unit_sections(u, tag, docs, &sections)
            }
        }
    }
}

fn add_keys<'a, K: Key>(
    w: &mut UnitKeys,
    layout: ScanLayout,
    id: &dyn Fn(usize) -> &'a str,
    k: DocKeys<K>,
) -> Result<(), PhasedError> {
    let ScanLayout::Keys {
        table, shingles, ..
    } = layout
    else {
        return Err(mismatch("keys"));
    };
    if k.ends.len() != k.rows
        || (table && k.scores.len() != k.rows)
        || (shingles && k.shingles.len() != k.rows)
    {
        return Err(mismatch("a batch whose rows and keys do not line up"));
    }
    let mut start = 0;
    for row in 0..k.rows {
        let ord = if table {
            let sh = shingles.then(|| k.shingles[row].as_slice());
            w.doc(id(row), k.scores[row], sh)?
        } else {
            w.next_doc()
        };
        let end = k.ends[row];
        for &key in &k.keys[start..end] {
            w.key(key, ord)?;
        }
        start = end;
    }
    Ok(())
}

/// One unit's keys, written as the scan sees its documents.
pub(super) struct UnitKeys {
    w: SectionWriter,
    parts: usize,
    docs: u32,
    rec: Vec<u8>,
}

impl UnitKeys {
    pub(super) fn new<K: Key>(dir: &GlobalDir, unit: usize, parts: usize, budget: usize) -> Self {
        UnitKeys {
            w: SectionWriter::new(&dir.keys(unit), parts + 3, keys_tag::<K>(), budget),
            parts,
            docs: 0,
            rec: Vec::with_capacity(32),
        }
    }

    /// Starts the next document without a table entry (for stages whose
    /// decisions are not per document); returns its ordinal in the unit.
    pub(super) fn next_doc(&mut self) -> u32 {
        self.docs += 1;
        self.docs - 1
    }

    /// Starts the next document, with its id and score in the document
    /// table; returns its ordinal in the unit.
    pub(super) fn doc(
        &mut self,
        id: &str,
        score: u32,
        shingles: Option<&[u32]>,
    ) -> Result<u32, PhasedError> {
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

    pub(super) fn key<K: Key>(&mut self, key: K, ord: u32) -> Result<(), PhasedError> {
        self.rec.clear();
        key.put(&mut self.rec);
        self.rec.extend_from_slice(&ord.to_le_bytes());
        let p = key.partition(self.parts);
        self.w.append(p, &self.rec)
    }

    pub(super) fn finish(mut self, with_shingles: bool) -> Result<(), PhasedError> {
        if with_shingles {
            let end = self.w.len(shingle_data(self.parts));
            self.w
                .append(shingle_index(self.parts), &end.to_le_bytes())?;
        }
        self.w.set_docs(self.docs as u64);
        self.w.finish()
    }
}
