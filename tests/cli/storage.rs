//! Inputs and outputs in S3-compatible object storage, against a real S3
//! server on localhost (`moto_server` from PyPI `moto[server]`, which
//! `.ci/run` installs), started and stopped by the test. boto3 (moto's own
//! dependency) puts the inputs and reads the outputs back, so forja's side
//! is checked by another S3 client. Without moto the test skips with a
//! message, unless FORJA_REQUIRE_CROSSCHECKS is set.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Option<Moto> {
        // The console script, or the module where a fresh pip install has
        // not put the script on PATH.
        let mut cmd = match find("moto_server") {
            Some(bin) => Command::new(bin),
            None if Command::new("python3")
                .args(["-c", "import moto.server"])
                .output()
                .is_ok_and(|o| o.status.success()) =>
            {
                let mut c = Command::new("python3");
                c.args(["-m", "moto.server"]);
                c
            }
            None => {
                if std::env::var_os("FORJA_REQUIRE_CROSSCHECKS").is_some() {
                    panic!("FORJA_REQUIRE_CROSSCHECKS is set but moto is not installed (pip install 'moto[server]')");
                }
                eprintln!("skipping the object storage test: no moto (pip install 'moto[server]')");
                return None;
            }
        };
        let port = 30_000 + (std::process::id() % 20_000) as u16;
        let child = cmd
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let until = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < until,
                "moto_server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    fn env(&self, c: &mut Command) {
        c.env("AWS_ACCESS_KEY_ID", "forja")
            .env("AWS_SECRET_ACCESS_KEY", "forja-secret")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true");
    }

    /// Runs a Python snippet with boto3 pointed at this server (`s3`).
    fn boto(&self, code: &str) -> String {
        let mut c = Command::new("python3");
        self.env(&mut c);
        let script = format!(
            "import boto3, sys, os\ns3 = boto3.client('s3', endpoint_url=os.environ['AWS_ENDPOINT_URL'])\n{code}"
        );
        let out = c.arg("-c").arg(script).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn put(moto: &Moto, local: &Path, bucket: &str, key: &str) {
    moto.boto(&format!(
        "s3.upload_file({:?}, {bucket:?}, {key:?})",
        local.display().to_string()
    ));
}

/// Random words: text that zstd cannot shrink much, for a multipart upload.
fn noise(n_docs: usize, words: usize) -> Vec<serde_json::Value> {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    (0..n_docs)
        .map(|_| {
            let text: Vec<String> = (0..words)
                .map(|_| {
                    (0..7)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            (b'a' + (x % 26) as u8) as char
                        })
                        .collect()
                })
                .collect();
            serde_json::json!({ "text": text.join(" ") })
        })
        .collect()
}

