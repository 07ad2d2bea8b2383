//! The apply pass's side of the engine: what each batch gets back from
//! the earlier steps ([`BatchInput`]), read by the [`ApplyReader`], which
//! also checks that the pass sees as many documents per unit as the scan.

use super::*;

/// (ordinal in the unit, id of the kept representative) of a dropped document.
pub type Decision = (u32, Box<str>);

/// A unit's decisions: how many documents of the unit reached the stage,
/// and the decisions for those dropped, ascending.
fn load_decisions(dir: &GlobalDir, unit: usize) -> Result<(u64, Vec<Decision>), PhasedError> {
    let path = dir.decisions(unit);
    let s = Sections::open(&path, TAG_DECISIONS)?;
    let mut out = Vec::new();
    for_each_record(&s.read(0)?, &path, |ord, id| out.push((ord, id.into())))?;
    Ok((s.docs, out))
}

/// What the whole run's earlier steps left for a stage's apply pass.
#[derive(Debug, Default)]
pub struct RunInput {
    /// The cluster step's summary (a stage with its own records).
    pub summary: Option<Vec<u8>>,
    /// The keys frequent enough to remove (repeated lines).
    pub frequent: Option<Vec<u64>>,
}

impl RunInput {
    /// Reads what a stage of `layout` needs from `dir`.
    pub fn load(dir: &GlobalDir, layout: ScanLayout) -> Result<RunInput, PhasedError> {
        Ok(RunInput {
            summary: match layout {
                ScanLayout::Records { summary: true, .. } => Some(dir.read_summary()?),
                _ => None,
            },
            frequent: match layout {
                ScanLayout::Keys { frequent: true, .. } => Some(load_frequent(dir)?),
                _ => None,
            },
        })
    }
}

/// What one batch gets back, row by row.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchInput {
    /// Nothing per document.
    None,
    /// The rows dropped, ascending, each with the id of the document kept
    /// in its place.
    Decided(Vec<(usize, Box<str>)>),
    /// One record per row, as the scan returned it.
    Records(Vec<Vec<u8>>),
}

/// The unit being applied.
struct UnitApply {
    unit: usize,
    /// Documents the scan saw in the unit.
    docs: u64,
    /// Documents this pass has seen so far.
    seen: u64,
    decisions: Vec<Decision>,
    next: usize,
    /// The per-document records, framed, and where the next one starts.
    records: Vec<u8>,
    at: usize,
}

/// Reads back, unit by unit in input order, what a stage's earlier steps
/// decided, and hands it out batch by batch.
pub struct ApplyReader {
    dir: GlobalDir,
    layout: ScanLayout,
    parts: usize,
    current: Option<UnitApply>,
}

impl ApplyReader {
    /// A reader of `dir`, for a stage of `layout` with `parts` partitions.
    pub fn new(dir: &GlobalDir, layout: ScanLayout, parts: usize) -> Self {
        ApplyReader {
            dir: dir.clone(),
            layout,
            parts,
            current: None,
        }
    }

    fn changed(&self, unit: usize, what: String) -> PhasedError {
        PhasedError::Corrupt {
            path: self.dir.keys(unit).display().to_string(),
            message: format!(
                "{what}: the input or the stages before this one changed since the scan; \
                 start the run over"
            ),
        }
    }

    fn enter(&mut self, unit: usize) -> Result<&mut UnitApply, PhasedError> {
        if self.current.as_ref().map(|c| c.unit) != Some(unit) {
            let mut u = UnitApply {
                unit,
                docs: 0,
                seen: 0,
                decisions: Vec::new(),
                next: 0,
                records: Vec::new(),
                at: 0,
            };
            match self.layout {
                ScanLayout::Keys {
                    frequent: false, ..
                } => (u.docs, u.decisions) = load_decisions(&self.dir, unit)?,
                ScanLayout::Keys { frequent: true, .. } => {
                    u.docs = open_keys(&self.dir.keys(unit))?.docs;
                }
                ScanLayout::Records { tag, per_doc, .. } => {
                    let s = Sections::open_any(&self.dir.keys(unit), &[tag])?;
                    u.docs = s.docs;
                    if per_doc {
                        u.records = s.read(self.parts)?;
                    }
                }
            }
            self.current = Some(u);
        }
        Ok(self.current.as_mut().expect("entered"))
    }

    /// What the next `rows` documents of unit `unit` get back.
    pub fn take(&mut self, unit: usize, rows: usize) -> Result<BatchInput, PhasedError> {
        let layout = self.layout;
        let u = self.enter(unit)?;
        u.seen += rows as u64;
        if u.seen > u.docs {
            let (docs, seen) = (u.docs, u.seen);
            return Err(self.changed(
                unit,
                format!("the scan saw {docs} documents in unit {unit}, this pass {seen} so far"),
            ));
        }
        Ok(match layout {
            ScanLayout::Keys {
                frequent: false, ..
            } => {
                let first = (u.seen - rows as u64) as u32;
                let end = u.seen as u32;
                let mut out = Vec::new();
                while u.next < u.decisions.len() && u.decisions[u.next].0 < end {
                    let (o, id) = &u.decisions[u.next];
                    out.push(((*o - first) as usize, id.clone()));
                    u.next += 1;
                }
                BatchInput::Decided(out)
            }
            ScanLayout::Records { per_doc: true, .. } => {
                let mut out = Vec::with_capacity(rows);
                for _ in 0..rows {
                    let Some(rec) = frame(&u.records, &mut u.at) else {
                        return Err(self.changed(
                            unit,
                            format!("the records of unit {unit} end before its documents"),
                        ));
                    };
                    out.push(rec.to_vec());
                }
                BatchInput::Records(out)
            }
            _ => BatchInput::None,
        })
    }

    /// Ends unit `unit`: the pass must have seen every document the scan saw.
    pub fn end(&mut self, unit: usize) -> Result<(), PhasedError> {
        let u = self.enter(unit)?;
        let (docs, seen) = (u.docs, u.seen);
        self.current = None;
        if seen != docs {
            return Err(self.changed(
                unit,
                format!("the scan saw {docs} documents in unit {unit} and this pass {seen}"),
            ));
        }
        Ok(())
    }
}

/// The framed record at `*at`, moving past it.
fn frame<'a>(bytes: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(bytes.get(*at..*at + 4)?.try_into().ok()?) as usize;
    let rec = bytes.get(*at + 4..(*at + 4).checked_add(len)?)?;
    *at += 4 + len;
    Some(rec)
}
