//! Files written whole or not at all.
//!
//! A file is written under a temporary name ([`tmp_path`]), synced, and
//! renamed to its final name ([`commit`]), so a killed run never leaves a
//! half-written file under a final name; [`is_temporary`] tells such
//! leftovers apart. Every final name is noted in the output folder's
//! [`journal`] before it exists.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::journal;

/// The temporary name a file is written under before [`commit`].
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// True for a file still being written under [`tmp_path`]'s name (and
/// [`atomic_write`]'s `.tmp.<pid>`): another task may rename it any moment.
pub fn is_temporary(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    name.ends_with(".tmp")
        || name
            .rsplit_once(".tmp.")
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Syncs a finished temporary file and moves it to its final name.
pub fn commit(tmp: &Path, path: &Path) -> io::Result<()> {
    File::open(tmp)?.sync_all()?;
    journal::note(path)?;
    fs::rename(tmp, path)
}

/// Writes a whole small file atomically.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    // Ranks may write the same small file (the run record) at once: each
    // its own temporary name, and the last rename wins whole.
    let mut tmp = tmp_path(path).into_os_string();
    tmp.push(format!(".{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    journal::create_output(&tmp)?.write_all(bytes)?;
    commit(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_recognised() {
        let p = Path::new("out/stats.json");
        assert!(is_temporary(&tmp_path(p)));
        assert!(is_temporary(Path::new("out/stats.json.tmp.4242")));
        assert!(!is_temporary(p));
        assert!(!is_temporary(Path::new("out/a.tmp.json")));
    }
}
