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

#[test]
fn columns_a_stage_reads_must_come_from_an_earlier_stage() {
    let env = Env::new();
    env.write("in/a.jsonl", b"{\"text\":\"x\"}\n");
    let head = "version = 1\n[[source]]\nname = \"a\"\npaths = [\"in/*.jsonl\"]\nformat = \"jsonl\"\nlicence = \"x\"\n";
    // A score column nothing adds, perplexity per language without `lid`,
    // and a column added twice: each refused at its line and column.
    let m = env.write(
        "cols.toml",
        format!(
            "{head}\n[[stage]]\ntype = \"near_dedup\"\nkeep = \"score\"\nscore_column = \"fineweb_score\"\n\n\
             [[stage]]\ntype = \"perplexity\"\nmodel = \"m.gguf\"\nlanguages = [\"ca\"]\n\n\
             [[stage]]\ntype = \"length\"\n\n[[stage]]\ntype = \"length\"\n\n[output]\ndir = \"out\"\n"
        )
        .as_bytes(),
    );
    let out = env.forja(&["validate", m.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cols.toml:11:16: stage #1 (near_dedup) reads `fineweb_score`"),
        "{err}"
    );
    assert!(
        err.contains("cols.toml:16:13: stage #2 (perplexity) reads `lang`"),
        "{err}"
    );
    assert!(
        err.contains("stage #4 (length) adds `n_chars`, but stage #3 (length) adds it"),
        "{err}"
    );
    assert!(err.contains("4 problems"), "{err}");

    // `quality` without `lid` works from its `language`: allowed, with a
    // warning at that line.
    let m = env.write(
        "warn.toml",
        format!("{head}\n[[stage]]\ntype = \"quality\"\n\n[output]\ndir = \"out\"\n").as_bytes(),
    );
    let stdout = env.ok(&["validate", m.to_str().unwrap()]);
    assert!(
        stdout.contains("warning: ")
            && stdout.contains("warn.toml:8:1: stage #1 (quality) reads `lang`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("every document is taken as `en`"),
        "{stdout}"
    );
    // Spelled out, the fallback is the user's choice: no warning.
    let m = env.write(
        "chosen.toml",
        format!(
            "{head}\n[[stage]]\ntype = \"quality\"\nlanguage = \"ca\"\n\n[output]\ndir = \"out\"\n"
        )
        .as_bytes(),
    );
    let stdout = env.ok(&["validate", m.to_str().unwrap()]);
    assert!(!stdout.contains("warning"), "{stdout}");
}

#[test]
fn validate_print_fills_in_every_default_and_is_accepted_unchanged() {
    let env = Env::new();
    env.write("in/a.jsonl", &jsonl(&udhr()[..3]));
    let m = env.manifest(
        "full",
        "[[source]]\nname = \"s\"\npaths = [\"in/*\"]\nformat = \"jsonl\"\nlicence = \"x\"\n\
         [[stage]]\ntype = \"quality\"\n[stage.gopher_quality]\nmin_doc_words = 10\n",
    );
    let printed = env.ok(&["validate", "--print", m.to_str().unwrap()]);
    // Defaults the manifest left out are written out.
    for key in [
        "text_field = \"text\"",
        "weight = 1.0",
        "rules = [",
        "min_doc_words = 10",
    ] {
        assert!(printed.contains(key), "{key} missing from\n{printed}");
    }
    let again = env.write("full-resolved.toml", printed.as_bytes());
    let twice = env.ok(&["validate", "--print", again.to_str().unwrap()]);
    assert_eq!(printed, twice, "the resolved manifest resolves to itself");
    assert!(env
        .ok(&["validate", again.to_str().unwrap()])
        .contains(": ok ("));
}
