//! The record of what forja wrote into an output folder, so that it deletes
//! only that.
//!
//! A run registers its output folder with [`Journal::open`]; from then on,
//! every file the output helpers ([`create_output`], [`atomic_write`](super::atomic_write),
//! [`commit`](super::commit)) create under that folder is appended, by its path
//! relative to the folder, to `_forja/owned-<rank>.txt` *before* the file
//! exists. A later run that starts over, or a resumed unit that is redone,
//! deletes exactly the files those lists name (see [`owned_files`]) and
//! nothing else, whatever else the folder holds. Files under `_forja/`
//! itself are forja's working state and are not listed.
//!
//! Several runs may be open in one process (the tests do that); each file is
//! matched to the registered folder that contains it.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::paths::FORJA_DIR;

const PREFIX: &str = "owned-";

struct Open {
    root: PathBuf,
    file: File,
    seen: HashSet<PathBuf>,
}

static OPEN: Mutex<Vec<Arc<Mutex<Open>>>> = Mutex::new(Vec::new());

/// An output folder's journal, open for as long as this value lives.
pub struct Journal {
    entry: Arc<Mutex<Open>>,
}

impl Journal {
    /// Starts journaling the files created under `root` into
    /// `root/_forja/owned-<tag>.txt` (appended to, so a resumed attempt
    /// keeps the earlier attempt's list).
    pub fn open(root: &Path, tag: &str) -> io::Result<Journal> {
        let dir = root.join(FORJA_DIR);
        fs::create_dir_all(&dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{PREFIX}{tag}.txt")))?;
        let entry = Arc::new(Mutex::new(Open {
            root: root.to_path_buf(),
            file,
            seen: HashSet::new(),
        }));
        lock(&OPEN).push(entry.clone());
        Ok(Journal { entry })
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        lock(&OPEN).retain(|e| !Arc::ptr_eq(e, &self.entry));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records that `path` is about to be created, if it lies in a journaled
/// output folder (outside `_forja/`).
pub fn note(path: &Path) -> io::Result<()> {
    let open: Vec<Arc<Mutex<Open>>> = lock(&OPEN).clone();
    for entry in open {
        let mut e = lock(&entry);
        let Ok(rel) = path.strip_prefix(&e.root) else {
            continue;
        };
        if rel.as_os_str().is_empty() || rel.starts_with(FORJA_DIR) {
            return Ok(());
        }
        let rel = rel.to_path_buf();
        let Some(line) = rel.to_str().map(str::to_string) else {
            return Err(io::Error::other(format!(
                "{}: output names must be UTF-8",
                path.display()
            )));
        };
        if e.seen.insert(rel) {
            writeln!(e.file, "{line}")?;
            e.file.flush()?;
        }
        return Ok(());
    }
    Ok(())
}

/// Creates (truncating) an output file, recording it first.
pub fn create_output(path: &Path) -> io::Result<File> {
    note(path)?;
    File::create(path)
}

/// A listed name is taken only if it stays inside the folder: relative, no
/// `..`, no root or prefix.
fn safe_rel(line: &str) -> Option<PathBuf> {
    let p = Path::new(line);
    if line.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(p.to_path_buf())
}

/// Every file the journals of `root` name, relative to it, in order.
pub fn owned_files(root: &Path) -> io::Result<BTreeSet<PathBuf>> {
    owned_by(root, None)
}

/// The files one journal (`tag`, as given to [`Journal::open`]) names:
/// what one task wrote, so that it never touches another task's files.
pub fn owned_files_of(root: &Path, tag: &str) -> io::Result<BTreeSet<PathBuf>> {
    owned_by(root, Some(tag))
}

fn owned_by(root: &Path, tag: Option<&str>) -> io::Result<BTreeSet<PathBuf>> {
    let dir = root.join(FORJA_DIR);
    let mut out = BTreeSet::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Some(t) = name
            .strip_prefix(PREFIX)
            .and_then(|n| n.strip_suffix(".txt"))
        else {
            continue;
        };
        if tag.is_some_and(|want| want != t) {
            continue;
        }
        for line in io::BufReader::new(File::open(e.path())?).lines() {
            if let Some(rel) = safe_rel(line?.trim_end_matches('\r')) {
                out.insert(rel);
            }
        }
    }
    Ok(out)
}

/// Deletes the files the journals of `root` name (and temporaries beside
/// them), then the folders they leave empty; returns how many files went.
/// Nothing outside those lists is touched.
pub fn remove_owned(root: &Path) -> io::Result<usize> {
    let files = owned_files(root)?;
    let mut removed = 0;
    let mut dirs = BTreeSet::new();
    for rel in &files {
        let p = root.join(rel);
        // Never through a link: a listed name that is now a symlink or a
        // folder was not left there by forja.
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => {
                fs::remove_file(&p)?;
                removed += 1;
            }
            _ => {}
        }
        let mut d = rel.parent();
        while let Some(x) = d.filter(|x| !x.as_os_str().is_empty()) {
            dirs.insert(x.to_path_buf());
            d = x.parent();
        }
    }
    // Deepest first; a folder that still holds anything stays.
    let mut dirs: Vec<PathBuf> = dirs.into_iter().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let _ = fs::remove_dir(root.join(d));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_files_are_removed() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("jsonl/web")).unwrap();
        fs::write(root.join("jsonl/web/mine.jsonl"), "user").unwrap();
        {
            let _j = Journal::open(root, "test").unwrap();
            let mut f = create_output(&root.join("jsonl/web/000000-00000.jsonl.zst")).unwrap();
            f.write_all(b"x").unwrap();
            create_output(&root.join("ledger.parquet")).unwrap();
            // Inside _forja: not listed.
            create_output(&root.join("_forja/x")).unwrap();
        }
        // After the journal closed, nothing more is recorded.
        create_output(&root.join("later.txt")).unwrap();
        let listed = owned_files(root).unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|p| p.to_str().unwrap())
                .collect::<Vec<_>>(),
            ["jsonl/web/000000-00000.jsonl.zst", "ledger.parquet"]
        );
        assert_eq!(remove_owned(root).unwrap(), 2);
        assert!(root.join("jsonl/web/mine.jsonl").exists());
        assert!(root.join("later.txt").exists());
        assert!(!root.join("ledger.parquet").exists());
    }

    #[test]
    fn hostile_lines_are_ignored() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("out");
        fs::create_dir_all(root.join(FORJA_DIR)).unwrap();
        fs::write(t.path().join("precious"), "x").unwrap();
        fs::write(
            root.join(FORJA_DIR).join("owned-0.txt"),
            "../precious\n/etc/passwd\n\nok.txt\n",
        )
        .unwrap();
        fs::write(root.join("ok.txt"), "x").unwrap();
        assert_eq!(remove_owned(&root).unwrap(), 1);
        assert!(t.path().join("precious").exists());
    }
}
