//! Bad input is rejected into the ledger with file and line, never skipped or fatal.

use crate::harness::*;

const SRC: &str =
    "[[source]]\nname = \"s\"\npaths = [\"in/*\"]\nformat = \"jsonl\"\nlicence = \"test\"\n";

fn good(n: usize) -> Vec<u8> {
    jsonl(&udhr()[..n])
}

#[test]
fn each_bad_line_gets_its_reason_file_and_line() {
    let env = Env::new();
    let mut body = good(3);
    body.extend_from_slice(b"{\"text\": \"unterminated\n"); // line 4
    body.extend_from_slice(b"{\"body\": \"no text field\"}\n"); // line 5
    body.extend_from_slice(b"{\"text\": \"caf\xe9 latin-1\"}\n"); // line 6
    body.extend_from_slice(b"{\"text\": \"\"}\n"); // line 7
    body.extend_from_slice(b"\n   \n"); // lines 8, 9: blank, not documents
    body.extend_from_slice(b"{\"text\": 42}\n"); // line 10
    body.extend_from_slice(&good(1)); // line 11
    env.write("in/a.jsonl", &body);
    let m = env.manifest("bad", SRC);
    env.ok(&["run", "--quiet", m.to_str().unwrap()]);
    let out = env.path("out-bad");
    let s = assert_accounted(&out);
    assert_eq!(s["documents_read"], 9);
    assert_eq!(s["kept"], 4);
    assert_eq!(s["rejected"], 5);
    assert_eq!(s["files"][0]["blank_lines"], 2);
    let rows: Vec<(String, String, u64)> = ledger(&out)
        .into_iter()
        .map(|(r, f, l, _)| (r, f, l))
        .collect();
    let f = "in/a.jsonl".to_string();
    assert_eq!(
        rows,
        vec![
            ("malformed_json".into(), f.clone(), 4),
            ("missing_text_field".into(), f.clone(), 5),
            ("invalid_utf8".into(), f.clone(), 6),
            ("empty_text".into(), f.clone(), 7),
            ("missing_text_field".into(), f.clone(), 10),
        ]
    );
}

#[test]
fn invalid_utf8_text_file_is_rejected() {
    let env = Env::new();
    env.write(
        "in/ok.txt",
        "Tots els éssers humans neixen lliures".as_bytes(),
    );
    env.write("in/bad.txt", b"caf\xe9");
    env.write("in/empty.txt", b"");
    let m = env.manifest(
        "txt",
        "[[source]]\nname = \"t\"\npaths = [\"in/*.txt\"]\nformat = \"text\"\nlicence = \"x\"\n",
    );
    env.ok(&["run", "--quiet", m.to_str().unwrap()]);
    let out = env.path("out-txt");
    assert_accounted(&out);
    let rows = ledger(&out);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        ("invalid_utf8", "in/bad.txt")
    );
    assert_eq!(
        (rows[1].0.as_str(), rows[1].1.as_str()),
        ("empty_text", "in/empty.txt")
    );
}

fn truncated_case(name: &str, compressed: Vec<u8>) {
    let env = Env::new();
    // Cut the stream two thirds of the way in.
    let cut = compressed.len() * 2 / 3;
    env.write(&format!("in/{name}"), &compressed[..cut]);
    let m = env.manifest("trunc", SRC);
    env.ok(&["run", "--quiet", m.to_str().unwrap()]);
    let out = env.path("out-trunc");
    let s = assert_accounted(&out);
    let kept = s["kept"].as_u64().unwrap();
    assert!(
        kept > 10 && kept < 400,
        "kept what came before the damage: {kept}"
    );
    assert_eq!(s["files"][0]["status"], "truncated", "{s:#}");
    let rows = ledger(&out);
    assert!(
        rows.len() <= 1,
        "at most the partial line is rejected: {rows:?}"
    );
    if let Some(r) = rows.first() {
        assert_eq!(r.0, "truncated_file");
        assert_eq!(
            r.2,
            kept + 1,
            "the partial document is the line after the kept ones"
        );
    }
    // Kept documents are exactly the first ones of the file, intact.
    let texts = kept_texts(&out);
    let all = udhr();
    for (i, t) in texts.iter().enumerate() {
        assert_eq!(t, all[i]["text"].as_str().unwrap());
    }
}

#[test]
fn truncated_gzip_keeps_what_was_read() {
    truncated_case("a.jsonl.gz", gzip(&good(600)));
}

#[test]
fn truncated_zstd_keeps_what_was_read() {
    truncated_case("a.jsonl.zst", zst(&good(600)));
}

#[test]
fn huge_document_is_rejected_within_the_cap() {
    let env = Env::new();
    // 200 MB on one line, between two good documents; the default cap is 64 MiB.
    let mut body = good(1);
    body.reserve(200 << 20);
    body.extend_from_slice(b"{\"text\": \"");
    body.resize(body.len() + (200 << 20), b'a');
    body.extend_from_slice(b"\"}\n");
    body.extend_from_slice(&good(1));
    env.write("in/huge.jsonl", &body);
    drop(body);
    let m = env.manifest("huge", SRC);
    env.ok(&["run", "--quiet", m.to_str().unwrap()]);
    let out = env.path("out-huge");
    let s = assert_accounted(&out);
    assert_eq!(s["kept"], 2);
    let rows = ledger(&out);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].0.as_str(), rows[0].2), ("too_large", 2));
    assert!(
        rows[0].3.contains("bytes > reader.max_doc_bytes"),
        "{}",
        rows[0].3
    );
}

#[test]
fn missing_input_fails_before_the_run_and_names_it() {
    let env = Env::new();
    let m = env.manifest(
        "missing",
        "[[source]]\nname = \"s\"\npaths = [\"in/nowhere.jsonl\"]\nformat = \"jsonl\"\nlicence = \"x\"\n",
    );
    for cmd in ["run", "validate"] {
        let out = env.forja(&[cmd, m.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("in/nowhere.jsonl"), "{err}");
        assert!(err.contains("missing.toml:5:"), "{err}");
    }
    assert!(!env.path("out-missing").exists(), "nothing written");
}

#[test]
fn a_source_that_keeps_nothing_is_warned_about_in_plain_text() {
    let env = Env::new();
    env.write("in/a.jsonl", &good(3));
    let body = SRC.replace("licence", "text_field = \"body\"\nlicence");
    let m = env.manifest("wrongfield", &body);
    let out = env
        .cmd()
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .args(["run", "--quiet", m.to_str().unwrap(), "--log-every", "1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("source `s` kept none of its 3 documents") && err.contains("`text_field`"),
        "{err}"
    );
    assert!(
        !err.contains('\x1b'),
        "no colour codes in a piped log: {err}"
    );
    // A source that keeps something is not warned about.
    let m = env.manifest("rightfield", SRC);
    let out = env
        .cmd()
        .env_remove("RUST_LOG")
        .args(["run", "--quiet", m.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("kept none"));
}
