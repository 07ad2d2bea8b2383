//! HTML to text on arbitrary pages: bounded nesting, no panic, no overflow.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    forja::fuzzing::quiet_panics();
    forja::fuzzing::html(data);
});
