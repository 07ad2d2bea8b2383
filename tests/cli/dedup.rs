//! Corpus-wide dedup: the phased steps give the same decisions whatever the
//! world size, and repeated-paragraph removal strips real page furniture.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::*;

/// Eight files of real UDHR text with exact copies, near copies (a word
/// changed) and a shared header line spread across files.
fn corpus(env: &Env) {
    let all = udhr();
    let mut parts: Vec<Vec<serde_json::Value>> = vec![Vec::new(); 8];
    for (i, r) in all.iter().enumerate() {
        let text = r["text"].as_str().unwrap().to_string();
        let mut r = r.clone();
        if i % 5 == 0 {
            r["text"] = format!("Home | News | Contact | Search\n{text}").into();
        }
        parts[i % 8].push(r.clone());
        let words: Vec<&str> = text.split(' ').collect();
        if i % 7 == 0 {
            // An exact copy in another file.
            parts[(i + 3) % 8].push(r.clone());
        } else if i % 7 == 1 && words.len() > 60 {
            // A near copy: one word in 60 replaced.
            let edited: Vec<&str> = words
                .iter()
                .enumerate()
                .map(|(j, w)| if j % 60 == 30 { "zzz" } else { *w })
                .collect();
            let mut c = r.clone();
            c["text"] = edited.join(" ").into();
            parts[(i + 5) % 8].push(c);
        }
    }
    for (p, records) in parts.iter().enumerate() {
        env.write(&format!("in/part-{p}.jsonl.zst"), &zst(&jsonl(records)));
    }
}

const DEDUP: &str = r#"
[[source]]
name = "u"
paths = ["in/*.jsonl.zst"]
format = "jsonl"
licence = "x"

[[stage]]
type = "normalize"
[[stage]]
type = "repeated_lines"
min_docs = 20
[[stage]]
type = "exact_dedup"
partitions = 16
[[stage]]
type = "near_dedup"
verify = 0.8
partitions = 16
"#;

fn drops_by_reason(rows: &[(String, String, u64, String)]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r.0.clone()).or_default() += 1;
    }
    m
}

#[test]
fn world_sizes_1_3_and_8_drop_the_same_documents() {
    let env = Env::new();
    corpus(&env);
    let m = env.manifest("dd", DEDUP);
    let m = m.to_str().unwrap();
    env.ok(&["run", "--quiet", m, "--out", "w1"]);
    let one = ledger_all(&env.path("w1"));
    let reasons = drops_by_reason(&one);
    assert!(reasons["exact_duplicate"] > 50, "{reasons:?}");
    assert!(reasons["near_duplicate"] > 30, "{reasons:?}");
    let kept = kept_texts(&env.path("w1"));
    assert!(
        kept.iter().all(|t| !t.contains("Home | News")),
        "the shared header is gone"
    );
    assert_accounted(&env.path("w1"));

    // Three ranks at once, meeting at the barriers.
    env.run_ranks(m, "w3", 3);
    // Eight ranks, one step at a time, as job arrays would run them.
    let mut steps: Vec<String> = Vec::new();
    for stage in ["repeated_lines", "exact_dedup", "near_dedup"] {
        for s in ["scan", "reduce"] {
            steps.push(format!("{stage}:{s}"));
        }
        steps.push(format!("{stage}:cluster"));
    }
    steps.push("final".into());
    // Out of order, a step refuses to start.
    let early = env.forja(&[
        "run",
        "--quiet",
        m,
        "--out",
        "w8",
        "--world-size",
        "8",
        "--phase",
        "exact_dedup:reduce",
    ]);
    assert_eq!(early.status.code(), Some(1));
    // No --resume was given, so the message does not talk about it.
    let said = String::from_utf8_lossy(&early.stderr);
    assert!(
        !said.contains("--resume") && said.contains("first step"),
        "{said}"
    );
    for step in &steps {
        let ranks = if step.ends_with(":cluster") { 1 } else { 8 };
        for r in 0..ranks {
            env.ok(&[
                "run",
                "--quiet",
                m,
                "--out",
                "w8",
                "--world-size",
                "8",
                "--rank",
                &r.to_string(),
                "--phase",
                step,
            ]);
        }
    }
    // A tiny memory budget: sorts spill to runs on disk and merge back.
    env.ok(&["run", "--quiet", m, "--out", "small", "--mem", "16K"]);
    let spilled: u64 = std::fs::read_dir(env.path("small/_forja/global/03-near_dedup/reduce"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".done.json"))
        .map(|p| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            v["counts"]["spilled_runs"].as_u64().unwrap()
        })
        .sum();
    assert!(spilled > 0, "the budget made the sorts spill");
    for w in ["w3", "w8", "small"] {
        let rows = ledger_all(&env.path(w));
        assert_eq!(rows.len(), one.len(), "{w}");
        assert!(rows == one, "{w} drops other documents");
        assert_eq!(
            tree(&env.path(&format!("{w}/parquet"))),
            tree(&env.path("w1/parquet")),
            "{w} keeps other bytes"
        );
    }
}

