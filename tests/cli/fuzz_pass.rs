//! The bounded fuzz pass CI runs: every committed seed and every crash the
//! fuzzers ever found (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`)
//! through the same entry points as the fuzz targets, each seed with a fixed
//! set of deterministic mutations (bit flips, cuts, splices, hostile
//! numbers). `scripts/fuzz` runs the real fuzzers (libFuzzer) for longer.

use std::fs;
use std::path::Path;

use forja::fuzzing;
use forja::InputFormat;

use crate::harness::REPO;

/// Mutations per seed.
const ROUNDS: usize = 300;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const HOSTILE: &[&[u8]] = &[
    b"18446744073709551615",
    b"99999999999999999999999",
    b"\r\n\r\nWARC/1.0\r\nContent-Length: 4\r\n\r\n",
    b"\xff\xfe\x00\x00",
    b"\x1f\x8b\x08\x00",
    b"\x28\xb5\x2f\xfd",
    b"\x5d\x2a\x4d\x18\xff\xff\xff\x7f",
    b"<div><div><div><div><div><div><div><div>",
    b"\"text\":",
    b"\n",
    b"\x00\x00\x00\x00\x00\x00\x00\x00",
];

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(3) {
        match rng.below(5) {
            0 if !v.is_empty() => {
                for _ in 0..=rng.below(8) {
                    let i = rng.below(v.len());
                    v[i] ^= 1 << rng.below(8);
                }
            }
            1 => v.truncate(rng.below(v.len() + 1)),
            2 if !v.is_empty() => {
                let a = rng.below(v.len());
                let b = (a + rng.below(256)).min(v.len());
                let at = rng.below(v.len());
                let slice = v[a..b].to_vec();
                v.splice(at..at, slice);
            }
            _ => {
                let h = HOSTILE[rng.below(HOSTILE.len())];
                let at = rng.below(v.len() + 1);
                if rng.below(2) == 0 && at + h.len() <= v.len() {
                    v[at..at + h.len()].copy_from_slice(h);
                } else {
                    v.splice(at..at, h.iter().copied());
                }
            }
        }
    }
    v
}

fn run(target: &str, data: &[u8]) {
    match target {
        "jsonl" => drop(fuzzing::read(data, "f.jsonl.gz", InputFormat::Jsonl, 1000)),
        "warc" => drop(fuzzing::read(data, "f.warc.gz", InputFormat::Warc, 4096)),
        "parquet" => drop(fuzzing::read(data, "f.parquet", InputFormat::Parquet, 1000)),
        "text" => drop(fuzzing::read(data, "f.txt", InputFormat::Text, 1000)),
        "html" => drop(fuzzing::html(data)),
        "manifest" => {
            if let Ok(t) = std::str::from_utf8(data) {
                fuzzing::manifest(t);
            }
        }
        "words" => {
            if let Ok(t) = std::str::from_utf8(data) {
                fuzzing::words(t);
            }
        }
        "models" => drop(fuzzing::models(data)),
        other => panic!("no fuzz target {other}"),
    }
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_seed_and_regression_and_their_mutations_keep_the_readers_promises() {
    let root = Path::new(REPO).join("fuzz");
    let mut ran = 0;
    for target in [
        "jsonl", "warc", "parquet", "text", "html", "manifest", "words", "models",
    ] {
        let seeds = files(&root.join("corpus").join(target));
        assert!(!seeds.is_empty(), "fuzz/corpus/{target} has seeds");
        for (name, data) in files(&root.join("regressions").join(target)) {
            eprintln!("regression {name}");
            run(target, &data);
            ran += 1;
        }
        for (i, (_, seed)) in seeds.iter().enumerate() {
            run(target, seed);
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((i as u64 + 1) * 0x1000_0001));
            for _ in 0..ROUNDS {
                run(target, &mutate(seed, &mut rng));
                ran += 1;
            }
        }
    }
    assert!(ran > 1000, "{ran} inputs");
}
