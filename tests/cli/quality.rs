//! The quality stage on the demo corpus's real text.

use crate::harness::*;

/// The English documents of the demo: the installation guide and the UDHR.
fn english(env: &Env) {
    let guide = std::fs::read(format!("{REPO}/data/demo/install-guide/en.jsonl.gz")).unwrap();
    env.write("in/guide-en.jsonl.gz", &guide);
    let udhr: Vec<_> = udhr().into_iter().filter(|r| r["lang"] == "en").collect();
    assert_eq!(udhr.len(), 31);
    env.write("in/udhr-en.jsonl", &jsonl(&udhr));
}

#[test]
fn filter_mode_drops_with_rule_reasons_and_keeps_the_invariant() {
    let env = Env::new();
    english(&env);
    let m = env.manifest(
        "q",
        "[[source]]\nname = \"en\"\npaths = [\"in/*\"]\nformat = \"jsonl\"\nlicence = \"x\"\n\
         [[stage]]\ntype = \"normalize\"\n[[stage]]\ntype = \"quality\"\n",
    );
    env.ok(&["run", "--quiet", m.to_str().unwrap()]);
    let out = env.path("out-q");
    let s = assert_accounted(&out);
    let reasons: Vec<String> = ledger(&out).into_iter().map(|r| r.0).collect();
    // UDHR articles are a few sentences: Gopher's 50-word minimum (or its
    // repetition rules, which run first) drops them.
    assert!(
        reasons.iter().any(|r| r == "gopher_short_doc"),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .all(|r| ["gopher_", "c4_", "fineweb_", "quality_"]
                .iter()
                .any(|p| r.starts_with(p))),
        "{reasons:?}"
    );
    let kept = s["kept"].as_u64().unwrap();
    assert!(kept > 20, "long guide pages pass: {s:#}");
    // C4 keeps only lines that end a sentence, so the guide's navigation
    // (section titles, "Prev"/"Next" links) is gone from the kept text.
    let mut lines = 0;
    for t in kept_texts(&out) {
        for l in t.lines() {
            lines += 1;
            assert!(
                l.ends_with(['.', '?', '!', '"', '\'']),
                "{l:?} in kept text"
            );
        }
    }
    assert!(lines > 100);
}

#[test]
fn annotate_mode_on_the_whole_demo_drops_nothing_and_writes_signals() {
    let env = Env::new();
    let base = format!("{REPO}/data/demo");
    let m = env.manifest(
        "qa",
        &format!(
            "[[source]]\nname = \"udhr\"\npaths = [\"{base}/udhr/*.jsonl.zst\"]\nformat = \"jsonl\"\nlicence = \"x\"\n\
             [[source]]\nname = \"gnome\"\npaths = [\"{base}/gnome-help/data/*.parquet\"]\nformat = \"parquet\"\nlicence = \"x\"\n\
             [[stage]]\ntype = \"quality\"\nmode = \"annotate\"\n"
        ),
    );
    env.ok(&["run", "--quiet", m.to_str().unwrap()]);
    let out = env.path("out-qa");
    let s = assert_accounted(&out);
    assert_eq!(s["dropped"], 0);
    assert_eq!(s["kept"], s["documents_read"]);
    let raw = zstd::decode_all(
        std::fs::File::open(out.join("jsonl/udhr/000000-0000.jsonl.zst")).unwrap(),
    )
    .unwrap();
    let first: serde_json::Value =
        serde_json::from_slice(raw.split(|&b| b == b'\n').next().unwrap()).unwrap();
    for col in [
        "gopher_words",
        "gopher_dup_line_frac",
        "c4_sentences",
        "fineweb_line_punct_ratio",
    ] {
        assert!(first.get(col).is_some(), "{col} in {first}");
    }
    assert!(
        first["quality_rule"].is_string(),
        "a preamble alone fails some rule"
    );
}

/// Language identification then quality rules, per language, on the whole
/// multilingual demo: every document accounted for, reasons from both stages.
#[test]
fn lid_then_quality_on_the_demo() {
    let env = Env::new();
    let base = format!("{REPO}/data/demo");
    let m = env.manifest(
        "lq",
        &format!(
            "[[source]]\nname = \"udhr\"\npaths = [\"{base}/udhr/*.jsonl.zst\"]\nformat = \"jsonl\"\nlicence = \"x\"\n\
             [[source]]\nname = \"gnome\"\npaths = [\"{base}/gnome-help/data/*.parquet\"]\nformat = \"parquet\"\nlicence = \"x\"\n\
             [[source]]\nname = \"guide\"\npaths = [\"{base}/install-guide/*.jsonl.gz\"]\nformat = \"jsonl\"\nlicence = \"x\"\n\
             [[stage]]\ntype = \"normalize\"\n\
             [[stage]]\ntype = \"lid\"\nmodel = \"{REPO}/models/lid.176.ftz\"\n\
             [[stage]]\ntype = \"quality\"\n"
        ),
    );
    env.ok(&["run", "--quiet", m.to_str().unwrap()]);
    let out = env.path("out-lq");
    let s = assert_accounted(&out);
    let lid = &s["stages"][2];
    let quality = &s["stages"][3];
    assert_eq!(lid["name"], "lid");
    // Untranslated GNOME pages are English inside Catalan, Romanian, ...:
    // some are mixed enough to go.
    assert!(
        lid["dropped"]["mixed_language"].as_u64().unwrap_or(0) > 0,
        "{lid:#}"
    );
    // UDHR articles are too short for Gopher; long guide pages pass.
    assert!(
        quality["dropped"].as_object().unwrap().len() >= 2,
        "{quality:#}"
    );
    assert!(s["kept"].as_u64().unwrap() > 50, "{s:#}");
    // Kept documents carry their language, and it is one of the demo's.
    for (rel, bytes) in tree(&out.join("jsonl")) {
        let raw = zstd::decode_all(&bytes[..]).unwrap();
        for line in raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            let lang = v["lang"].as_str().unwrap_or_else(|| panic!("{rel}: {v}"));
            assert!(forja::SALAMANDRA.contains(&lang), "{lang} in {rel}");
            assert!(v["lang_share"].as_f64().unwrap() >= 0.6);
        }
    }
}

