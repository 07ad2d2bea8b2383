//! The output folder's layout, unit markers, and what a rank leaves behind.
//!
//! ```text
//! OUT/parquet/<source>/<unit>-<shard>.parquet   kept documents
//! OUT/jsonl/<source>/<unit>-<shard>.jsonl.zst
//! OUT/megatron/<split>/<lang>[/<source>]/<n>.{bin,idx}  token shards (shards::family)
//! OUT/megatron/{blend.json,*.blend,shares.tsv,families.json,tokenizer.json}
//! OUT/ledger/rank-<r>-of-<w>.parquet            dropped and rejected documents
//! OUT/stats/rank-<r>-of-<w>.json                the rank's funnel
//! OUT/stats.json                                the merged funnel, once all ranks are done
//! OUT/_forja/run.json                           what run this folder holds
//! OUT/_forja/units/<unit>.{ledger.parquet,done.json}
//! OUT/_forja/units/<unit>.megatron/<split>/<lang>.{bin,idx}  the unit's token parts
//! OUT/_forja/megatron/<family>.json             a merged family's shards
//! OUT/_forja/global/<n>-<stage>/                a global stage's steps (phased)
//! ```
//!
//! A unit's `done.json` is written last, after its shards and ledger part:
//! its presence means the unit is complete.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{io_err, RunError, UnitMarker};
use crate::files::{atomic_write, commit};
use crate::io::Unit;
use crate::ledger::{self, LedgerRow, Stats};
use crate::manifest::manifest_hash;
use crate::manifest::{LoadedManifest, Manifest, OutputFormat};

pub use crate::files::FORJA_DIR;

/// What run an output folder holds; resuming requires the same one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub forja_version: String,
    pub manifest_name: String,
    pub manifest_hash: String,
    pub units: usize,
    /// xxh3 of every input's path and size: a resume over changed inputs is refused.
    pub inputs_hash: String,
    pub world_size: usize,
    /// Every input's size, mtime and fingerprint when the run started.
    #[serde(default)]
    pub inputs: Vec<super::owner::InputStamp>,
}

impl RunRecord {
    /// The record of a run of `m` over `units`, with their stamps.
    pub fn new(
        m: &LoadedManifest,
        units: &[Unit],
        world_size: usize,
        inputs: Vec<super::owner::InputStamp>,
    ) -> Self {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for u in units {
            for f in &u.files {
                h.update(f.rel.as_bytes());
                h.update(&[0]);
                h.update(&f.size.to_le_bytes());
            }
        }
        RunRecord {
            forja_version: env!("CARGO_PKG_VERSION").into(),
            manifest_name: m.manifest.name.clone(),
            manifest_hash: manifest_hash(m),
            units: units.len(),
            inputs_hash: format!("{:016x}", h.digest()),
            world_size,
            inputs,
        }
    }
}

pub(super) struct Layout {
    pub root: PathBuf,
    formats: Vec<OutputFormat>,
    sources: Vec<String>,
    rank: usize,
    world: usize,
    /// The files earlier attempts of this rank wrote here (its journal), read once.
    owned: std::sync::OnceLock<std::collections::BTreeSet<PathBuf>>,
}

/// The journal of the files a rank writes (see [`crate::files::journal`]).
pub(super) fn journal_tag(rank: usize) -> String {
    format!("rank-{rank:05}")
}

pub(super) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, RunError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| RunError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })
}

fn parquet_err(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> RunError + '_ {
    move |e| RunError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    }
}

pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RunError> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("stats serialize");
    bytes.push(b'\n');
    atomic_write(path, &bytes).map_err(io_err(path))
}

fn remove_if_exists(path: &Path) -> Result<(), RunError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

impl Layout {
    pub fn new(root: &Path, m: &Manifest, rank: usize, world: usize) -> Self {
        Layout {
            root: root.to_path_buf(),
            formats: m.output.formats.clone(),
            sources: m.sources.iter().map(|s| s.name.clone()).collect(),
            rank,
            world,
            owned: std::sync::OnceLock::new(),
        }
    }

