//! HTML to text on arbitrary pages: bounded nesting, no panic, no overflow.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    quiet_panics();
    forja::fuzzing::html(data);
});

/// Panics that forja catches itself (a page, a row group) are not crashes;
/// libfuzzer-sys still aborts on any panic that escapes.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}
