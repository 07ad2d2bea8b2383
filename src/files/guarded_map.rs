//! Read-only memory maps that survive their file shrinking under them.
//!
//! Reading a mapped page past a file's new end raises SIGBUS, which kills
//! the process. A [`GuardedMap`] registers its address range; a SIGBUS
//! handler, installed once, maps a page of zeros over a faulting page that
//! lies in a registered range, marks that map as faulted and lets the read
//! go on. The reader checks [`GuardedMap::faulted`] after each step and
//! treats the file as truncated, discarding what it framed in that step (it
//! may hold the zeros). A SIGBUS anywhere else gets the default action.
//!
//! The handler only reads atomics and calls `mmap`, a plain system call on
//! Linux; it allocates nothing and takes no lock.

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use memmap2::Mmap;

/// Maps open at once that the handler can tell apart (a reader holds one).
const SLOTS: usize = 256;

struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    faulted: AtomicBool,
    taken: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    faulted: AtomicBool::new(false),
    taken: AtomicBool::new(false),
};

static REGISTRY: [Slot; SLOTS] = [EMPTY; SLOTS];
static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// A read-only map of a whole file, guarded against the file shrinking.
pub struct GuardedMap {
    map: Mmap,
    slot: usize,
}

impl GuardedMap {
    /// Maps `file` (which must not be empty).
    pub fn new(file: &File) -> io::Result<GuardedMap> {
        install();
        // SAFETY: a read-only private view; the file shrinking under it is
        // what the registration below guards against.
        let map = unsafe { Mmap::map(file)? };
        // More maps than slots: refused rather than left unguarded.
        let slot = (0..SLOTS)
            .find(|&i| {
                REGISTRY[i]
                    .taken
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            })
            .ok_or_else(|| io::Error::other("too many guarded maps open at once"))?;
        let s = &REGISTRY[slot];
        s.faulted.store(false, Ordering::Release);
        s.start.store(map.as_ptr() as usize, Ordering::Release);
        s.len.store(map.len(), Ordering::Release);
        Ok(GuardedMap { map, slot })
    }

    /// True once a read hit a page past the file's end (it read zeros).
    pub fn faulted(&self) -> bool {
        REGISTRY[self.slot].faulted.load(Ordering::Acquire)
    }
}

impl Deref for GuardedMap {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for GuardedMap {
    fn drop(&mut self) {
        let s = &REGISTRY[self.slot];
        s.len.store(0, Ordering::Release);
        s.start.store(0, Ordering::Release);
        s.taken.store(false, Ordering::Release);
        // The map (with any zero pages put over it) is unmapped whole next.
    }
}

#[cfg(unix)]
fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sysconf and sigaction with a handler that is async-signal-safe.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE);
            if page > 0 {
                PAGE.store(page as usize, Ordering::Relaxed);
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
        }
    });
}

#[cfg(not(unix))]
fn install() {}

#[cfg(unix)]
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(Ordering::Relaxed);
    for s in &REGISTRY {
        let (start, len) = (
            s.start.load(Ordering::Acquire),
            s.len.load(Ordering::Acquire),
        );
        if len > 0 && addr >= start && addr < start + len {
            let at = addr & !(page - 1);
            // SAFETY: replaces one page of this reader's own read-only map
            // with zeros; nothing else lives in that range.
            let p = unsafe {
                libc::mmap(
                    at as *mut libc::c_void,
                    page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                s.faulted.store(true, Ordering::Release);
                return;
            }
        }
    }
    // Not a guarded map: what SIGBUS would have done.
    // SAFETY: signal and raise are async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_shrinks_reads_zeros_and_is_marked() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        std::fs::write(&p, vec![7u8; 1 << 20]).unwrap();
        let f = File::open(&p).unwrap();
        let m = GuardedMap::new(&f).unwrap();
        assert_eq!(m[1000], 7);
        assert!(!m.faulted());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(4096)
            .unwrap();
        // Past the new end: zeros, not a crash.
        let sum: u64 = m[512 << 10..].iter().map(|&b| b as u64).sum();
        assert_eq!(sum, 0);
        assert!(m.faulted());
        assert_eq!(m[100], 7);
    }
}