/// Paragraphs of the installation guide pages, as the test reads them.
fn paragraphs(text: &str) -> Vec<String> {
    text.split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect()
}

#[test]
fn repeated_paragraphs_strip_the_installation_guide_headers_and_footers() {
    let env = Env::new();
    let guide = Path::new(REPO).join("data/demo/install-guide");
    let m = env.manifest(
        "guide",
        &format!(
            r#"
[[source]]
name = "guide"
paths = ["{}/*.jsonl.gz"]
format = "jsonl"
licence = "GPL-2.0-or-later"

[[stage]]
type = "repeated_lines"
unit = "paragraph"
position = "edges"
min_docs = 3
"#,
            guide.display()
        ),
    );
    env.ok(&["run", "--quiet", m.to_str().unwrap(), "--out", "g"]);
    assert_accounted(&env.path("g"));
    // Pages that were navigation only are dropped whole.
    let dropped: Vec<(String, u64)> = ledger(&env.path("g"))
        .into_iter()
        .map(|(reason, file, line, _)| {
            assert_eq!(reason, "repeated_lines_only");
            (file.rsplit('/').next().unwrap().to_string(), line)
        })
        .collect();
    let mut before: Vec<Vec<String>> = Vec::new();
    let mut gone: Vec<Vec<String>> = Vec::new();
    for lang in ["ca", "en", "es"] {
        let raw = std::fs::read(guide.join(format!("{lang}.jsonl.gz"))).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&raw[..]), &mut text)
            .unwrap();
        for (i, line) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let ps = paragraphs(v["text"].as_str().unwrap());
            if dropped.contains(&(format!("{lang}.jsonl.gz"), i as u64 + 1)) {
                gone.push(ps);
            } else {
                before.push(ps);
            }
        }
    }
    let after: Vec<Vec<String>> = kept_texts(&env.path("g"))
        .iter()
        .map(|t| paragraphs(t))
        .collect();
    assert_eq!(before.len(), after.len());
    // Navigation: numbered section titles, chapter and appendix titles, the
    // table-of-contents label and the book's title, in the three languages.
    let heading = |p: &str| {
        let first = p.split(' ').next().unwrap_or("");
        let numbered = first.ends_with('.')
            && first.len() > 1
            && first[..first.len() - 1]
                .split('.')
                .all(|x| !x.is_empty() && x.chars().all(|c| c.is_ascii_alphanumeric()));
        numbered
            || [
                "Chapter",
                "Appendix",
                "Capítol",
                "Apèndix",
                "Capítulo",
                "Apéndice",
            ]
            .iter()
            .any(|w| p.starts_with(&format!("{w} ")))
            || ["Table of Contents", "Sumari", "Tabla de contenidos"].contains(&p)
            || p.contains("Debian GNU/Linux 12")
            || p.contains("versió 12")
    };
    let (mut removed, mut navigation, mut headers_gone) = (0, 0, 0);
    let mut other = Vec::new();
    for p in gone.iter().flatten() {
        removed += 1;
        if heading(p) {
            navigation += 1;
        } else {
            other.push(p.clone());
        }
    }
    for (b, a) in before.iter().zip(&after) {
        // What is left is the page with a prefix and a suffix taken away.
        let start = b.iter().position(|p| Some(p) == a.first()).unwrap();
        assert_eq!(&b[start..start + a.len()], &a[..], "only the edges change");
        for p in b[..start].iter().chain(&b[start + a.len()..]) {
            removed += 1;
            if heading(p) {
                navigation += 1;
            } else {
                other.push(p.clone());
            }
        }
        headers_gone += usize::from(start > 0);
    }
    println!(
        "{removed} paragraphs removed from {} pages ({} of them navigation only, dropped): \
         {navigation} navigation, others {other:?}; {headers_gone} kept pages lost their header",
        before.len() + gone.len(),
        gone.len()
    );
    // Counted independently (Python over the same pages, one language at a
    // time, units counted in the first and last 8 paragraphs): 528 per
    // language at min_docs = 3, all navigation. (Counted over whole pages,
    // 688 per language would go, three of them a "Warning" label that sits
    // under a page header.)
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(removed, 1584);
    assert!(headers_gone >= before.len() - 6, "{headers_gone}");
}

