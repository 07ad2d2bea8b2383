//! Where a phased stage keeps its files, the markers that vouch for each
//! step, and the plan the reduce and cluster steps share.

use std::collections::{BTreeMap, HashMap};

use crate::hash::MixState;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sections::{self, SectionWriter, Sections};
use super::{open_keys, PhasedError};

/// File name of a global stage's summary (see [`GlobalDir::summary`]).
pub const SUMMARY: &str = "summary.json";

/// Where one global stage keeps its intermediates.
#[derive(Debug, Clone)]
pub struct GlobalDir {
    pub root: PathBuf,
    /// Identifies the run (manifest and inputs): markers of another run do not count.
    pub run: String,
    /// The run's output folder, where a stage's own outputs go (the
    /// trained tokenizer).
    pub output: PathBuf,
}

impl GlobalDir {
    /// The folder `root` of a stage of run `run`, which writes into `output`.
    pub fn new(root: PathBuf, run: String, output: PathBuf) -> Self {
        GlobalDir { root, run, output }
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
    pub(super) fn scratch(&self, name: &str) -> PathBuf {
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
    ) -> Result<(), PhasedError> {
        let path = self.keys(unit);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(sections::io(p))?;
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
    ) -> Result<Vec<u8>, PhasedError> {
        Sections::open_any(&self.keys(unit), &[tag])?.read(s)
    }

    /// Writes what the reduce step found in partition `part`, whole.
    pub fn write_reduced(&self, part: usize, bytes: &[u8]) -> Result<(), PhasedError> {
        let out = self.reduced(part);
        if let Some(p) = out.parent() {
            std::fs::create_dir_all(p).map_err(sections::io(p))?;
        }
        crate::files::atomic_write(&out, bytes).map_err(sections::io(&out))
    }

    /// What [`GlobalDir::write_reduced`] wrote for partition `part`.
    pub fn read_reduced(&self, part: usize) -> Result<Vec<u8>, PhasedError> {
        let path = self.reduced(part);
        std::fs::read(&path).map_err(sections::io(&path))
    }

    /// Writes the cluster step's summary of the whole run (JSON).
    pub fn write_summary(&self, bytes: &[u8]) -> Result<(), PhasedError> {
        let path = self.summary();
        crate::files::atomic_write(&path, bytes).map_err(sections::io(&path))
    }

    /// What [`GlobalDir::write_summary`] wrote.
    pub fn read_summary(&self) -> Result<Vec<u8>, PhasedError> {
        let path = self.summary();
        std::fs::read(&path).map_err(sections::io(&path))
    }

    pub fn write_marker(
        &self,
        path: &Path,
        counts: BTreeMap<String, u64>,
    ) -> Result<(), PhasedError> {
        let m = Marker {
            run: self.run.clone(),
            counts,
        };
        let mut bytes = serde_json::to_vec_pretty(&m).expect("marker serializes");
        bytes.push(b'\n');
        crate::files::atomic_write(path, &bytes).map_err(|source| PhasedError::Io {
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

/// Pairs of documents verified so far, and whether they passed.
pub(super) type VerifiedPairs =
    std::sync::Arc<std::sync::Mutex<HashMap<(u32, u32), bool, MixState>>>;

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
    /// Pairs already verified by this task's reduce steps, and the answer:
    /// a near-duplicate pair shares most bands, so it comes up in many
    /// partitions (bounded: past an eighth of `mem`, no more are kept).
    pub(super) verified: VerifiedPairs,
    /// Keys files open for shingle lookups, shared by this task's steps so
    /// that each is mapped once, not once per partition.
    pub(super) shingle_files: super::reduce::OpenShingleFiles,
}

impl Plan {
    /// Reads the scanned units' headers; every unit must have been scanned.
    pub fn load(
        dir: &GlobalDir,
        units: &[usize],
        partitions: usize,
        mem: usize,
    ) -> Result<Plan, PhasedError> {
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
            return Err(PhasedError::TooMany { docs: total });
        }
        Ok(Plan {
            dir: dir.clone(),
            units: out,
            offsets,
            total,
            partitions,
            mem,
            verified: Default::default(),
            shingle_files: Default::default(),
        })
    }

    /// An error unless `need` bytes for `step` fit the memory budget.
    pub(super) fn fits(&self, step: &'static str, need: usize) -> Result<(), PhasedError> {
        if need > self.mem {
            return Err(PhasedError::Memory {
                step,
                need,
                budget: self.mem,
                docs: self.total,
            });
        }
        Ok(())
    }

    /// The unit position and ordinal of a document index.
    pub(super) fn locate(&self, doc: u32) -> (usize, u32) {
        let i = self.offsets.partition_point(|&o| o <= doc as u64) - 1;
        (i, (doc as u64 - self.offsets[i]) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phased::{TAG_SCORES, TAG_WORDS};

    fn dir() -> (tempfile::TempDir, GlobalDir) {
        let t = tempfile::tempdir().unwrap();
        let d = GlobalDir::new(t.path().join("g"), "run-1".into(), t.path().into());
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
        let other = GlobalDir::new(d.root.clone(), "run-2".into(), d.output.clone());
        assert!(
            !other.marker_ok(&m),
            "a marker of another run does not count"
        );
        std::fs::write(&m, b"{ not json").unwrap();
        assert!(!d.marker_ok(&m));
    }
}
