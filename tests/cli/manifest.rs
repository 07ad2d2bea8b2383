//! `forja validate`: every problem, with its line and column.

use crate::harness::*;

#[test]
fn validate_reports_every_problem_with_location() {
    let env = Env::new();
    env.write("in/a.jsonl", b"{\"text\":\"x\"}\n");
    let m = env.write(
        "bad.toml",
        br#"version = 1
[[source]]
name = "a"
paths = ["in/*.jsonl"]
format = "jsnol"
licence = "x"

[[stage]]
type = "length"
min_words = 50
max_words = 5

[[stage]]
type = "dedupe"

[output]
dir = "out"
zstd_level = 40
"#,
    );
    let out = env.forja(&["validate", m.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in ["bad.toml:5:", "bad.toml:10:", "bad.toml:1", "bad.toml:18:"] {
        assert!(err.contains(expected), "{expected} in:\n{err}");
    }
    assert!(err.contains("jsnol") && err.contains("dedupe"), "{err}");
    assert!(err.contains("4 problems"), "{err}");
    // `run` refuses the same manifest before reading anything.
    let out = env.forja(&["run", m.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!env.path("out").exists());
}

#[test]
fn syntax_error_has_a_location() {
    let env = Env::new();
    let m = env.write("s.toml", b"version = 1\n[[source]\nname = \"a\"\n");
    let out = env.forja(&["validate", m.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s.toml:2:"), "{err}");
}

#[test]
fn bundled_manifests_validate() {
    let env = Env::new();
    let stdout = env.ok(&["validate", &format!("{REPO}/manifests/demo.toml")]);
    assert!(stdout.contains("ok (4 sources, 8 stages"), "{stdout}");
    assert!(
        stdout.contains(
            "repeated_lines:scan, repeated_lines:reduce, repeated_lines:cluster, exact_dedup:scan"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("final, megatron\n"), "{stdout}");
}