#[test]
fn inputs_read_from_and_outputs_published_to_s3_match_a_local_run() {
    let Some(moto) = Moto::start() else { return };
    let env = Env::new();
    moto.boto("s3.create_bucket(Bucket='corpus')\ns3.create_bucket(Bucket='out')");
    // The same inputs, local and in the bucket: UDHR lines (with a copy to
    // deduplicate), the demo's GNOME help Parquet, and 8 MB of noise.
    let mut recs: Vec<_> = udhr().into_iter().take(60).collect();
    recs.push(recs[3].clone());
    env.write("in/udhr.jsonl.zst", &zst(&jsonl(&recs)));
    env.write("in/noise.jsonl", &jsonl(&noise(1400, 800)));
    let gnome = Path::new(REPO).join("data/demo/gnome-help/data/train-00000-of-00001.parquet");
    std::fs::create_dir_all(env.path("pq")).unwrap();
    std::fs::copy(&gnome, env.path("pq/help.parquet")).unwrap();
    put(
        &moto,
        &env.path("in/udhr.jsonl.zst"),
        "corpus",
        "web/2026/udhr.jsonl.zst",
    );
    put(
        &moto,
        &env.path("in/noise.jsonl"),
        "corpus",
        "web/2026/noise.jsonl",
    );
    put(
        &moto,
        &env.path("pq/help.parquet"),
        "corpus",
        "docs/help.parquet",
    );
    let manifest = |name: &str, web: &str, docs: &str, out: &str| {
        env.write(
            &format!("{name}.toml"),
            format!(
                r#"version = 1
name = "{name}"
[[source]]
name = "web"
paths = ["{web}"]
format = "jsonl"
licence = "test"
[[source]]
name = "help"
paths = ["{docs}"]
format = "parquet"
url_field = "url"
licence = "CC-BY-SA-3.0"
[[stage]]
type = "exact_dedup"
[[stage]]
type = "length"
min_words = 5
[output]
dir = "{out}"
formats = ["parquet", "jsonl_zst"]
shard_bytes = 50_000_000
"#
            )
            .as_bytes(),
        );
    };
    manifest("local", "in/*.jsonl*", "pq/*.parquet", "out-local");
    manifest(
        "remote",
        "s3://corpus/web/*/*.jsonl*",
        "s3://corpus/docs/*.parquet",
        "s3://out/runs/remote",
    );
    env.ok(&["run", "--quiet", "local.toml"]);
    let mut c = env.cmd();
    moto.env(&mut c);
    // 5 MB parts: the noise's Parquet and JSONL shards go up in several.
    let o = c
        .env("FORJA_S3_PART_MB", "5")
        .args(["run", "--quiet", "remote.toml", "--threads", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Same documents kept and dropped; ids differ (they name the URL).
    let staged = env.path(".forja-staging/out/runs/remote");
    let local = env.path("out-local");
    let (a, b) = (stats(&local), stats(&staged));
    for k in [
        "documents_read",
        "kept",
        "dropped",
        "rejected",
        "kept_bytes",
    ] {
        assert_eq!(a[k], b[k], "{k}");
    }
    assert!(
        b["stages"][1]["dropped"]["exact_duplicate"].as_u64() >= Some(1),
        "{b:#}"
    );
    let mut ka = kept_texts(&local);
    let mut kb = kept_texts(&staged);
    ka.sort();
    kb.sort();
    assert_eq!(ka, kb);
    let rows = ledger_all(&staged);
    assert!(
        rows.iter()
            .any(|r| r.1 == "s3://corpus/web/2026/udhr.jsonl.zst"),
        "{rows:?}"
    );
    // The run manifest records the objects by URL, size and ETag.
    let rm: serde_json::Value =
        serde_json::from_slice(&std::fs::read(staged.join("run-manifest.json")).unwrap()).unwrap();
    let inputs = rm["inputs"].as_array().unwrap();
    assert!(inputs
        .iter()
        .all(|f| f["path"].as_str().unwrap().starts_with("s3://corpus/")));
    assert!(inputs
        .iter()
        .all(|f| f["xxh3"].as_str().unwrap().starts_with("etag:")));
    // verify asks the bucket for the inputs' sizes and ETags.
    let mut c = env.cmd();
    moto.env(&mut c);
    let v = c
        .args(["verify", staged.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );

    // Every output is in the bucket with the same bytes, read back by boto3.
    let listed = moto.boto(
        "for o in s3.list_objects_v2(Bucket='out', Prefix='runs/remote/')['Contents']:\n    print(o['Key'], o['Size'])",
    );
    let keys: Vec<(&str, u64)> = listed
        .lines()
        .map(|l| {
            let (k, n) = l.rsplit_once(' ').unwrap();
            (k, n.parse().unwrap())
        })
        .collect();
    let mut expected: Vec<String> = rm["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("runs/remote/{}", f["path"].as_str().unwrap()))
        .collect();
    expected.push("runs/remote/report.html".into());
    expected.push("runs/remote/run-manifest.json".into());
    expected.sort();
    let mut got: Vec<String> = keys.iter().map(|(k, _)| k.to_string()).collect();
    got.sort();
    assert_eq!(got, expected);
    let big = keys
        .iter()
        .filter(|(k, _)| k.ends_with(".parquet") && k.contains("/web/"))
        .map(|(k, n)| (k.to_string(), *n))
        .max_by_key(|(_, n)| *n)
        .unwrap();
    assert!(
        big.1 > 5 << 20,
        "{big:?}: not large enough to go up in parts"
    );
    let fetched = env.path("fetched.parquet");
    moto.boto(&format!(
        "s3.download_file('out', {:?}, {:?})",
        big.0,
        fetched.display().to_string()
    ));
    let rel = big.0.trim_start_matches("runs/remote/");
    assert_eq!(
        std::fs::read(&fetched).unwrap(),
        std::fs::read(staged.join(rel)).unwrap()
    );
    // A multipart object's ETag is `md5-of-parts-N`.
    let etag = moto.boto(&format!(
        "print(s3.head_object(Bucket='out', Key={:?})['ETag'])",
        big.0
    ));
    assert!(etag.trim().trim_matches('"').contains('-'), "{etag}");
}
