//! forja's own binary files from arbitrary bytes: the second-opinion
//! language model (`models/lid-groups.bin`) and tokenizer word counts
//! (`--counts-out`). Refused or read, never a panic, and no allocation a
//! length field alone asks for.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    forja::fuzzing::quiet_panics();
    forja::fuzzing::models(data);
});