    fn owned(&self) -> &std::collections::BTreeSet<PathBuf> {
        self.owned.get_or_init(|| {
            crate::files::journal::owned_files_of(&self.root, &journal_tag(self.rank))
                .unwrap_or_else(|e| {
                    tracing::warn!(
                        "{}: cannot read what earlier runs wrote: {e}",
                        self.root.display()
                    );
                    Default::default()
                })
        })
    }

    /// Removes `rel` if an earlier attempt of this run wrote it.
    fn remove_owned(&self, rel: &Path) -> Result<(), RunError> {
        if self.owned().contains(rel) {
            remove_if_exists(&self.root.join(rel))?;
        }
        Ok(())
    }

    fn record_path(&self) -> PathBuf {
        self.root.join(FORJA_DIR).join("run.json")
    }

    fn unit_file(&self, unit: usize, suffix: &str) -> PathBuf {
        self.root
            .join(FORJA_DIR)
            .join("units")
            .join(format!("{unit:06}.{suffix}"))
    }

    fn rank_name(&self) -> String {
        format!("rank-{:05}-of-{:05}", self.rank, self.world)
    }

    pub fn check_record(&self, rec: &RunRecord) -> Result<(), RunError> {
        let path = self.record_path();
        let fail = |message: String| RunError::Resume {
            dir: self.root.display().to_string(),
            message,
        };
        if !path.exists() {
            return Err(fail(
                "no earlier run there (no _forja/run.json) to go on from: run the manifest's first step before the others".into(),
            ));
        }
        let old: RunRecord = read_json(&path)?;
        if old.world_size != rec.world_size {
            return Err(fail(format!(
                "it was run with --world-size {}, not {}; resume with the same world size or start over in a new folder",
                old.world_size, rec.world_size
            )));
        }
        let mut changes = Vec::new();
        if old.manifest_hash != rec.manifest_hash {
            changes.push("the manifest changed".to_string());
        }
        changes.extend(super::owner::input_changes(&old.inputs, &rec.inputs, 20));
        if changes.is_empty() && (old.units != rec.units || old.inputs_hash != rec.inputs_hash) {
            changes.push(format!(
                "the inputs make {} units, not {}",
                rec.units, old.units
            ));
        }
        if !changes.is_empty() {
            return Err(fail(format!(
                "what it was run on changed:\n  {}\nstart over with --restart (deletes what that run wrote), or use a new output folder",
                changes.join("\n  ")
            )));
        }
        Ok(())
    }

    /// A fresh run owns the folder: a one-task run deletes what earlier runs
    /// wrote there (by their journals); tasks of a bigger run refuse to mix
    /// with another run.
    pub fn check_not_foreign(&self, rec: &RunRecord) -> Result<(), RunError> {
        let path = self.record_path();
        if self.world == 1 {
            let n = super::owner::clear_owned(&self.root)?;
            if n > 0 {
                tracing::info!(
                    "{}: starting over, deleted {n} files an earlier run wrote",
                    self.root.display()
                );
            }
            return Ok(());
        }
        if !path.exists() {
            return Ok(());
        }
        let old: RunRecord = read_json(&path)?;
        if old != *rec {
            return Err(RunError::Resume {
                dir: self.root.display().to_string(),
                message: format!(
                    "it holds another run (world size {}, manifest {}); use a new output folder",
                    old.world_size, old.manifest_hash
                ),
            });
        }
        Ok(())
    }

    fn failure_path(&self, rank: usize) -> PathBuf {
        self.root
            .join(FORJA_DIR)
            .join("failed")
            .join(format!("rank-{rank:05}.txt"))
    }

    /// Leaves word that this rank failed, so ranks waiting at a barrier stop
    /// instead of waiting for it forever. Best effort: the error itself is
    /// what the caller reports.
    pub fn record_failure(&self, message: &str) {
        let _ = atomic_write(&self.failure_path(self.rank), message.as_bytes());
    }

    pub fn clear_failure(&self) -> Result<(), RunError> {
        remove_if_exists(&self.failure_path(self.rank))
    }

