//! Same input and manifest, same bytes: whatever the threads or ranks.

use crate::harness::*;

/// A few MB of real text in several files, with real duplicates.
fn corpus(env: &Env) {
    let all = udhr();
    for part in 0..4 {
        let mut records = Vec::new();
        for (i, r) in all.iter().enumerate() {
            let mut r = r.clone();
            if (i + part) % 3 != 0 {
                // Perturb most copies so they are distinct documents.
                let t = format!("{} [{part}-{i}]", r["text"].as_str().unwrap());
                r["text"] = t.into();
            }
            records.push(r);
        }
        env.write(&format!("in/part-{part}.jsonl.zst"), &zst(&jsonl(&records)));
    }
}

const STAGES: &str = "[[stage]]\ntype = \"normalize\"\n[[stage]]\ntype = \"exact_dedup\"\n[[stage]]\ntype = \"length\"\nmin_words = 8\n";

fn src(reader: &str) -> String {
    format!("[[source]]\nname = \"u\"\npaths = [\"in/*.jsonl.zst\"]\nformat = \"jsonl\"\nlicence = \"x\"\n{reader}\n")
}

#[test]
fn outputs_are_byte_identical_across_thread_counts() {
    let env = Env::new();
    corpus(&env);
    // Small batches so that windows and threads really interleave.
    let m = env.manifest("det", &(src("[reader]\nbatch_bytes = 65536\n") + STAGES));
    let m = m.to_str().unwrap();
    env.ok(&["run", "--quiet", m, "--threads", "1", "--out", "t1"]);
    env.ok(&["run", "--quiet", m, "--threads", "2", "--out", "t2"]);
    env.ok(&["run", "--quiet", m, "--threads", "5", "--out", "t5"]);
    let t1 = tree(&env.path("t1"));
    assert!(t1.len() > 10);
    let s = assert_accounted(&env.path("t1"));
    assert!(
        s["dropped"].as_u64().unwrap() > 100,
        "duplicates were found"
    );
    for other in ["t2", "t5"] {
        let t = tree(&env.path(other));
        assert_eq!(t.keys().collect::<Vec<_>>(), t1.keys().collect::<Vec<_>>());
        for (k, v) in &t1 {
            assert!(t[k] == *v, "{other}/{k} differs");
        }
    }
}

#[test]
fn ranks_split_the_work_and_stats_merge() {
    let env = Env::new();
    corpus(&env);
    // Without dedup (which is per rank here), the union of rank outputs is
    // the one-rank output, byte for byte.
    let stages = "[[stage]]\ntype = \"normalize\"\n[[stage]]\ntype = \"length\"\nmin_words = 8\n";
    let m = env.manifest("ranks", &(src("") + stages));
    let m = m.to_str().unwrap();
    env.ok(&["run", "--quiet", m, "--out", "one"]);
    let out = env.forja(&[
        "run",
        "--quiet",
        m,
        "--out",
        "two",
        "--rank",
        "1",
        "--world-size",
        "2",
    ]);
    assert!(out.status.success());
    // Only one rank done: stats is incomplete.
    let partial = env.forja(&["stats", "two"]);
    assert_eq!(partial.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&partial.stdout).contains("ranks [0]"));
    env.ok(&[
        "run",
        "--quiet",
        m,
        "--out",
        "two",
        "--rank",
        "0",
        "--world-size",
        "2",
    ]);
    let funnel = env.ok(&["stats", "two"]);
    let one = stats(&env.path("one"));
    let two = stats(&env.path("two"));
    assert_eq!(one["documents_read"], two["documents_read"]);
    assert_eq!(one["kept"], two["kept"]);
    assert!(funnel.contains(&format!("read {} documents", one["documents_read"])));
    let t1 = tree(&env.path("one/parquet"));
    let t2 = tree(&env.path("two/parquet"));
    assert_eq!(t1, t2);
    // A different world size cannot resume this folder.
    let out = env.forja(&[
        "run",
        "--quiet",
        m,
        "--out",
        "two",
        "--resume",
        "--world-size",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--world-size 2"));
}

#[test]
fn ids_and_outputs_do_not_depend_on_the_working_directory() {
    let env = Env::new();
    corpus(&env);
    let m = env.manifest("cwd", &(src("") + STAGES));
    env.ok(&["run", "--quiet", "cwd.toml", "--out", "here"]);
    std::fs::create_dir_all(env.path("elsewhere")).unwrap();
    let out = env
        .cmd()
        .current_dir(env.path("elsewhere"))
        .args(["run", "--quiet", m.to_str().unwrap(), "--out", "../there"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        tree(&env.path("here/parquet")),
        tree(&env.path("there/parquet"))
    );
    assert_eq!(
        tree(&env.path("here/ledger")),
        tree(&env.path("there/ledger"))
    );
}
