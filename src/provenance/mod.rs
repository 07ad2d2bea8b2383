//! The run manifest: what a finished output folder came from and holds,
//! and `forja verify`, which checks that it still does.
//!
//! `OUT/run-manifest.json` is written by the task that completes a run: the
//! forja version and git commit, the resolved pipeline manifest and its
//! hash, every input file with its size and xxh3, every output file with
//! its size and xxh3, each rank's threads, wall time and time per stage
//! (`OUT/_forja/ranks/`), and the merged funnel. It is the one file of an
//! output folder that differs between two runs of the same inputs (it
//! records times and thread counts); every file it lists is byte-identical.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::{rank_record, ranks_dir, FORJA_DIR, RUN_MANIFEST};
use crate::io::Unit;
use crate::ledger::Stats;
use crate::manifest::LoadedManifest;

pub mod audit;

#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Bad { path: String, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ProvenanceError + '_ {
    move |source| ProvenanceError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A file with its size and xxh3-64 checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    pub path: String,
    pub bytes: u64,
    pub xxh3: String,
}

/// Size and xxh3-64 of a file, read in 1 MiB blocks; for an object in
/// storage (`s3://`), its size and `etag:` its ETag, which the store keeps
/// and which changes with its content, instead of reading it again.
pub fn checksum(path: &Path) -> Result<(u64, String), ProvenanceError> {
    if let Some(url) = path.to_str().filter(|p| crate::files::is_url(p)) {
        let (size, etag) = crate::io::remote::head(url).map_err(|e| ProvenanceError::Bad {
            path: url.to_string(),
            message: e.message,
        })?;
        return Ok((size, format!("etag:{etag}")));
    }
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io_err(path))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, format!("{:016x}", h.digest())))
}

/// What one task of the run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankRun {
    pub rank: usize,
    pub world_size: usize,
    pub threads: usize,
    /// The `--phase` it ran, if only one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    pub steps: Vec<String>,
    pub seconds: f64,
    /// Wall seconds in each stage, over every pass of this task.
    pub stage_seconds: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    pub forja_version: String,
    /// The commit forja was built from (`FORJA_GIT_COMMIT` at build time, else `git`).
    pub git_commit: Option<String>,
    pub manifest_path: String,
    /// The folder the run ran in: relative input paths are relative to it,
    /// so that `forja verify` finds them from anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    pub manifest_hash: String,
    /// The manifest as resolved (defaults filled in).
    pub manifest: serde_json::Value,
    pub inputs: Vec<FileSum>,
    pub outputs: Vec<FileSum>,
    pub ranks: Vec<RankRun>,
    pub stats: Stats,
}