    /// A failure another rank recorded after `since`, if any.
    pub fn failure_since(&self, since: std::time::SystemTime) -> Option<String> {
        let dir = self.root.join(FORJA_DIR).join("failed");
        for e in fs::read_dir(dir).ok()?.flatten() {
            let fresh = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since);
            if fresh {
                let msg = fs::read_to_string(e.path()).unwrap_or_default();
                return Some(format!(
                    "{} failed: {msg}",
                    e.file_name().to_string_lossy().trim_end_matches(".txt")
                ));
            }
        }
        None
    }

    pub fn write_record(&self, rec: &RunRecord) -> Result<(), RunError> {
        write_json(&self.record_path(), rec)
    }

    /// Where the final pass writes a unit's token parts.
    pub fn parts_dir(&self, unit: usize) -> PathBuf {
        self.unit_file(unit, "megatron")
    }

    /// The record of a merged Megatron family (by its index in the plan).
    pub fn family_marker(&self, family: usize) -> PathBuf {
        self.root
            .join(FORJA_DIR)
            .join("megatron")
            .join(format!("{family:05}.json"))
    }

    /// True once the unit's marker is written.
    pub fn unit_done(&self, unit: usize) -> bool {
        self.unit_file(unit, "done.json").exists()
    }

    /// Removes whatever an earlier attempt wrote for this unit.
    pub fn clear_unit(&self, u: &Unit) -> Result<(), RunError> {
        let parts = self.parts_dir(u.index);
        if parts.exists() {
            fs::remove_dir_all(&parts).map_err(io_err(&parts))?;
        }
        for suffix in [
            "done.json",
            "ledger.parquet",
            "done.json.tmp",
            "ledger.parquet.tmp",
        ] {
            remove_if_exists(&self.unit_file(u.index, suffix))?;
        }
        let prefix = format!("{:06}-", u.index);
        for f in &self.formats {
            let dir = Path::new(f.dir_name()).join(&self.sources[u.source]);
            let mine: Vec<PathBuf> = self
                .owned()
                .range(dir.clone()..)
                .take_while(|p| p.starts_with(&dir))
                .filter(|p| {
                    p.parent() == Some(dir.as_path())
                        && p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                })
                .cloned()
                .collect();
            for p in mine {
                remove_if_exists(&self.root.join(p))?;
            }
        }
        Ok(())
    }

    /// A completed unit's marker, if it has one and its outputs are there.
    pub fn load_done(&self, unit: usize) -> Result<Option<UnitMarker>, RunError> {
        let marker_path = self.unit_file(unit, "done.json");
        if !marker_path.exists() {
            return Ok(None);
        }
        let marker: UnitMarker = read_json(&marker_path)?;
        if let Some(missing) = marker.outputs.iter().find(|o| !self.root.join(o).exists()) {
            tracing::warn!("unit {unit}: output {missing} is gone; redoing the unit");
            return Ok(None);
        }
        Ok(Some(marker))
    }

    pub fn commit_unit(
        &self,
        unit: usize,
        stats: &Stats,
        rows: &[LedgerRow],
        outputs: &[PathBuf],
    ) -> Result<(), RunError> {
        let ledger_path = self.unit_file(unit, "ledger.parquet");
        if let Some(dir) = ledger_path.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let tmp = ledger_path.with_extension("parquet.tmp");
        ledger::write_parquet(&tmp, [ledger::rows_to_batch(rows)]).map_err(parquet_err(&tmp))?;
        commit(&tmp, &ledger_path).map_err(io_err(&ledger_path))?;
        let marker = UnitMarker {
            unit,
            outputs: outputs
                .iter()
                .map(|p| {
                    p.strip_prefix(&self.root)
                        .unwrap_or(p)
                        .to_string_lossy()
                        .into_owned()
                })
                .collect(),
            stats: stats.clone(),
        };
        write_json(&self.unit_file(unit, "done.json"), &marker)
    }

    /// Removes the rank's own final files and any temporary ones a killed
    /// attempt left, so that they are rewritten from the units.
    pub fn clear_rank(&self) -> Result<(), RunError> {
        let name = self.rank_name();
        for rel in [
            format!("ledger/{name}.parquet"),
            format!("ledger/{name}.parquet.tmp"),
            format!("stats/{name}.json"),
            format!("stats/{name}.json.tmp"),
            "stats.json".to_string(),
            "stats.json.tmp".to_string(),
            // The run is not complete again until its last task says so.
            crate::files::RUN_MANIFEST.to_string(),
            format!("{}.tmp", crate::files::RUN_MANIFEST),
            crate::files::REPORT.to_string(),
            format!("{}.tmp", crate::files::REPORT),
        ] {
            self.remove_owned(Path::new(&rel))?;
        }
        // Temporaries of killed attempts (`name.tmp.<pid>`), listed too.
        let tmps: Vec<PathBuf> = self
            .owned()
            .iter()
            .filter(|p| crate::files::is_temporary(p))
            .cloned()
            .collect();
        for p in tmps {
            remove_if_exists(&self.root.join(p))?;
        }
        Ok(())
    }

    /// Writes the rank's ledger (unit parts in order) and funnel.
    pub fn finish_rank(&self, units: &[Unit], stats: &Stats) -> Result<(), RunError> {
        let path = self
            .root
            .join("ledger")
            .join(format!("{}.parquet", self.rank_name()));
        let dir = path.parent().expect("has parent");
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let tmp = path.with_extension("parquet.tmp");
        let parts = units
            .iter()
            .map(|u| self.unit_file(u.index, "ledger.parquet"));
        ledger::concat_parquet(parts, &tmp).map_err(parquet_err(&tmp))?;
        commit(&tmp, &path).map_err(io_err(&path))?;
        write_json(
            &self
                .root
                .join("stats")
                .join(format!("{}.json", self.rank_name())),
            stats,
        )
    }

    /// Writes `stats.json` once every rank has written its funnel.
    pub fn merge_if_complete(&self) -> Result<Option<Stats>, RunError> {
        let run = collect_stats(&self.root)?;
        Ok(run.missing.is_empty().then_some(run.stats))
    }
}

