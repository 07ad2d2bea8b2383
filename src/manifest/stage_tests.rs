//! The manifest checks of every registered stage: its example passes
//! them, and a bad parameter is reported at its own line.

use serde::Serialize;

use crate::stages::{LidConfig, StageConfig};

#[test]
fn every_stage_example_passes_the_manifest_checks() {
    for c in StageConfig::examples() {
        assert!(
            c.problems().is_empty(),
            "{}: {:?}",
            c.type_name(),
            c.problems()
        );
        #[derive(Serialize)]
        struct W<'a> {
            stage: [&'a StageConfig; 2],
        }
        // After a `lid` stage, so that what each reads is there.
        let lid = StageConfig::Lid(LidConfig::default());
        let stages = toml::to_string(&W { stage: [&lid, &c] }).unwrap();
        let text = format!(
            "version = 1\n{stages}\n[[source]]\nname = \"s\"\npaths = [\"x\"]\nformat = \"jsonl\"\n\
             licence = \"l\"\n[output]\ndir = \"o\"\n"
        );
        let parsed = super::parse(&text);
        if c.type_name() == "lid" {
            // Two lid stages add the same columns.
            let problems = parsed.unwrap_err();
            assert!(problems[0].message.contains("`lang`"), "{problems:?}");
            continue;
        }
        let m = parsed.unwrap_or_else(|p| panic!("{}: {p:?}\n{text}", c.type_name()));
        assert_eq!(m.stages[1], c);
    }
}

#[test]
fn a_bad_parameter_of_any_stage_is_reported_at_its_field() {
    // Each stage checks its own parameters; these are refused.
    let bad = [
        ("exact_dedup", "partitions = 0", "partitions"),
        ("near_dedup", "bands = 0", "bands"),
        ("repeated_lines", "min_docs = 0", "min_docs"),
        ("length", "min_words = 10\nmax_words = 5", "min_words"),
        ("lid", "line_threshold = 2.0", "line_threshold"),
        ("perplexity", "model = \"m\"\nstride = 0", "stride"),
        (
            "url_filter",
            "lists = \"l\"\ncategories = [\"adult\"]\ndrop = [\"gambling\"]",
            "drop",
        ),
        ("tokenize", "tokenizer = \"\"", "tokenizer"),
    ];
    for (ty, fields, field) in bad {
        let text = format!(
            "version = 1\n[[source]]\nname = \"s\"\npaths = [\"x\"]\nformat = \"jsonl\"\nlicence = \"l\"\n\
             [[stage]]\ntype = \"{ty}\"\n{fields}\n[output]\ndir = \"o\"\n"
        );
        let problems = super::parse(&text).expect_err(ty);
        let line = text.lines().position(|l| l.starts_with(field)).unwrap() + 1;
        assert!(
            problems.iter().any(|p| p.line == line),
            "{ty}: {problems:?} not at line {line}"
        );
    }
}
