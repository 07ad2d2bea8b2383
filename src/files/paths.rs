//! The names of an output folder's parts and the resolution of the paths a
//! manifest writes.
//!
//! Paths in a manifest are relative to the manifest's folder ([`resolve`]);
//! file names recorded in document ids and the ledger are relative to it too
//! ([`relative_to`]), so they do not depend on where forja runs from.

use std::path::{Path, PathBuf};

/// The folder of forja's own working state inside an output folder.
pub const FORJA_DIR: &str = "_forja";
/// The run's provenance record, at the top of the output folder.
pub const RUN_MANIFEST: &str = "run-manifest.json";
/// The run's HTML report, at the top of the output folder.
pub const REPORT: &str = "report.html";
/// The folder of the Megatron shards, blends and share tables.
pub const MEGATRON_DIR: &str = "megatron";

/// The folder of the tasks' records inside an output folder.
pub fn ranks_dir(out: &Path) -> PathBuf {
    out.join(FORJA_DIR).join("ranks")
}

/// Where a task of rank `rank` (and `--phase`, if it ran one step) records
/// what it did; its presence says the task succeeded.
pub fn rank_record(out: &Path, rank: usize, world: usize, phase: Option<&str>) -> PathBuf {
    let step = phase
        .map(|p| format!(".{}", p.replace(':', "-")))
        .unwrap_or_default();
    ranks_dir(out).join(format!("rank-{rank:05}-of-{world:05}{step}.json"))
}

/// True for a path that names an object (`s3://...`), not a local file.
pub fn is_url(p: &str) -> bool {
    p.starts_with("s3://")
}

/// `p` as written in a manifest whose folder is `base`: absolute paths as
/// they are, relative ones joined to `base`, `.` and `name/..` removed.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    lexical_clean(&joined)
}

/// `path` relative to the folder `base`, whichever folder forja runs from.
///
/// This is the file name recorded in document ids and the ledger, so it must
/// not depend on the current directory or on how the manifest was named.
pub fn relative_to(path: &Path, base: &Path) -> String {
    let abs = |p: &Path| lexical_clean(&std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    let (p, b) = (abs(path), abs(base));
    let pc: Vec<_> = p.components().collect();
    let bc: Vec<_> = b.components().collect();
    let common = pc.iter().zip(&bc).take_while(|(x, y)| x == y).count();
    let mut rel = PathBuf::new();
    for _ in common..bc.len() {
        rel.push("..");
    }
    for c in &pc[common..] {
        rel.push(c);
    }
    rel.to_string_lossy().into_owned()
}

/// Removes `.` and `name/..` pairs without touching the file system, so
/// `manifests/../out` is shown as `out`.
pub fn lexical_clean(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_from_the_manifest_folder() {
        let base = Path::new("manifests");
        assert_eq!(resolve(base, "../out/demo"), PathBuf::from("out/demo"));
        assert_eq!(resolve(base, "./x/../y"), PathBuf::from("manifests/y"));
        assert_eq!(resolve(Path::new("."), "../a"), PathBuf::from("../a"));
        assert_eq!(resolve(base, "/abs/p"), PathBuf::from("/abs/p"));
    }

    #[test]
    fn recorded_paths_are_relative_to_the_manifest_folder() {
        let cwd = std::env::current_dir().unwrap();
        let file = cwd.join("data/demo/a.jsonl");
        assert_eq!(
            relative_to(&file, Path::new("manifests")),
            "../data/demo/a.jsonl"
        );
        assert_eq!(
            relative_to(Path::new("data/demo/a.jsonl"), &cwd.join("manifests")),
            "../data/demo/a.jsonl"
        );
        assert_eq!(relative_to(Path::new("m/in/x"), Path::new("m")), "in/x");
    }

    #[test]
    fn only_s3_urls_are_urls() {
        assert!(is_url("s3://b/k") && !is_url("/data/s3://x"));
    }
}
