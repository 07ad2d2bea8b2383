//! The manifest parser on arbitrary text: problems with locations, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    forja::fuzzing::quiet_panics();
    if let Ok(text) = std::str::from_utf8(data) {
        forja::fuzzing::manifest(text);
    }
});
