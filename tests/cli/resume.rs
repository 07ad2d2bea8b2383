//! Kill the process mid-run; `--resume` finishes it with identical bytes.

use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn resume_after_kill_gives_identical_output() {
    let env = Env::new();
    let all = udhr();
    // 24 units of real text, with duplicates across units so that dedup
    // state must survive the kill.
    let units = 24;
    for u in 0..units {
        let mut records = Vec::new();
        for copy in 0..6 {
            for (i, r) in all.iter().enumerate() {
                let mut r = r.clone();
                if (i + copy + u) % 4 != 0 {
                    let t = format!("{} ({u}.{copy}.{i})", r["text"].as_str().unwrap());
                    r["text"] = t.into();
                }
                records.push(r);
            }
        }
        env.write(&format!("in/{u:02}.jsonl.gz"), &gzip(&jsonl(&records)));
    }
    let m = env.manifest(
        "resume",
        "[[source]]\nname = \"u\"\npaths = [\"in/*.jsonl.gz\"]\nformat = \"jsonl\"\nlicence = \"x\"\n\
         [[stage]]\ntype = \"normalize\"\n[[stage]]\ntype = \"exact_dedup\"\n[[stage]]\ntype = \"length\"\nmin_words = 6\n",
    );
    let m = m.to_str().unwrap();
    env.ok(&["run", "--quiet", m, "--out", "whole", "--threads", "2"]);

    let markers = env.path("killed/_forja/units");
    let count = || {
        std::fs::read_dir(&markers)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".done.json")
                })
                .count()
            })
            .unwrap_or(0)
    };
    let mut child = env
        .cmd()
        .args(["run", "--quiet", m, "--out", "killed", "--threads", "2"])
        .spawn()
        .unwrap();
    let start = Instant::now();
    while count() < 3 {
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup runs
    child.wait().unwrap();
    let done = count();
    assert!(
        done < units,
        "killed mid-run ({done} of {units} units done)"
    );
    assert!(!env.path("killed/stats.json").exists());

    let stdout = env.ok(&["run", m, "--out", "killed", "--resume", "--threads", "1"]);
    assert!(stdout.contains("resumed)"), "{stdout}");
    assert!(!stdout.contains("(0 resumed)"), "{stdout}");
    let whole = tree(&env.path("whole"));
    let resumed = tree(&env.path("killed"));
    assert_eq!(
        whole.keys().collect::<Vec<_>>(),
        resumed.keys().collect::<Vec<_>>(),
        "same files, no temporary leftovers"
    );
    for (k, v) in &whole {
        assert!(resumed[k] == *v, "{k} differs after resume");
    }
    assert_accounted(&env.path("killed"));
}
