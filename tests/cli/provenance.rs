//! The run manifest and `forja verify`.

use crate::harness::*;

#[test]
fn verify_catches_a_flipped_output_byte_and_a_changed_input() {
    let env = Env::new();
    let recs: Vec<_> = udhr().into_iter().take(40).collect();
    env.write("in/udhr.jsonl", &jsonl(&recs));
    env.manifest(
        "v",
        r#"
[[source]]
name = "udhr"
paths = ["in/*.jsonl"]
format = "jsonl"
licence = "UDHR: free to reproduce"

[[stage]]
type = "exact_dedup"
"#,
    );
    env.ok(&["run", "--quiet", "v.toml", "--threads", "2"]);
    let out = env.path("out-v");
    let rm: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run-manifest.json")).unwrap()).unwrap();
    assert_eq!(rm["inputs"].as_array().unwrap().len(), 1);
    let outputs: Vec<&str> = rm["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert!(outputs.contains(&"stats.json"), "{outputs:?}");
    assert!(outputs.iter().all(|p| !p.starts_with("_forja")));
    assert_eq!(rm["ranks"][0]["threads"], 2);
    assert!(rm["ranks"][0]["stage_seconds"]["exact_dedup"].is_f64());
    assert_eq!(rm["stats"], stats(&out));
    assert_eq!(rm["manifest"]["name"], "v");
    let ok = env.forja(&["verify", "out-v"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    // One flipped byte in a Parquet shard.
    let shard = outputs
        .iter()
        .find(|p| p.ends_with(".parquet") && p.starts_with("parquet/"))
        .unwrap();
    let path = out.join(shard);
    let original = std::fs::read(&path).unwrap();
    let mut bytes = original.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let bad = env.forja(&["verify", "out-v"]);
    let said = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("output {shard}:")), "{said}");
    assert!(said.contains("1 mismatch"), "{said}");
    std::fs::write(&path, &original).unwrap();
    assert!(env.forja(&["verify", "out-v"]).status.success());

    // A changed input, same size: only the checksum tells.
    let input = env.path("in/udhr.jsonl");
    let mut text = std::fs::read(&input).unwrap();
    let i = text.iter().position(|&b| b == b'a').unwrap();
    text[i] = b'b';
    std::fs::write(&input, &text).unwrap();
    let bad = env.forja(&["verify", "out-v"]);
    let said = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{said}");
    assert!(
        said.contains("input ") && said.contains("udhr.jsonl"),
        "{said}"
    );
}

fn audit(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["audit", "out-a"];
    a.extend_from_slice(args);
    serde_json::from_str(&env.ok(&a)).unwrap()
}

/// A kept, a deduplicated, a filtered and a rejected document, and the
/// first, a middle and the last token of a shard.
#[test]
fn audit_follows_documents_and_tokens_to_their_source_and_licence() {
    let env = Env::new();
    let docs: Vec<_> = udhr()
        .into_iter()
        .filter(|d| d["lang"] == "en")
        .take(12)
        .collect();
    let mut lines: Vec<String> = docs.iter().map(|d| d.to_string()).collect();
    // Line 13: a copy of line 1; line 14: too short; line 15: not JSON.
    lines.push(docs[0].to_string());
    lines.push(serde_json::json!({"text": "Too short."}).to_string());
    lines.push("{not json".into());
    env.write("in/en.jsonl", (lines.join("\n") + "\n").as_bytes());
    let tokenizer = format!("{REPO}/data/demo/tokenizer/tokenizer.json");
    env.write(
        "a.toml",
        format!(
            r#"version = 1
name = "a"
[[source]]
name = "udhr"
paths = ["in/*.jsonl"]
format = "jsonl"
licence = "UDHR: free to reproduce"
language = "en"

[[stage]]
type = "exact_dedup"

[[stage]]
type = "length"
min_words = 5

[[stage]]
type = "tokenize"
tokenizer = "{tokenizer}"
eod = "</s>"

[output]
dir = "out-a"
formats = ["parquet", "megatron"]

[output.megatron]
split = [100, 0, 0]
shard_tokens = 400
"#
        )
        .as_bytes(),
    );
    env.ok(&["run", "--quiet", "a.toml"]);
    let id = |line: u64| forja::doc_id("udhr", "in/en.jsonl", line);

    // Kept: in one shard, with its source, licence and place.
    let kept = audit(&env, &["--doc", &id(2)]);
    assert!(kept["dropped"].is_null(), "{kept:#}");
    let landed = &kept["shards"][0];
    assert_eq!(landed["origin"]["licence"], "UDHR: free to reproduce");
    assert_eq!(landed["origin"]["file"], "in/en.jsonl");
    assert_eq!(landed["origin"]["line"], 2);
    // Its row in the Parquet output: each stage's columns.
    let ann = &kept["annotations"];
    assert_eq!(ann["line"], 2);
    assert!(ann["dup_of"].is_null(), "{ann:#}");
    assert!(ann["n_words"].as_u64().unwrap() >= 5);
    assert_eq!(ann["text_hash"].as_str().unwrap().len(), 32);
    assert!(ann["tokens"].as_u64().unwrap() > 0);
    assert!(ann.get("text").is_none());
    // Its first token leads back to it.
    let shard = landed["shard"].as_str().unwrap();
    let start = landed["tokens"][0].as_u64().unwrap().to_string();
    let back = audit(&env, &["--shard", shard, "--token", &start]);
    assert_eq!(back["origin"]["id"], id(2).as_str());

    // The copy: dropped by exact_dedup, naming the document kept.
    let dup = audit(&env, &["--doc", &id(13)]);
    assert_eq!(dup["dropped"]["stage"], "exact_dedup");
    assert_eq!(dup["dropped"]["reason"], "exact_duplicate");
    assert_eq!(dup["dropped"]["detail"], id(1).as_str());
    // The short one: the length filter.
    let short = audit(&env, &["--doc", &id(14)]);
    assert_eq!(short["dropped"]["reason"], "too_few_words");
    // With what the stages had found when it went: the length stage's own
    // counts (the reason's evidence) and the dedup stage's verdict.
    let ann = &short["annotations"];
    assert!(ann["n_words"].as_u64().unwrap() < 5, "{short:#}");
    assert_eq!(
        ann["n_chars"].as_u64().unwrap(),
        short["dropped"]["bytes"].as_u64().unwrap()
    );
    assert!(
        ann["dup_of"].is_null() && ann.get("text").is_none(),
        "{ann:#}"
    );
    assert!(short["dropped"].get("annotations").is_none());
    // A copy carries the exact_dedup columns, naming the one kept.
    assert_eq!(dup["annotations"]["dup_of"], id(1).as_str());
    // The broken line: rejected by the reader.
    let bad = audit(&env, &["--doc", &id(15)]);
    assert_eq!(bad["dropped"]["stage"], "read");
    assert_eq!(bad["dropped"]["reason"], "malformed_json");

    // Tokens: first, middle and last of a shard, against the .idx lengths and
    // the documents in order (kept lines 1..=12, in shard order).
    let idx = env.path("out-a/megatron/train/en/00000.idx");
    assert!(idx.exists());
    let r = forja::IndexedReader::open(&idx.with_extension("")).unwrap();
    let total: u64 = r.lengths.iter().map(|&l| l as u64).sum();
    let ends: Vec<u64> = r
        .lengths
        .iter()
        .scan(0u64, |s, &l| {
            *s += l as u64;
            Some(*s)
        })
        .collect();
    for t in [0, total / 2, total - 1] {
        let o = audit(
            &env,
            &["--shard", "train/en/00000", "--token", &t.to_string()],
        );
        let doc = ends.iter().position(|&e| t < e).unwrap();
        assert_eq!(o["document"], doc, "token {t}");
        assert_eq!(o["origin"]["line"], doc as u64 + 1, "token {t}");
        assert_eq!(o["origin"]["source"], "udhr");
        assert_eq!(o["origin"]["licence"], "UDHR: free to reproduce");
    }
    let past = env.forja(&[
        "audit",
        "out-a",
        "--shard",
        "train/en/00000",
        "--token",
        &total.to_string(),
    ]);
    assert!(!past.status.success());
    assert!(String::from_utf8_lossy(&past.stderr).contains("past its end"));
}
