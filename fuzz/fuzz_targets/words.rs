//! Word splitting, sentence counting and the prose test on arbitrary text:
//! every word a slice of the text, in order; no panic; linear time.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    forja::fuzzing::quiet_panics();
    if let Ok(text) = std::str::from_utf8(data) {
        forja::fuzzing::words(text);
    }
});
