//! The warc reader on arbitrary bytes: it ends, numbers every document once,
//! and never panics (see `forja::fuzzing::read`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    quiet_panics();
    forja::fuzzing::read(data, "f.warc.gz", forja::InputFormat::Warc, 4096);
});

/// Panics that forja catches itself (a page, a row group) are not crashes;
/// libfuzzer-sys still aborts on any panic that escapes.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}
