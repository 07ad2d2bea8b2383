//! A temp-directory harness that runs the real `forja` binary.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
        p
    }

    /// Writes a manifest with the given sources and stages, output under `out`.
    pub fn manifest(&self, name: &str, body: &str) -> PathBuf {
        let text = format!(
            "version = 1\nname = \"{name}\"\n{body}\n[output]\ndir = \"out-{name}\"\nshard_bytes = 200000\n"
        );
        self.write(&format!("{name}.toml"), text.as_bytes())
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_forja"));
        c.current_dir(self.dir.path());
        c.env("RUST_LOG", "warn");
        c
    }

    pub fn forja(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("forja runs")
    }

    /// Runs `world` ranks of a manifest at once (one thread each), as they
    /// would meet at the barriers on a cluster, and fails the test if a rank
    /// fails or they take more than 300 s.
    pub fn run_ranks(&self, manifest: &str, out: &str, world: usize) {
        let w = world.to_string();
        let children: Vec<_> = (0..world)
            .map(|r| {
                let log = fs::File::create(self.path(&format!("{out}-rank-{r}.log"))).unwrap();
                self.cmd()
                    .args(["run", "--quiet", manifest, "--out", out, "--world-size", &w])
                    .args(["--rank", &r.to_string(), "--threads", "1"])
                    .stderr(log)
                    .spawn()
                    .unwrap()
            })
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        for (r, mut c) in children.into_iter().enumerate() {
            loop {
                if let Some(status) = c.try_wait().unwrap() {
                    let log = self.path(&format!("{out}-rank-{r}.log"));
                    assert!(
                        status.success(),
                        "rank {r} failed: {}",
                        fs::read_to_string(log).unwrap_or_default()
                    );
                    break;
                }
                if std::time::Instant::now() > deadline {
                    let _ = c.kill();
                    panic!("ranks did not finish within 300 s");
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }

    /// Runs forja and fails the test, with its output, if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.forja(args);
        assert!(
            out.status.success(),
            "forja {args:?} failed ({:?}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The real multilingual records of the demo corpus (UDHR articles).
pub fn udhr() -> Vec<serde_json::Value> {
    let path = Path::new(REPO).join("data/demo/udhr/udhr.jsonl.zst");
    let raw = zstd::decode_all(fs::File::open(path).unwrap()).unwrap();
    raw.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

pub fn jsonl(records: &[serde_json::Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        serde_json::to_writer(&mut out, r).unwrap();
        out.push(b'\n');
    }
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn zst(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

pub fn stats(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(out.join("stats.json")).expect("stats.json")).unwrap()
}

/// Every file under `dir`, by relative path, with its bytes; but the run's
/// own records of times and threads (`run-manifest.json`, `_forja/ranks/`)
/// and the report that shows them, the only files meant to differ between
/// runs of the same inputs.
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap();
            if rel == Path::new("run-manifest.json")
                || rel == Path::new("report.html")
                || rel == Path::new("_forja/ranks")
                // Names the run that holds the folder (host, pid, time).
                || rel == Path::new("_forja/lock")
                // The journal of files written, in the order threads made them.
                || (rel.starts_with("_forja") && rel.to_string_lossy().contains("/owned-"))
            {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// (reason, file, line, detail) of every ledger row of a one-rank run.
pub fn ledger(out: &Path) -> Vec<(String, String, u64, String)> {
    ledger_file(&out.join("ledger/rank-00000-of-00001.parquet"))
}

/// (reason, file, line, detail) of every ledger row of every rank, sorted.
pub fn ledger_all(out: &Path) -> Vec<(String, String, u64, String)> {
    let mut rows = Vec::new();
    for e in fs::read_dir(out.join("ledger")).unwrap() {
        rows.extend(ledger_file(&e.unwrap().path()));
    }
    rows.sort();
    rows
}

fn ledger_file(path: &Path) -> Vec<(String, String, u64, String)> {
    use arrow_array::{Array, StringArray, UInt64Array};
    let batches = forja::read_ledger(path).unwrap();
    let mut rows = Vec::new();
    for b in batches {
        let s = |name: &str| {
            b.column(b.schema().index_of(name).unwrap())
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let (reason, file, detail) = (s("reason"), s("file"), s("detail"));
        let line = b
            .column(b.schema().index_of("line").unwrap())
            .as_any()
            .downcast_ref::<UInt64Array>()
            .unwrap()
            .clone();
        for i in 0..b.num_rows() {
            rows.push((
                reason.value(i).to_string(),
                file.value(i).to_string(),
                line.value(i),
                detail.value(i).to_string(),
            ));
        }
    }
    rows
}

/// Every kept record (text and annotations), from the JSONL.zst shards, in
/// shard order.
pub fn kept_records(out: &Path) -> Vec<serde_json::Value> {
    let mut recs = Vec::new();
    for (rel, bytes) in tree(&out.join("jsonl")) {
        assert!(rel.ends_with(".jsonl.zst"), "{rel}");
        let raw = zstd::decode_all(&bytes[..]).unwrap();
        for line in raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            recs.push(serde_json::from_slice(line).unwrap());
        }
    }
    recs
}

/// Texts of all kept documents, in shard order.
pub fn kept_texts(out: &Path) -> Vec<String> {
    kept_records(out)
        .iter()
        .map(|v| v["text"].as_str().unwrap().to_string())
        .collect()
}

/// Checks read = kept + dropped + rejected, and that the ledger holds one row
/// per dropped or rejected document and per change a stage made to a kept one.
pub fn assert_accounted(out: &Path) -> serde_json::Value {
    let s = stats(out);
    let n = |k: &str| s[k].as_u64().unwrap();
    assert_eq!(
        n("documents_read"),
        n("kept") + n("dropped") + n("rejected"),
        "{s:#}"
    );
    for (name, src) in s["sources"].as_object().unwrap() {
        let m = |k: &str| src[k].as_u64().unwrap();
        assert_eq!(
            m("read"),
            m("kept") + m("dropped") + m("rejected"),
            "source {name}"
        );
    }
    // Rows of kind `modified` are kept documents whose text a stage changed.
    let rows = ledger(out);
    let modified = s["modified"].as_u64().unwrap_or(0);
    assert_eq!(rows.len() as u64, n("dropped") + n("rejected") + modified);
    assert_eq!(kept_texts(out).len() as u64, n("kept"));
    // From the ledger and the outputs themselves: each document is in one
    // place only, dropped or rejected once or kept once.
    let mut gone = std::collections::BTreeSet::new();
    for r in rows.iter().filter(|r| r.0 != "pii_redacted") {
        assert!(
            gone.insert((r.1.clone(), r.2)),
            "{}:{} in the ledger twice",
            r.1,
            r.2
        );
    }
    let mut kept = std::collections::BTreeSet::new();
    for k in kept_records(out) {
        let key = (
            k["file"].as_str().unwrap_or_default().to_string(),
            k["line"].as_u64().unwrap_or_default(),
        );
        assert!(
            !gone.contains(&key),
            "{key:?} is both kept and in the ledger"
        );
        assert!(kept.insert(key.clone()), "{key:?} kept twice");
    }
    s
}
