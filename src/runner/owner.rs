//! Who may write an output folder, and what a new run may delete there.
//!
//! - A folder is forja's when it holds `_forja/run.json`. A folder that
//!   exists, is not empty and is not forja's is refused unless `--force`
//!   (and even then forja deletes nothing it did not write).
//! - A run holds `_forja/lock` for as long as it runs: an exclusive `flock`
//!   for a one-task run, a shared one for each rank of a multi-task run (the
//!   run record keeps two different multi-task runs apart). A second run is
//!   refused with the holder's host, pid and start time, which the holder
//!   writes into the lock file.
//! - Starting over deletes only the files the folder's journals list
//!   ([`crate::files::journal`]) and forja's own `_forja/` state.
//! - Resuming compares the manifest's hash and every input's size, mtime
//!   and fingerprint with the run record, and refuses any difference.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{io_err, RunError};
use crate::files::FORJA_DIR;
use crate::io::Unit;

/// The lock an output folder's run holds; released when dropped.
pub struct FolderLock {
    _file: File,
}

fn holder_line(rank: usize, world: usize) -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "host {host}, pid {}, rank {rank} of {world}, started at unix time {started}\n",
        std::process::id()
    )
}

/// Takes the folder's lock (creating `_forja/` if needed).
pub fn lock_folder(root: &Path, rank: usize, world: usize) -> Result<FolderLock, RunError> {
    let dir = root.join(FORJA_DIR);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err(&path))?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let mode = if world == 1 {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        // SAFETY: flock on a descriptor this function owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), mode | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::WouldBlock {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(RunError::Locked {
                    dir: root.display().to_string(),
                    holder: if holder.is_empty() {
                        "another forja run".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            // File systems without flock (some cluster mounts): the holder
            // line below still names who writes here.
            tracing::warn!(
                "{}: cannot lock ({err}); make sure no other run writes into this folder",
                path.display()
            );
        }
    }
    let line = holder_line(rank, world);
    if world == 1 || rank == 0 {
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = file.write_all(line.as_bytes());
    }
    Ok(FolderLock { _file: file })
}

/// True when `root` exists, holds anything, and holds no forja run record.
pub fn foreign_contents(root: &Path) -> Result<Option<String>, RunError> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(root)(e)),
    };
    if root.join(FORJA_DIR).join("run.json").is_file() {
        return Ok(None);
    }
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // A lock left by a run killed before its record: forja's own.
        .filter(|n| n != FORJA_DIR)
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    names.sort();
    let more = names.len().saturating_sub(5);
    names.truncate(5);
    let mut list = names.join(", ");
    if more > 0 {
        list.push_str(&format!(" and {more} more"));
    }
    Ok(Some(list))
}

/// Deletes what earlier runs wrote: the files the journals list, then
/// forja's `_forja/` state except the lock this run holds.
pub fn clear_owned(root: &Path) -> Result<usize, RunError> {
    let n = crate::files::journal::remove_owned(root).map_err(io_err(root))?;
    let dir = root.join(FORJA_DIR);
    if let Ok(entries) = fs::read_dir(&dir) {
        for e in entries {
            let e = e.map_err(io_err(&dir))?;
            if e.file_name() == "lock" {
                continue;
            }
            let p = e.path();
            let t = e.file_type().map_err(io_err(&p))?;
            if t.is_dir() {
                fs::remove_dir_all(&p).map_err(io_err(&p))?;
            } else {
                fs::remove_file(&p).map_err(io_err(&p))?;
            }
        }
    }
    Ok(n)
}

/// An input as the run record keeps it, to tell on resume whether it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputStamp {
    /// As recorded in ids and the ledger.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the epoch (0 when unknown or remote).
    pub mtime_ns: i128,
    /// xxh3 of the first and last 64 KiB (empty for object storage, whose
    /// listing gives sizes only).
    pub fingerprint: String,
}

const EDGE: u64 = 64 << 10;

/// Size, mtime and edge fingerprint of a local file.
fn stamp_file(path: &Path, rel: &str, size: u64) -> std::io::Result<InputStamp> {
    if crate::files::is_url(rel) {
        return Ok(InputStamp {
            path: rel.into(),
            size,
            mtime_ns: 0,
            fingerprint: String::new(),
        });
    }
    let mut f = File::open(path)?;
    let meta = f.metadata()?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    let len = meta.len();
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&len.to_le_bytes());
    let mut buf = vec![0u8; EDGE as usize];
    let n = (&mut f).take(EDGE).read(&mut buf)?;
    h.update(&buf[..n]);
    if len > EDGE {
        f.seek(std::io::SeekFrom::Start(len.saturating_sub(EDGE).max(EDGE)))?;
        let mut tail = Vec::with_capacity(EDGE as usize);
        (&mut f).take(EDGE).read_to_end(&mut tail)?;
        h.update(&tail);
    }
    Ok(InputStamp {
        path: rel.into(),
        size: len,
        mtime_ns,
        fingerprint: format!("{:016x}", h.digest()),
    })
}

