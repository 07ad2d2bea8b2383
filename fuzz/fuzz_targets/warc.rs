//! The warc reader on arbitrary bytes: it ends, numbers every document once,
//! and never panics (see `forja::fuzzing::read`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    forja::fuzzing::quiet_panics();
    forja::fuzzing::read(data, "f.warc.gz", forja::InputFormat::Warc, 4096);
});