impl RunManifest {
    /// Each source's licence, by source name, as the manifest gives them.
    pub fn licences(&self) -> BTreeMap<String, String> {
        self.manifest["source"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        Some((s["name"].as_str()?.into(), s["licence"].as_str()?.into()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Records this task's part of the run (`_forja/ranks/`), one file per
/// rank and phase, for the run manifest.
pub fn record_rank(out: &Path, r: &RankRun) -> Result<(), ProvenanceError> {
    write_json(
        &rank_record(out, r.rank, r.world_size, r.phase.as_deref()),
        r,
    )
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), ProvenanceError> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(io_err(p))?;
    }
    let mut bytes = serde_json::to_vec_pretty(v).expect("serializes");
    bytes.push(b'\n');
    crate::files::atomic_write(path, &bytes).map_err(io_err(path))
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ProvenanceError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| ProvenanceError::Bad {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Every file below `root`, as paths relative to it, sorted; `skip` leaves
/// out a relative path (and, for a folder, all below it). A missing `root`
/// has no files.
fn files_under(root: &Path, skip: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>, ProvenanceError> {
    fn walk(
        root: &Path,
        d: &Path,
        skip: &dyn Fn(&Path) -> bool,
        acc: &mut Vec<PathBuf>,
    ) -> Result<(), ProvenanceError> {
        let rd = match std::fs::read_dir(d) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            other => other.map_err(io_err(d))?,
        };
        for e in rd {
            let p = e.map_err(io_err(d))?.path();
            let rel = p.strip_prefix(root).expect("under root");
            if skip(rel) {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, skip, acc)?;
            } else {
                acc.push(rel.to_path_buf());
            }
        }
        Ok(())
    }
    let mut acc = Vec::new();
    walk(root, root, &skip, &mut acc)?;
    acc.sort();
    Ok(acc)
}

/// Every file of an output folder that the run manifest vouches for:
/// all but `_forja/` (intermediates), the manifest itself, the report
/// (written from the outputs, after them), and files other
/// tasks of the run are still writing.
fn output_files(out: &Path) -> Result<Vec<PathBuf>, ProvenanceError> {
    files_under(out, |rel| {
        rel == Path::new(FORJA_DIR)
            || rel == Path::new(RUN_MANIFEST)
            || rel == Path::new(crate::files::REPORT)
            || crate::files::is_temporary(rel)
    })
}

/// The files of `dir` (and below) whose name ends with `suffix`, with their
/// full paths, sorted.
pub(crate) fn files_ending(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>, ProvenanceError> {
    Ok(files_under(dir, crate::files::is_temporary)?
        .into_iter()
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(suffix)))
        .map(|p| dir.join(p))
        .collect())
}

fn git_commit() -> Option<String> {
    if let Some(c) = option_env!("FORJA_GIT_COMMIT") {
        return Some(c.to_string());
    }
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Writes `OUT/run-manifest.json` for a complete run.
pub fn write_run_manifest(
    out: &Path,
    m: &LoadedManifest,
    units: &[Unit],
) -> Result<RunManifest, ProvenanceError> {
    let mut inputs = Vec::new();
    for u in units {
        for f in &u.files {
            let (bytes, xxh3) = checksum(&f.path)?;
            inputs.push(FileSum {
                path: f.path.display().to_string(),
                bytes,
                xxh3,
            });
        }
    }
    let mut outputs = Vec::new();
    for rel in output_files(out)? {
        let (bytes, xxh3) = checksum(&out.join(&rel))?;
        outputs.push(FileSum {
            path: rel.to_string_lossy().replace('\\', "/"),
            bytes,
            xxh3,
        });
    }
    let mut ranks: Vec<RankRun> = Vec::new();
    for p in files_ending(&ranks_dir(out), ".json")? {
        ranks.push(read_json(&p)?);
    }
    let stats: Stats = read_json(&out.join("stats.json"))?;
    let rm = RunManifest {
        forja_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: git_commit(),
        manifest_path: m.path.display().to_string(),
        working_dir: std::env::current_dir()
            .ok()
            .map(|d| d.display().to_string()),
        manifest_hash: crate::manifest::manifest_hash(m),
        manifest: serde_json::to_value(&m.manifest).expect("manifest serializes"),
        inputs,
        outputs,
        ranks,
        stats,
    };
    write_json(&out.join(RUN_MANIFEST), &rm)?;
    Ok(rm)
}

/// What `forja verify` found.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Verified {
    pub outputs_checked: usize,
    pub inputs_checked: usize,
    /// One line per problem: `output parquet/x.parquet: xxh3 ... (expected ...)`.
    pub mismatches: Vec<String>,
}

/// Re-checksums every output and input a run manifest lists.
pub fn verify(out: &Path) -> Result<Verified, ProvenanceError> {
    let path = out.join(RUN_MANIFEST);
    let rm: RunManifest = read_json(&path)?;
    let mut v = Verified::default();
    let check = |kind: &str, f: &FileSum, at: &Path, v: &mut Verified| match checksum(at) {
        Err(_) => v
            .mismatches
            .push(format!("{kind} {}: missing or unreadable", f.path)),
        Ok((bytes, xxh3)) if bytes != f.bytes || xxh3 != f.xxh3 => v.mismatches.push(format!(
            "{kind} {}: {bytes} bytes, xxh3 {xxh3} (the run manifest has {} bytes, {})",
            f.path, f.bytes, f.xxh3
        )),
        Ok(_) => {}
    };
    for f in &rm.outputs {
        check("output", f, &out.join(&f.path), &mut v);
        v.outputs_checked += 1;
    }
    let listed: std::collections::BTreeSet<&str> =
        rm.outputs.iter().map(|f| f.path.as_str()).collect();
    for rel in output_files(out)? {
        let r = rel.to_string_lossy().replace('\\', "/");
        if !listed.contains(r.as_str()) {
            v.mismatches
                .push(format!("output {r}: not in the run manifest"));
        }
    }
    for f in &rm.inputs {
        let p = Path::new(&f.path);
        let at = match &rm.working_dir {
            Some(d) if p.is_relative() && !crate::files::is_url(&f.path) => Path::new(d).join(p),
            _ => p.to_path_buf(),
        };
        check("input", f, &at, &mut v);
        v.inputs_checked += 1;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_xxh3_of_the_bytes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let (n, h) = checksum(&p).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(h, format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&data)));
        assert!(checksum(&d.path().join("nope")).is_err());
    }
}
