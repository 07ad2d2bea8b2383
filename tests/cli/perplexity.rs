//! The perplexity stage and command with a real model: SmolLM2-135M
//! (Llama architecture, Q4_1 GGUF), fetched by `scripts/fetch-models --lm`.
//! Without it these tests skip with a message, unless
//! FORJA_REQUIRE_CROSSCHECKS is set (as `.ci/run` does), where they fail.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::harness::*;

fn smollm2() -> Option<PathBuf> {
    let p = PathBuf::from(REPO).join("models/lm/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.is_file() {
        return Some(p);
    }
    if std::env::var_os("FORJA_REQUIRE_CROSSCHECKS").is_some() {
        panic!("{} is missing: run scripts/fetch-models --lm", p.display());
    }
    eprintln!(
        "skipped: {} is missing (scripts/fetch-models --lm fetches it)",
        p.display()
    );
    None
}

/// A fixed shuffle (xorshift), so the test needs no random source.
fn shuffled(words: &[&str], seed: u64) -> String {
    let mut w: Vec<&str> = words.to_vec();
    let mut s = seed;
    for i in (1..w.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        w.swap(i, (s % (i as u64 + 1)) as usize);
    }
    w.join(" ")
}

/// Per-document perplexities from `forja perplexity --json`.
fn perplexities(env: &Env, model: &str, texts: &[String]) -> Vec<f64> {
    let mut args = vec!["perplexity", model, "--quiet", "--json", "ppl.jsonl"];
    for t in texts {
        args.push("--text");
        args.push(t);
    }
    args.extend(["--max-tokens", "96", "--batch-size", "16"]);
    env.ok(&args);
    let out = std::fs::read_to_string(env.path("ppl.jsonl")).unwrap();
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["perplexity"].as_f64().unwrap()
        })
        .collect()
}

#[test]
fn smollm2_ranks_clean_english_below_shuffled_words_and_noise() {
    let Some(model) = smollm2() else { return };
    let env = Env::new();
    // Real English from the demo corpus: UDHR articles and licence texts.
    let mut clean: Vec<String> = udhr()
        .iter()
        .filter(|d| d["lang"] == "en")
        .map(|d| d["text"].as_str().unwrap().replace('\n', " "))
        .filter(|t| t.split_whitespace().count() >= 40)
        .take(3)
        .collect();
    for lic in ["Apache-2.0.txt", "MPL-2.0.txt"] {
        let t = std::fs::read_to_string(PathBuf::from(REPO).join("data/demo/licenses").join(lic))
            .unwrap();
        let words: Vec<&str> = t.split_whitespace().skip(60).take(80).collect();
        clean.push(words.join(" "));
    }
    assert_eq!(clean.len(), 5);
    let shuffles: Vec<String> = clean
        .iter()
        .enumerate()
        .map(|(i, t)| shuffled(&t.split_whitespace().collect::<Vec<_>>(), 0x9e37 + i as u64))
        .collect();
    // Page furniture (each phrase once: repeated menus are easy to predict)
    // and symbol noise.
    let noise = vec![
        "Skip to main content. Menu. Search. Sign in. Basket (0). Accept all cookies. Reject. \
         Manage preferences. Share on Facebook. Tweet. Pin it. Related posts. Newer. Older. \
         Tags: news, misc. Powered by WordPress. Theme by Themify. Page 1 of 12. Next ›› Last »"
            .to_string(),
        "x7Gq@9 zP!!k3 vv##2 QQ-lm 0x1f9a ;;; ~~~ jjkk 88Zr %%f wq[ ]p0 ))(( b4Nc tt&& Lk^^ \
         9s9s aa// Rr44 m,m,m ..:: ZZ0Z kq_q 3e3e |||| oO0o xx==xx"
            .to_string(),
    ];
    let mut all = clean.clone();
    all.extend(shuffles.clone());
    all.extend(noise.clone());
    let p = perplexities(&env, model.to_str().unwrap(), &all);
    let (pc, rest) = p.split_at(clean.len());
    let (ps, pn) = rest.split_at(shuffles.len());
    for (i, c) in pc.iter().enumerate() {
        assert!(
            *c * 3.0 < ps[i],
            "document {i}: clean {c} not well below its shuffle {}",
            ps[i]
        );
        for n in pn {
            assert!(c < n, "document {i}: clean {c} not below noise {n}");
        }
        assert!(*c > 1.0 && c.is_finite());
    }
}

/// UDHR articles of `langs`, one file (and so one unit of work) each;
/// returns the manifest's `[[source]]` for them and, when `lid`, a `lid`
/// stage that allows just those languages.
fn udhr_source(env: &Env, langs: &[&str], per_lang: usize, lid: bool) -> String {
    for l in langs {
        let recs: Vec<_> = udhr()
            .into_iter()
            .filter(|d| d["lang"] == *l)
            .filter(|d| d["text"].as_str().unwrap().split_whitespace().count() >= 12)
            .take(per_lang)
            .collect();
        env.write(&format!("udhr-{l}.jsonl"), &jsonl(&recs));
    }
    let mut toml = SOURCE.to_string();
    if lid {
        toml += &format!("\n[[stage]]\ntype = \"lid\"\nlanguages = {langs:?}\n");
    }
    toml
}

const SOURCE: &str = r#"
[[source]]
name = "udhr"
paths = ["udhr-*.jsonl"]
format = "jsonl"
licence = "UDHR: free to reproduce"
"#;

