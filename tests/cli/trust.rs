//! Careless use and changed inputs: forja deletes only what it wrote,
//! refuses folders it does not own or that another run holds, and does not
//! resume over inputs that changed.

use std::fs;

use crate::harness::*;

fn docs(n: usize, tag: &str) -> Vec<u8> {
    let recs: Vec<serde_json::Value> = udhr()
        .into_iter()
        .take(n)
        .enumerate()
        .map(|(i, mut r)| {
            r["text"] = format!("{} [{tag} {i}]", r["text"].as_str().unwrap()).into();
            r
        })
        .collect();
    jsonl(&recs)
}

const SOURCE: &str =
    "[[source]]\nname = \"web\"\npaths = [\"jsonl/*.jsonl\"]\nformat = \"jsonl\"\nlicence = \"x\"\n";

fn manifest(env: &Env, dir: &str) -> String {
    let text = format!(
        "version = 1\nname = \"t\"\n{SOURCE}[[stage]]\ntype = \"length\"\nmin_words = 3\n[output]\ndir = \"{dir}\"\nformats = [\"jsonl_zst\"]\n"
    );
    env.write("t.toml", text.as_bytes());
    "t.toml".into()
}

/// Kept plus ledger rows (drops and rejects) equal the documents written,
/// read from the outputs and the ledger, not from stats.json.
fn conserved(env: &Env, out: &str, written: usize) {
    let out = env.path(out);
    let rows = ledger(&out)
        .into_iter()
        .filter(|r| r.0 != "pii_redacted")
        .count();
    assert_eq!(kept_texts(&out).len() + rows, written);
}