/// The stamps of every input of the run, in unit order.
pub fn stamp_inputs(units: &[Unit]) -> Result<Vec<InputStamp>, RunError> {
    let mut out = Vec::new();
    for u in units {
        for f in &u.files {
            out.push(stamp_file(&f.path, &f.rel, f.size).map_err(io_err(&f.path))?);
        }
    }
    Ok(out)
}

/// What differs between the recorded inputs and today's, one line each
/// (at most `limit` lines, then a count).
pub fn input_changes(old: &[InputStamp], new: &[InputStamp], limit: usize) -> Vec<String> {
    use std::collections::BTreeMap;
    let before: BTreeMap<&str, &InputStamp> = old.iter().map(|s| (s.path.as_str(), s)).collect();
    let after: BTreeMap<&str, &InputStamp> = new.iter().map(|s| (s.path.as_str(), s)).collect();
    let mut out = Vec::new();
    for (p, a) in &after {
        match before.get(p) {
            None => out.push(format!("{p}: new input")),
            Some(b) if b.size != a.size => {
                out.push(format!("{p}: size {} -> {} bytes", b.size, a.size))
            }
            Some(b) if b.fingerprint != a.fingerprint => out.push(format!("{p}: content changed")),
            Some(b) if b.mtime_ns != a.mtime_ns => {
                out.push(format!("{p}: modified since (mtime changed)"))
            }
            Some(_) => {}
        }
    }
    for p in before.keys() {
        if !after.contains_key(p) {
            out.push(format!("{p}: no longer an input"));
        }
    }
    if out.is_empty() && old.len() == new.len() {
        // Same set, same stamps, but another order: units moved.
        if old.iter().zip(new).any(|(a, b)| a.path != b.path) {
            out.push("the inputs are in another order".into());
        }
    }
    if out.len() > limit {
        let more = out.len() - limit;
        out.truncate(limit);
        out.push(format!("... and {more} more"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(p: &str, size: u64, fp: &str, mtime: i128) -> InputStamp {
        InputStamp {
            path: p.into(),
            size,
            mtime_ns: mtime,
            fingerprint: fp.into(),
        }
    }

    #[test]
    fn changes_are_named() {
        let old = [
            stamp("a", 1, "x", 1),
            stamp("b", 2, "y", 1),
            stamp("c", 3, "z", 1),
        ];
        let new = [
            stamp("a", 1, "x", 1),
            stamp("b", 2, "w", 1),
            stamp("d", 3, "z", 1),
        ];
        let c = input_changes(&old, &new, 10);
        assert_eq!(
            c,
            [
                "b: content changed",
                "d: new input",
                "c: no longer an input"
            ]
        );
        assert!(input_changes(&old, &old, 10).is_empty());
        let touched = [
            stamp("a", 1, "x", 2),
            stamp("b", 2, "y", 1),
            stamp("c", 3, "z", 1),
        ];
        assert_eq!(
            input_changes(&old, &touched, 10),
            ["a: modified since (mtime changed)"]
        );
    }

    #[test]
    fn fingerprint_sees_a_change_in_the_middle_of_a_small_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x");
        fs::write(&p, b"hello world").unwrap();
        let a = stamp_file(&p, "x", 11).unwrap();
        fs::write(&p, b"hello_world").unwrap();
        let b = stamp_file(&p, "x", 11).unwrap();
        assert_ne!(a.fingerprint, b.fingerprint);
    }

    #[test]
    fn a_second_lock_names_the_holder() {
        let t = tempfile::tempdir().unwrap();
        let _held = lock_folder(t.path(), 0, 1).unwrap();
        let err = lock_folder(t.path(), 0, 1).err().expect("refused");
        let msg = err.to_string();
        assert!(msg.contains("pid"), "{msg}");
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
    }

    #[test]
    fn foreign_folders_are_seen() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(foreign_contents(&t.path().join("new")).unwrap(), None);
        assert_eq!(foreign_contents(t.path()).unwrap(), None);
        fs::write(t.path().join("notes.txt"), "x").unwrap();
        assert_eq!(
            foreign_contents(t.path()).unwrap().as_deref(),
            Some("notes.txt")
        );
        fs::create_dir_all(t.path().join(FORJA_DIR)).unwrap();
        fs::write(t.path().join(FORJA_DIR).join("run.json"), "{}").unwrap();
        assert_eq!(foreign_contents(t.path()).unwrap(), None);
    }
}
