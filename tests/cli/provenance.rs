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
