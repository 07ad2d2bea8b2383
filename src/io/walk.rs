//! Finding input files: glob patterns walked without trusting the tree.
//!
//! The walk is iterative (no recursion that grows with the tree), enters
//! each folder at most once by device and inode (a symlink loop such as
//! `up -> ..` is entered once, not forever), names each file once however it
//! was reached, and refuses file names that are not UTF-8 (they could not
//! be recorded in ids and the ledger) instead of skipping them silently.
//! [`output_overlap`] tells when an output folder lies where inputs are read.

use std::collections::HashSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

use super::InputError;

/// Components deeper than this below a pattern's fixed folder are not walked.
const MAX_DEPTH: usize = 256;

/// A file a pattern found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    /// The file as the walk reached it (the pattern's spelling).
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Device and inode: a file's identity whatever its spelling (`None` where
/// the platform does not tell, and nothing is then taken as seen before).
#[cfg(unix)]
pub(super) fn file_id(m: &fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((m.dev(), m.ino()))
}

/// Device and inode are not read on this platform.
#[cfg(not(unix))]
pub(super) fn file_id(_: &fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// True the first time an identity is seen (always, without one).
fn first_time(seen: &mut HashSet<(u64, u64)>, id: Option<(u64, u64)>) -> bool {
    id.is_none_or(|id| seen.insert(id))
}

fn unreadable(p: &Path, e: std::io::Error) -> InputError {
    InputError::Unreadable {
        path: p.display().to_string(),
        source: e,
    }
}

/// The files `full` (an absolute or base-relative pattern, already
/// resolved) matches, sorted by path, each once.
pub fn walk(full: &Path, pattern: &str) -> Result<Vec<Found>, InputError> {
    let text = full.to_string_lossy();
    let bad = |message: String| InputError::BadPattern {
        pattern: pattern.into(),
        message,
    };
    let compiled = glob::Pattern::new(&text).map_err(|e| bad(e.to_string()))?;
    // The fixed folder: every component before the first with a wildcard.
    let mut base = PathBuf::new();
    let mut rest = 0;
    let comps: Vec<Component> = full.components().collect();
    for (i, c) in comps.iter().enumerate() {
        if has_meta(&c.as_os_str().to_string_lossy()) {
            rest = comps.len() - i;
            break;
        }
        base.push(c);
    }
    if rest == 0 {
        // No wildcard: one file (a link to a file is followed).
        return match fs::metadata(full) {
            Ok(m) if m.is_file() => Ok(vec![Found {
                path: full.to_path_buf(),
                size: m.len(),
            }]),
            Ok(_) => Ok(Vec::new()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(unreadable(full, e)),
        };
    }
    let deep = comps[comps.len() - rest..]
        .iter()
        .any(|c| c.as_os_str() == "**");
    let max_depth = if deep { MAX_DEPTH } else { rest };
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut out = Vec::new();
    let mut seen_dirs = HashSet::new();
    let mut seen_files = HashSet::new();
    // A pattern with no fixed folder is walked from the current one, its
    // files named as the pattern names them (`x.jsonl`, not `./x.jsonl`).
    let here = |d: &Path| -> PathBuf {
        if d.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            d.to_path_buf()
        }
    };
    let Ok(meta) = fs::metadata(here(&base)) else {
        return Ok(out);
    };
    if !meta.is_dir() {
        return Ok(out);
    }
    first_time(&mut seen_dirs, file_id(&meta));
    let mut stack = vec![(base, 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let entries = fs::read_dir(here(&dir)).map_err(|e| unreadable(&dir, e))?;
        for e in entries {
            let e = e.map_err(|e| unreadable(&dir, e))?;
            let path = dir.join(e.file_name());
            // Links are followed (to files and to folders), once.
            let Ok(m) = fs::metadata(&path) else {
                tracing::warn!("{}: dangling link or vanished, skipped", path.display());
                continue;
            };
            if m.is_dir() {
                if depth + 1 < max_depth && first_time(&mut seen_dirs, file_id(&m)) {
                    stack.push((path, depth + 1));
                }
                continue;
            }
            if !m.is_file() {
                continue;
            }
            let Some(name) = path.to_str() else {
                if compiled.matches_path_with(Path::new(&*path.to_string_lossy()), opts) {
                    return Err(InputError::BadName {
                        path: path.to_string_lossy().into_owned(),
                    });
                }
                continue;
            };
            if compiled.matches_with(name, opts) && first_time(&mut seen_files, file_id(&m)) {
                out.push(Found {
                    path,
                    size: m.len(),
                });
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Why an output folder may not be `out`, if it overlaps the inputs: an
/// input file lies inside it, or a recursive (`**`) pattern would read
/// what it writes on the next run.
pub fn output_overlap<'a>(
    out: &Path,
    base: &Path,
    patterns: &[&str],
    inputs: impl IntoIterator<Item = &'a Path>,
) -> Option<String> {
    let out_c = canonical_prefix(out);
    for p in inputs {
        if let Ok(c) = fs::canonicalize(p) {
            if c.starts_with(&out_c) {
                return Some(format!(
                    "output.dir {} holds the input {}: forja would overwrite or delete it; choose an output folder apart from the inputs",
                    out.display(),
                    p.display()
                ));
            }
        }
    }
    for pat in patterns {
        if crate::files::is_url(pat) || !pat.contains("**") {
            continue;
        }
        let full = crate::files::resolve(base, pat);
        let fixed: PathBuf = full
            .components()
            .take_while(|c| !has_meta(&c.as_os_str().to_string_lossy()))
            .collect();
        if out_c.starts_with(canonical_prefix(&fixed)) {
            return Some(format!(
                "output.dir {} lies inside the folder that the input pattern {pat:?} walks: the next run would read its outputs; choose an output folder apart from the inputs",
                out.display()
            ));
        }
    }
    None
}

/// The canonical form of `p`'s longest existing ancestor, with the rest
/// appended as written (an output folder may not exist yet).
fn canonical_prefix(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut head = abs.clone();
    let mut tail = Vec::new();
    loop {
        if let Ok(c) = fs::canonicalize(&head) {
            let mut r = c;
            for t in tail.iter().rev() {
                r.push(t);
            }
            return r;
        }
        match (head.file_name().map(|n| n.to_os_string()), head.parent()) {
            (Some(n), Some(parent)) => {
                tail.push(n);
                head = parent.to_path_buf();
            }
            _ => return abs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn symlink_loops_are_entered_once_and_files_named_once() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("data");
        fs::create_dir_all(d.join("a/b")).unwrap();
        fs::write(d.join("a/x.jsonl"), "{}").unwrap();
        fs::write(d.join("a/b/y.jsonl"), "{}").unwrap();
        std::os::unix::fs::symlink("..", d.join("a/b/up")).unwrap();
        std::os::unix::fs::symlink(d.join("a"), d.join("again")).unwrap();
        let full = d.join("**/*.jsonl");
        let found = walk(&full, "data/**/*.jsonl").unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|f| {
                f.path
                    .strip_prefix(&d)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_pattern_without_a_folder_walks_the_current_one() {
        // The test binary runs in the crate's folder.
        let found = walk(Path::new("Cargo.*"), "Cargo.*").unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|f| f.path.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["Cargo.lock", "Cargo.toml"]);
    }

    #[test]
    fn star_does_not_cross_folders() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("sub")).unwrap();
        fs::write(t.path().join("a.jsonl"), "{}").unwrap();
        fs::write(t.path().join("sub/b.jsonl"), "{}").unwrap();
        let found = walk(&t.path().join("*.jsonl"), "*.jsonl").unwrap();
        assert_eq!(found.len(), 1);
        let deep = walk(&t.path().join("**/*.jsonl"), "**/*.jsonl").unwrap();
        assert_eq!(deep.len(), 2);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn non_utf8_names_are_an_error_not_a_silent_skip() {
        use std::os::unix::ffi::OsStrExt;
        let t = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"bad\xff.jsonl");
        fs::write(t.path().join(name), "{}").unwrap();
        let err = walk(&t.path().join("*.jsonl"), "*.jsonl").unwrap_err();
        assert!(err.to_string().contains("UTF-8"), "{err}");
    }

    #[test]
    fn overlap_is_seen() {
        let t = tempfile::tempdir().unwrap();
        let input = t.path().join("jsonl/a.jsonl");
        fs::create_dir_all(input.parent().unwrap()).unwrap();
        fs::write(&input, "{}").unwrap();
        let base = t.path();
        assert!(output_overlap(base, base, &["jsonl/*.jsonl"], [input.as_path()]).is_some());
        assert!(output_overlap(
            &base.join("out"),
            base,
            &["jsonl/*.jsonl"],
            [input.as_path()]
        )
        .is_none());
        assert!(output_overlap(&base.join("jsonl/out"), base, &["jsonl/**/*.jsonl"], []).is_some());
    }
}
