//! A stop asked for by a signal, honoured at the next unit boundary.
//!
//! `forja run` turns its first SIGINT or SIGTERM into [`request`]; the
//! reader then starts no new unit, the units already read are committed,
//! and the run ends with [`super::RunError::Interrupted`], resumable with
//! `--resume`. A second signal has the default effect (the process ends at
//! once; `--resume` still works, from the last committed unit).

use std::sync::atomic::{AtomicI32, Ordering};

static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Asks the run to stop at the next unit boundary (`signal` is reported).
pub fn request(signal: i32) {
    SIGNAL.store(signal, Ordering::SeqCst);
}

/// The signal that asked for a stop, if one did.
pub fn requested() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Installs the handlers for SIGINT and SIGTERM (once, from `main`).
#[cfg(unix)]
pub fn install() {
    extern "C" fn on_signal(sig: libc::c_int) {
        request(sig);
        // SAFETY: signal() is async-signal-safe; the next one ends the process.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    // SAFETY: installs an async-signal-safe handler (an atomic store and signal()).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// No signals to handle here.
#[cfg(not(unix))]
pub fn install() {}