#[test]
fn percentile_mode_drops_the_tail_of_each_language_and_reports_cutoffs() {
    let Some(model) = smollm2() else { return };
    let env = Env::new();
    let source = udhr_source(&env, &["en", "es", "fr"], 20, true);
    let body = format!(
        r#"{source}
[[stage]]
type = "perplexity"
model = "{}"
max_tokens = 32
batch_size = 32

[stage.filter]
type = "percentile"
cutoffs = [30.0, 70.0]
keep = ["head", "middle"]
"#,
        model.display()
    );
    env.manifest("p", &body);
    env.ok(&["run", "--quiet", "p.toml", "--threads", "2"]);
    let out = env.path("out-p");
    let stats = assert_accounted(&out);
    let summary = stats["global"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.ends_with("perplexity"))
        .map(|(_, v)| v.clone())
        .expect("perplexity cut-offs in stats.json");
    let kept = kept_records(&out);
    let dropped: Vec<_> = ledger(&out)
        .into_iter()
        .filter(|r| r.0 == "perplexity_bucket")
        .collect();
    for lang in ["en", "es", "fr"] {
        let c = &summary["languages"][lang];
        let n = c["documents"].as_u64().unwrap() as usize;
        let cut = c["cutoffs"].as_array().unwrap();
        let (c30, c70) = (cut[0].as_f64().unwrap(), cut[1].as_f64().unwrap());
        assert!(c30 < c70, "{lang}: {c:?}");
        let mine: Vec<&serde_json::Value> = kept.iter().filter(|r| r["lang"] == lang).collect();
        // ceil(0.7 n) documents are at or below the 70th percentile: the rest go.
        let keep = (0.7 * n as f64).ceil() as usize;
        assert_eq!(mine.len(), keep, "{lang}: {n} scored");
        let dropped_here = dropped
            .iter()
            .filter(|r| r.3.ends_with(&format!("of {lang}")))
            .count();
        assert_eq!(dropped_here, n - keep, "{lang}");
        for r in &mine {
            let p = r["perplexity"].as_f64().unwrap();
            let b = r["perplexity_bucket"].as_str().unwrap();
            assert!(p <= c70, "{lang}: kept {p} above {c70}");
            assert_eq!(b, if p <= c30 { "head" } else { "middle" });
            assert!(r["lm_tokens"].as_u64().unwrap() <= 32);
        }
    }
    // The report draws the kept documents' perplexity per language.
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    for lang in ["en", "es", "fr"] {
        let n = kept.iter().filter(|r| r["lang"] == lang).count();
        let cell = crate::report::cell(&page, "dist-perplexity", lang, "n");
        assert_eq!(cell, n.to_string(), "{lang}");
    }
    // The same bytes with one thread: scores and buckets do not depend on it.
    env.ok(&["run", "--quiet", "p.toml", "--threads", "1", "--out", "one"]);
    let strip = |t: BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
        t.into_iter()
            .filter(|(k, _)| !k.starts_with("_forja"))
            .collect()
    };
    assert_eq!(strip(tree(&out)), strip(tree(&env.path("one"))));
    // Two ranks meeting at the scan, reduce and cluster barriers: the same
    // documents dropped, the same bytes kept.
    env.run_ranks("p.toml", "two", 2);
    assert_eq!(ledger_all(&env.path("two")), ledger_all(&out));
    assert_eq!(tree(&env.path("two/parquet")), tree(&out.join("parquet")));
    assert_eq!(
        crate::harness::stats(&env.path("two"))["global"],
        stats["global"]
    );
}

#[test]
fn threshold_mode_drops_above_the_language_limit() {
    let Some(model) = smollm2() else { return };
    let env = Env::new();
    let source = udhr_source(&env, &["en", "de"], 8, true);
    let body = format!(
        r#"{source}
[[stage]]
type = "perplexity"
model = "{}"
max_tokens = 32
languages = ["en", "de"]

[stage.filter]
type = "threshold"
max = 1000.0
per_language = {{ en = 25.0 }}
"#,
        model.display()
    );
    env.manifest("t", &body);
    env.ok(&["run", "--quiet", "t.toml"]);
    let out = env.path("out-t");
    assert_accounted(&out);
    let kept = kept_records(&out);
    let dropped: Vec<_> = ledger(&out)
        .into_iter()
        .filter(|r| r.0 == "perplexity_too_high")
        .collect();
    assert!(!dropped.is_empty(), "some English article is above 25");
    for r in &dropped {
        let p: f64 = r.3.split_whitespace().nth(1).unwrap().parse().unwrap();
        let lim = if r.3.ends_with("(en)") { 25.0 } else { 1000.0 };
        assert!(p > lim, "{r:?}");
    }
    for r in &kept {
        let p = r["perplexity"].as_f64().unwrap();
        let lim = if r["lang"] == "en" { 25.0 } else { 1000.0 };
        assert!(p <= lim, "kept {p} over {lim}");
    }
    assert!(kept.iter().any(|r| r["lang"] == "en"), "some English kept");
}

#[test]
fn a_missing_model_or_bad_filter_is_named_before_any_document_moves() {
    let env = Env::new();
    let source = udhr_source(&env, &["en"], 2, false);
    let body = |model: &str, cutoffs: &str| {
        format!(
            r#"{source}
[[stage]]
type = "perplexity"
model = "{model}"

[stage.filter]
type = "percentile"
cutoffs = {cutoffs}
"#
        )
    };
    env.manifest("m", &body("nowhere/lm.gguf", "[30.0, 70.0]"));
    let out = env.forja(&["validate", "m.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("nowhere/lm.gguf") && err.contains("no such model"),
        "{err}"
    );
    env.manifest("c", &body("nowhere/lm.gguf", "[70.0, 30.0]"));
    let out = env.forja(&["validate", "c.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("c.toml:") && err.contains("cutoffs 70 and 30"),
        "{err}"
    );
    // Nothing was written.
    assert!(!env.path("out-m").exists() && !env.path("out-c").exists());
}