/// True if python3 can run datatrove's MinHash dedup. `.ci/run` installs it
/// and sets FORJA_REQUIRE_CROSSCHECKS, so CI fails rather than skips.
fn datatrove_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args([
            "-c",
            "import datatrove, spacy, xxhash, regex, tokenizers, orjson",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("FORJA_REQUIRE_CROSSCHECKS").is_none(),
            "FORJA_REQUIRE_CROSSCHECKS is set but python3 cannot import datatrove and its dependencies"
        );
        eprintln!("SKIPPED: python3 with datatrove 0.10.1 not found (pip install datatrove==0.10.1 spacy 'xxhash<3.6' regex tokenizers orjson)");
    }
    ok
}

#[test]
fn datatrove_hashing_drops_what_datatrove_drops() {
    if !datatrove_available() {
        return;
    }
    let env = Env::new();
    // Real multilingual text, with exact copies and copies with 1 to 12
    // words in 100 replaced or deleted: many pairs sit near the LSH
    // threshold, where a different hash family would decide differently.
    let mut docs: Vec<String> = Vec::new();
    let mut seed = 7u64;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % n
    };
    for r in udhr() {
        let text = r["text"].as_str().unwrap().to_string();
        docs.push(text.clone());
        for _ in 0..next(4) {
            let mut words: Vec<String> = docs[next(docs.len())]
                .split(' ')
                .map(String::from)
                .collect();
            let edits = words.len() * (next(13)) / 100;
            for _ in 0..edits {
                let k = next(words.len());
                if next(2) == 0 && words.len() > 10 {
                    words.remove(k);
                } else {
                    words[k] = format!("w{}", next(1000));
                }
            }
            docs.push(words.join(" "));
        }
    }
    let mut files: Vec<Vec<serde_json::Value>> = vec![Vec::new(); 4];
    let mut where_is = BTreeMap::new();
    for (i, d) in docs.iter().enumerate() {
        let f = i * 4 / docs.len();
        files[f].push(serde_json::json!({"id": format!("d{i}"), "text": d}));
        where_is.insert(
            (format!("part-{f}.jsonl"), files[f].len() as u64),
            format!("d{i}"),
        );
    }
    for (f, records) in files.iter().enumerate() {
        env.write(&format!("corpus/part-{f}.jsonl"), &jsonl(records));
    }
    for step in ["signature", "buckets", "cluster", "filter"] {
        let out = std::process::Command::new("python3")
            .arg(Path::new(REPO).join("scripts/bench_dedup_datatrove.py"))
            .args([env.dir.path().to_str().unwrap(), step])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "datatrove {step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut theirs = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(env.path("datatrove/removed")).unwrap() {
        let gz = std::fs::read(e.unwrap().path()).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text)
            .unwrap();
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            theirs.insert(v["id"].as_str().unwrap().to_string());
        }
    }

    let m = env.manifest(
        "dt",
        r#"
[[source]]
name = "c"
paths = ["corpus/*.jsonl"]
format = "jsonl"
licence = "x"
[[stage]]
type = "near_dedup"
hashing = "datatrove"
keep = "datatrove"
bands = 14
rows = 8
partitions = 7
"#,
    );
    env.ok(&["run", "--quiet", m.to_str().unwrap(), "--out", "f"]);
    let ours: std::collections::BTreeSet<String> = ledger_all(&env.path("f"))
        .into_iter()
        .filter(|r| r.0 == "near_duplicate")
        .map(|r| {
            let file = Path::new(&r.1)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            where_is[&(file, r.2)].clone()
        })
        .collect();
    eprintln!(
        "{} documents; datatrove drops {}, forja (hashing and keep = datatrove) drops {}, {} in common",
        docs.len(),
        theirs.len(),
        ours.len(),
        ours.intersection(&theirs).count()
    );
    assert!(theirs.len() > 100, "the corpus has near copies to find");
    assert_eq!(ours, theirs);
}