#[test]
fn an_output_folder_over_the_inputs_is_refused_and_nothing_is_deleted() {
    let env = Env::new();
    env.write("jsonl/a.jsonl", &docs(30, "a"));
    let m = manifest(&env, ".");
    let v = env.forja(&["validate", &m]);
    assert_eq!(v.status.code(), Some(1));
    let err = String::from_utf8_lossy(&v.stderr);
    assert!(
        err.contains("holds the input") && err.contains("t.toml:"),
        "{err}"
    );
    // Twice, as the user who lost their inputs did.
    for _ in 0..2 {
        let r = env.forja(&["run", "--quiet", &m]);
        assert_eq!(r.status.code(), Some(1));
    }
    assert_eq!(fs::read(env.path("jsonl/a.jsonl")).unwrap(), docs(30, "a"));
    // --out over the inputs is refused too.
    let m = manifest(&env, "out");
    let r = env.forja(&["run", "--quiet", &m, "--out", "jsonl"]);
    assert_eq!(
        r.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(fs::read(env.path("jsonl/a.jsonl")).unwrap(), docs(30, "a"));
}

#[test]
fn a_rerun_deletes_only_what_forja_wrote() {
    let env = Env::new();
    env.write("jsonl/a.jsonl", &docs(30, "a"));
    env.write("jsonl/b.jsonl", &docs(20, "b"));
    let m = manifest(&env, "out");
    env.ok(&["run", "--quiet", &m]);
    conserved(&env, "out", 50);
    // The user keeps notes in forja's folders.
    env.write("out/jsonl/web/notes.txt", b"mine");
    env.write("out/ledger/README", b"mine");
    env.write("out/keep.md", b"mine");
    // One input goes away: its shard must not survive the rerun.
    fs::remove_file(env.path("jsonl/b.jsonl")).unwrap();
    env.ok(&["run", "--quiet", &m]);
    for f in [
        "out/jsonl/web/notes.txt",
        "out/ledger/README",
        "out/keep.md",
    ] {
        assert_eq!(fs::read(env.path(f)).unwrap(), b"mine", "{f}");
        fs::remove_file(env.path(f)).unwrap();
    }
    conserved(&env, "out", 30);
    let shards: Vec<String> = fs::read_dir(env.path("out/jsonl/web"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl.zst"))
        .collect();
    assert_eq!(shards.len(), 1, "{shards:?}");
}

#[test]
fn a_folder_forja_did_not_create_is_refused_unless_forced() {
    let env = Env::new();
    env.write("jsonl/a.jsonl", &docs(10, "a"));
    env.write("out/thesis.tex", b"mine");
    let m = manifest(&env, "out");
    let r = env.forja(&["run", "--quiet", &m]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("thesis.tex") && err.contains("--force"),
        "{err}"
    );
    env.ok(&["run", "--quiet", &m, "--force"]);
    env.ok(&["run", "--quiet", &m]);
    assert_eq!(fs::read(env.path("out/thesis.tex")).unwrap(), b"mine");
    conserved(&env, "out", 10);
}

#[cfg(unix)]
#[test]
fn a_second_run_into_a_held_folder_is_refused_with_the_holder_named() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let env = Env::new();
    env.write("jsonl/a.jsonl", &docs(10, "a"));
    let m = manifest(&env, "out");
    env.ok(&["run", "--quiet", &m]);
    // Another run holds the folder (as forja does: flock on _forja/lock).
    let mut lock = fs::OpenOptions::new()
        .write(true)
        .open(env.path("out/_forja/lock"))
        .unwrap();
    lock.set_len(0).unwrap();
    lock.write_all(b"host node7, pid 4242, rank 0 of 1")
        .unwrap();
    // SAFETY: flock on a descriptor the test owns.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let before = tree(&env.path("out"));
    for args in [
        vec!["run", "--quiet", &m],
        vec!["run", "--quiet", &m, "--resume"],
    ] {
        let r = env.forja(&args);
        assert_eq!(r.status.code(), Some(1));
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(
            err.contains("in use") && err.contains("node7, pid 4242"),
            "{err}"
        );
    }
    assert!(
        tree(&env.path("out")) == before,
        "the held folder was not touched"
    );
    drop(lock);
    env.ok(&["run", "--quiet", &m]);
}

#[test]
fn source_names_cannot_climb_out_of_their_folder() {
    let env = Env::new();
    env.write("jsonl/a.jsonl", &docs(3, "a"));
    for name in ["..", ".", ".hidden"] {
        let text = format!(
            "version = 1\n[[source]]\nname = \"{name}\"\npaths = [\"jsonl/*.jsonl\"]\nformat = \"jsonl\"\nlicence = \"x\"\n[output]\ndir = \"out\"\n"
        );
        env.write("n.toml", text.as_bytes());
        let v = env.forja(&["validate", "n.toml"]);
        assert_eq!(v.status.code(), Some(1), "{name}");
        assert!(
            String::from_utf8_lossy(&v.stderr).contains("n.toml:3:"),
            "{name}"
        );
    }
}

#[test]
fn resume_refuses_changed_inputs_and_restart_starts_over() {
    let env = Env::new();
    env.write("jsonl/a.jsonl", &docs(30, "a"));
    env.write("jsonl/b.jsonl", &docs(20, "b"));
    let m = manifest(&env, "out");
    env.ok(&["run", "--quiet", &m]);
    env.ok(&["run", "--quiet", &m, "--resume"]);
    // Same size, other content.
    let mut changed = docs(20, "b");
    let at = changed.iter().position(|&b| b == b'[').unwrap();
    changed[at + 1] = b'c';
    env.write("jsonl/b.jsonl", &changed);
    let before = tree(&env.path("out"));
    let r = env.forja(&["run", "--quiet", &m, "--resume"]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("jsonl/b.jsonl") && err.contains("--restart"),
        "{err}"
    );
    assert!(!err.contains("jsonl/a.jsonl"), "{err}");
    assert!(
        tree(&env.path("out")) == before,
        "a refused resume changes nothing"
    );
    // A new input, and one gone.
    env.write("jsonl/c.jsonl", &docs(5, "c"));
    fs::remove_file(env.path("jsonl/a.jsonl")).unwrap();
    let r = env.forja(&["run", "--quiet", &m, "--resume"]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("jsonl/c.jsonl: new input") && err.contains("jsonl/a.jsonl: no longer"),
        "{err}"
    );
    env.ok(&["run", "--quiet", &m, "--restart"]);
    conserved(&env, "out", 25);
    env.ok(&["verify", "out"]);
}

#[test]
fn codecs_come_from_the_bytes_and_each_file_is_read_once() {
    let env = Env::new();
    let a = docs(12, "a");
    env.write("in/zstd-named-gz.jsonl.gz", &zst(&a));
    env.write("in/gzip-named-zst.jsonl.zst", &gzip(&docs(7, "b")));
    env.write("in/UPPER.JSONL.GZ", &gzip(&docs(5, "c")));
    let abs = env.path("in/zstd-named-gz.jsonl.gz");
    let text = format!(
        "version = 1\n[[source]]\nname = \"w\"\npaths = [\"in/*\", {:?}]\nformat = \"jsonl\"\nlicence = \"x\"\n[output]\ndir = \"out\"\nformats = [\"jsonl_zst\"]\n",
        abs.to_str().unwrap()
    );
    env.write("c.toml", text.as_bytes());
    env.ok(&["run", "--quiet", "c.toml"]);
    assert_eq!(kept_texts(&env.path("out")).len(), 24);
    conserved(&env, "out", 24);
}

#[cfg(unix)]
#[test]
fn a_symlink_loop_under_a_recursive_pattern_ends() {
    let env = Env::new();
    env.write("data/x/a.jsonl", &docs(4, "a"));
    std::os::unix::fs::symlink("..", env.path("data/x/up")).unwrap();
    std::os::unix::fs::symlink(env.path("data"), env.path("data/x/again")).unwrap();
    let text = "version = 1\n[[source]]\nname = \"w\"\npaths = [\"data/**/*.jsonl\"]\nformat = \"jsonl\"\nlicence = \"x\"\n[output]\ndir = \"out\"\nformats = [\"jsonl_zst\"]\n";
    env.write("l.toml", text.as_bytes());
    let out = env.ok(&["validate", "l.toml"]);
    assert!(out.contains("1 units of input"), "{out}");
    env.ok(&["run", "--quiet", "l.toml"]);
    conserved(&env, "out", 4);
}

#[test]
fn a_redacted_document_dropped_later_counts_as_dropped_not_modified() {
    let env = Env::new();
    let recs = [
        "Write to anna.serra@example.cat about the long meeting notes of today and tomorrow.",
        "Mail bo@example.com now",
        "Nothing private in this rather ordinary sentence about the weather today.",
    ]
    .map(|t| serde_json::json!({ "text": t }));
    env.write("in/p.jsonl", &jsonl(&recs));
    env.manifest(
        "pl",
        "[[source]]\nname = \"p\"\npaths = [\"in/*.jsonl\"]\nformat = \"jsonl\"\nlicence = \"x\"\n\
         [[stage]]\ntype = \"pii\"\n[[stage]]\ntype = \"length\"\nmin_words = 6\n",
    );
    env.ok(&["run", "--quiet", "pl.toml"]);
    let out = env.path("out-pl");
    let s = assert_accounted(&out);
    assert_eq!(s["modified"], 1, "{s:#}");
    assert_eq!(s["dropped"], 1);
    let mut rows = ledger(&out);
    rows.sort_by_key(|r| r.2);
    let rows: Vec<(&str, u64)> = rows.iter().map(|r| (r.0.as_str(), r.2)).collect();
    assert_eq!(rows, [("pii_redacted", 1), ("too_few_words", 2)]);
}

#[test]
fn verify_finds_the_inputs_from_any_folder() {
    let env = Env::new();
    env.write("jsonl/a.jsonl", &docs(5, "a"));
    let m = manifest(&env, "out");
    env.ok(&["run", "--quiet", &m]);
    let out = env.path("out");
    let v = env
        .cmd()
        .current_dir("/")
        .args(["verify"])
        .arg(&out)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&v.stdout).into_owned() + &String::from_utf8_lossy(&v.stderr);
    assert!(v.status.success(), "{said}");
}