/// An output folder's funnel, merged over the ranks that have finished.
pub struct RunStats {
    /// The funnel, every finished rank merged.
    pub stats: Stats,
    /// Tasks the run was split across.
    pub world_size: usize,
    /// Ranks that have not written their funnel yet.
    pub missing: Vec<usize>,
}

/// Merges the ranks' funnels of an output folder; once every rank is there
/// and the counts add up, writes `stats.json`.
pub fn collect_stats(root: &Path) -> Result<RunStats, RunError> {
    let record: RunRecord = read_json(&root.join(FORJA_DIR).join("run.json"))?;
    let (mut stats, missing) = merge_rank_stats(root, record.world_size)?;
    if missing.is_empty() {
        stats.global = global_summaries(root)?;
        stats.check_invariant().map_err(RunError::Invariant)?;
        write_json(&root.join("stats.json"), &stats)?;
    }
    Ok(RunStats {
        stats,
        world_size: record.world_size,
        missing,
    })
}

/// The `summary.json` each global stage's cluster step left, by folder.
fn global_summaries(root: &Path) -> Result<BTreeMap<String, serde_json::Value>, RunError> {
    let dir = root.join(FORJA_DIR).join("global");
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in entries.flatten() {
        let p = e.path().join(crate::phased::SUMMARY);
        if p.is_file() {
            out.insert(e.file_name().to_string_lossy().into_owned(), read_json(&p)?);
        }
    }
    Ok(out)
}

/// Merges the funnels of ranks 0..world in rank order; returns the ranks missing.
pub fn merge_rank_stats(root: &Path, world: usize) -> Result<(Stats, Vec<usize>), RunError> {
    let mut merged = Stats::default();
    let mut missing = Vec::new();
    for r in 0..world {
        let p = root
            .join("stats")
            .join(format!("rank-{r:05}-of-{world:05}.json"));
        if !p.exists() {
            missing.push(r);
            continue;
        }
        let s: Stats = read_json(&p)?;
        merged.merge(&s);
    }
    // Ranks hold interleaved units: one order for any world size.
    merged
        .files
        .sort_by(|a, b| (&a.source, &a.path).cmp(&(&b.source, &b.path)));
    Ok((merged, missing))
}
