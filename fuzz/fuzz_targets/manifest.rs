//! The manifest parser on arbitrary text: problems with locations, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    quiet_panics();
    if let Ok(text) = std::str::from_utf8(data) {
        forja::fuzzing::manifest(text);
    }
});

/// Panics that forja catches itself (a page, a row group) are not crashes;
/// libfuzzer-sys still aborts on any panic that escapes.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}