#[test]
fn the_pii_stage_redacts_valid_identifiers_and_leaves_look_alikes() {
    let env = Env::new();
    let docs = [
        "Contacte: anna.serra@example.cat, IBAN ES91 2100 0418 4502 0005 1332, tel. +34 93 123 45 67.",
        "Not PII: IBAN ES91 2100 0418 4502 0005 1333 (bad check digits), card 4111 1111 1111 1112, Linux 2.6.32.1.5, LAN 192.168.0.10.",
        "Server 81.2.69.160 logged card 5500-0000-0000-0004.",
    ];
    let recs: Vec<_> = docs
        .iter()
        .map(|t| serde_json::json!({ "text": t }))
        .collect();
    env.write("in/p.jsonl", &jsonl(&recs));
    env.manifest(
        "pii",
        r#"
[[source]]
name = "p"
paths = ["in/*.jsonl"]
format = "jsonl"
licence = "test"

[[stage]]
type = "pii"
"#,
    );
    env.ok(&["run", "--quiet", "pii.toml"]);
    let out = env.path("out-pii");
    assert_accounted(&out);
    let mut recs = kept_records(&out);
    recs.sort_by_key(|r| r["line"].as_u64());
    assert_eq!(
        recs[0]["text"],
        "Contacte: <EMAIL>, IBAN <IBAN>, tel. <PHONE>."
    );
    assert_eq!(recs[1]["text"], docs[1], "look-alikes are left as they are");
    assert_eq!(recs[2]["text"], "Server <IP> logged card <CARD>.");
    let counts = |r: &serde_json::Value| {
        [
            "pii_email",
            "pii_iban",
            "pii_card",
            "pii_ip",
            "pii_phone",
            "pii_redacted",
        ]
        .map(|c| r[c].as_u64().unwrap())
    };
    assert_eq!(counts(&recs[0]), [1, 1, 0, 0, 1, 3]);
    assert_eq!(counts(&recs[1]), [0, 0, 0, 0, 0, 0]);
    assert_eq!(counts(&recs[2]), [0, 0, 1, 1, 0, 2]);

    // The ledger records each document whose text changed, and it is kept.
    let mut rows = ledger(&out);
    rows.sort_by_key(|r| r.2);
    let lines: Vec<(&str, u64)> = rows.iter().map(|r| (r.0.as_str(), r.2)).collect();
    assert_eq!(
        lines,
        [("pii_redacted", 1), ("pii_redacted", 3)],
        "{rows:?}"
    );
    let before = docs[0].len();
    let after = recs[0]["text"].as_str().unwrap().len();
    assert_eq!(
        rows[0].3,
        format!("3 spans (email 1, iban 1, phone 1), {before} -> {after} bytes")
    );
    assert!(
        rows[1].3.starts_with("2 spans (card 1, ip 1), "),
        "{}",
        rows[1].3
    );
    let s = stats(&out);
    assert_eq!(
        (s["kept"].as_u64(), s["modified"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(s["dropped"], 0);
    let pii = s["stages"].as_array().unwrap().last().unwrap();
    assert_eq!(pii["modified"]["pii_redacted"], 2, "{pii}");
    assert!(pii["dropped"].as_object().unwrap().is_empty(), "{pii}");
    // forja audit tells a kept document's changes, with its landing place.
    let id = recs[0]["id"].as_str().unwrap();
    let fate: serde_json::Value =
        serde_json::from_str(&env.ok(&["audit", "out-pii", "--doc", id])).unwrap();
    assert!(fate["dropped"].is_null(), "{fate}");
    assert_eq!(fate["changed"][0]["stage"], "pii");
    assert_eq!(fate["changed"][0]["reason"], "pii_redacted");
    assert_eq!(fate["changed"][0]["bytes"], before as u64);
    let look_alike = recs[1]["id"].as_str().unwrap();
    let fate: serde_json::Value =
        serde_json::from_str(&env.ok(&["audit", "out-pii", "--doc", look_alike])).unwrap();
    assert!(fate.get("changed").is_none(), "{fate}");

    // Annotate mode counts and changes nothing, so the ledger stays empty.
    env.manifest(
        "pii-annotate",
        &std::fs::read_to_string(env.path("pii.toml"))
            .unwrap()
            .split("[output]")
            .next()
            .unwrap()
            .replace("type = \"pii\"", "type = \"pii\"\nmode = \"annotate\"")
            .replace("version = 1\nname = \"pii\"\n", ""),
    );
    env.ok(&["run", "--quiet", "pii-annotate.toml"]);
    let out = env.path("out-pii-annotate");
    assert_accounted(&out);
    assert!(ledger(&out).is_empty());
    let mut recs = kept_records(&out);
    recs.sort_by_key(|r| r["line"].as_u64());
    assert_eq!(recs[0]["text"], docs[0]);
    assert_eq!(counts(&recs[0]), [1, 1, 0, 0, 1, 0]);
}
