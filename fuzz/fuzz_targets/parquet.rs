//! The parquet reader on arbitrary bytes: it ends, numbers every document once,
//! and never panics (see `forja::fuzzing::read`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    forja::fuzzing::quiet_panics();
    forja::fuzzing::read(data, "f.parquet", forja::InputFormat::Parquet, 1000);
});
