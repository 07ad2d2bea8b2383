//! `forja slurm --submit` on a real Slurm: munged, slurmctld and slurmd
//! (Debian's `slurm-wlm` and `munge`, which `.ci/run` installs) started on
//! localhost with a one-node configuration in a temp folder, and stopped by
//! PID when the test ends. The demo pipeline runs as job arrays of world
//! size 4 and must give the bytes of one `forja run`. Without Slurm (or
//! without root) these tests skip with a message, unless
//! FORJA_REQUIRE_CROSSCHECKS is set.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::harness::*;

/// One Slurm at a time: both tests use the same ports.
static SLURM: Mutex<()> = Mutex::new(());

fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

struct Cluster {
    dir: tempfile::TempDir,
    daemons: Vec<Child>,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        let need = [
            "munged",
            "slurmctld",
            "slurmd",
            "sbatch",
            "squeue",
            "scancel",
        ];
        let missing: Vec<&str> = need.iter().copied().filter(|n| find(n).is_none()).collect();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if !missing.is_empty() || !root {
            let why = if root {
                format!("{missing:?} not installed (apt-get install slurm-wlm munge)")
            } else {
                "slurmd needs root".to_string()
            };
            if std::env::var_os("FORJA_REQUIRE_CROSSCHECKS").is_some() {
                panic!("FORJA_REQUIRE_CROSSCHECKS is set but Slurm cannot run here: {why}");
            }
            eprintln!("skipping the Slurm test: {why}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let d = d.as_path();
        for sub in ["state", "spool", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let key = d.join("munge.key");
        let mut bytes = vec![0u8; 1024];
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .unwrap();
        std::fs::write(&key, bytes).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        let sock = d.join("munge.sock");
        let mut c = Cluster {
            dir,
            daemons: Vec::new(),
        };
        c.spawn(
            Command::new(find("munged").unwrap())
                .arg("--foreground")
                .arg("--force")
                .arg(format!("--socket={}", sock.display()))
                .arg(format!("--key-file={}", key.display()))
                .arg(format!("--pid-file={}", d.join("munged.pid").display()))
                .arg(format!("--log-file={}", d.join("log/munged.log").display()))
                .arg(format!("--seed-file={}", d.join("munge.seed").display())),
        );
        wait_for(|| sock.exists(), 20, "munged's socket");
        let host = String::from_utf8(Command::new("hostname").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let mem_mb = std::fs::read_to_string("/proc/meminfo")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            / 1024
            - 2048;
        let cpus = std::thread::available_parallelism().unwrap().get();
        // Ports of this process's own: a crashed earlier run's daemons
        // cannot hold them.
        let port = 20_000 + (std::process::id() % 20_000) as u16 * 2;
        let conf = format!(
            "ClusterName=forja\n\
             SlurmctldHost={host}(127.0.0.1)\n\
             SlurmctldPort={port}\n\
             SlurmdPort={}\n\
             AuthType=auth/munge\n\
             AuthInfo=socket={sock}\n\
             CredType=cred/munge\n\
             SlurmUser=root\n\
             SlurmdUser=root\n\
             StateSaveLocation={d}/state\n\
             SlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\n\
             SlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldLogFile={d}/log/slurmctld.log\n\
             SlurmdLogFile={d}/log/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\n\
             SelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core_Memory\n\
             DefMemPerCPU=1000\n\
             AccountingStorageType=accounting_storage/none\n\
             JobAcctGatherType=jobacct_gather/none\n\
             JobCompType=jobcomp/none\n\
             ReturnToService=2\n\
             MpiDefault=none\n\
             NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN\n\
             PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            port + 1,
            sock = sock.display(),
            d = d.display(),
        );
        let conf_path = d.join("slurm.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let ctld = find("slurmctld").unwrap();
        let slurmd = find("slurmd").unwrap();
        c.spawn(
            Command::new(ctld)
                .arg("-D")
                .arg("-i")
                .arg("-f")
                .arg(&conf_path),
        );
        c.spawn(Command::new(slurmd).arg("-D").arg("-f").arg(&conf_path));
        let conf_path2 = conf_path.clone();
        wait_for(
            move || {
                Command::new(find("sinfo").unwrap())
                    .env("SLURM_CONF", &conf_path2)
                    .args(["-h", "-o", "%t"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
            },
            60,
            "the Slurm node to be idle",
        );
        Some(c)
    }

    fn spawn(&mut self, cmd: &mut Command) {
        let child = cmd
            .env("SLURM_CONF", self.conf())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("daemon starts");
        self.daemons.push(child);
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(find(name).unwrap());
        c.env("SLURM_CONF", self.conf());
        c
    }

    /// Waits until no job is queued or running.
    fn wait_idle(&self, secs: u64) {
        let conf = self.conf();
        wait_for(
            move || {
                Command::new(find("squeue").unwrap())
                    .env("SLURM_CONF", &conf)
                    .arg("-h")
                    .output()
                    .is_ok_and(|o| o.status.success() && o.stdout.is_empty())
            },
            secs,
            "the queue to empty",
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // slurmd first, so no job is left half-started.
        for c in self.daemons.iter_mut().rev() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

fn wait_for(mut ok: impl FnMut() -> bool, secs: u64, what: &str) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < until, "gave up waiting {secs}s for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `forja slurm` with the cluster's configuration; its stdout.
fn forja_slurm(env: &Env, c: &Cluster, out: &str) -> String {
    let o = env
        .cmd()
        .env("SLURM_CONF", c.conf())
        .args([
            "slurm",
            &format!("{REPO}/manifests/demo.toml"),
            "--world-size",
            "4",
            "--out",
            out,
            "--submit",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    said
}

/// The job id `forja slurm` printed for `step`.
fn job_of(said: &str, step: &str) -> String {
    said.lines()
        .find(|l| l.split_whitespace().nth(2) == Some(step))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no job for {step} in:\n{said}"))
        .to_string()
}

/// Every log the jobs wrote, for a failure message.
fn logs(out: &Path) -> String {
    let mut s = String::new();
    for (rel, bytes) in tree(&out.join("_forja/slurm/logs")) {
        s.push_str(&format!("--- {rel}\n{}\n", String::from_utf8_lossy(&bytes)));
    }
    s
}

/// The demo's outputs from one `forja run`, and from the Slurm run.
fn assert_same_outputs(one: &Path, many: &Path) {
    assert!(
        many.join("run-manifest.json").is_file(),
        "the finish job did not run:\n{}",
        logs(many)
    );
    for dir in ["parquet", "jsonl", "megatron"] {
        assert_eq!(tree(&one.join(dir)), tree(&many.join(dir)), "{dir}/");
    }
    assert_eq!(stats(one), stats(many));
    assert_eq!(ledger_all(one), ledger_all(many));
    let rm: serde_json::Value =
        serde_json::from_slice(&std::fs::read(many.join("run-manifest.json")).unwrap()).unwrap();
    assert_eq!(rm["ranks"][0]["world_size"], 4);
    assert!(many.join("report.html").is_file());
}

fn demo_once(env: &Env) -> PathBuf {
    let one = env.path("one");
    env.ok(&[
        "run",
        "--quiet",
        &format!("{REPO}/manifests/demo.toml"),
        "--out",
        one.to_str().unwrap(),
    ]);
    one
}

/// A running Slurm with the demo submitted at world size 4, beside the
/// demo run once in one process.
struct Submitted {
    cluster: Cluster,
    env: Env,
    one: PathBuf,
    many: PathBuf,
    said: String,
    /// Last: the daemons stop before the next test may start its own.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

fn submit_demo() -> Option<Submitted> {
    let guard = SLURM.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::start()?;
    let env = Env::new();
    let one = demo_once(&env);
    let many = env.path("many");
    let said = forja_slurm(&env, &cluster, many.to_str().unwrap());
    Some(Submitted {
        cluster,
        env,
        one,
        many,
        said,
        _one_at_a_time: guard,
    })
}

#[test]
fn slurm_job_arrays_of_world_size_4_give_the_bytes_of_one_run() {
    let Some(s) = submit_demo() else { return };
    let (cluster, env, one, many, said) = (&s.cluster, &s.env, &s.one, &s.many, &s.said);
    // One array per step, the clustering steps one task, and the finish job.
    for step in [
        "near_dedup:scan",
        "near_dedup:cluster",
        "final",
        "megatron",
        "finish",
    ] {
        job_of(said, step);
    }
    assert!(said.contains("ranks 0-3"), "{said}");
    cluster.wait_idle(600);
    assert_same_outputs(one, many);
    let v = env.forja(&["verify", many.to_str().unwrap()]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    // Nothing is left to do: the same command submits nothing.
    let again = forja_slurm(env, cluster, many.to_str().unwrap());
    assert!(again.contains("nothing to submit"), "{again}");
}

#[test]
fn a_cancelled_rank_is_resubmitted_alone_and_the_run_completes_identically() {
    let Some(s) = submit_demo() else { return };
    let (cluster, env, one, many, said) = (&s.cluster, &s.env, &s.one, &s.many, &s.said);
    // Rank 2 of the final pass is cancelled while it waits for the dedup
    // steps; the steps after it are cancelled with it (kill-on-invalid-dep).
    let fin = job_of(said, "final");
    let st = cluster
        .cmd("scancel")
        .arg(format!("{fin}_2"))
        .status()
        .unwrap();
    assert!(st.success());
    cluster.wait_idle(600);
    assert!(!many.join("run-manifest.json").exists(), "{}", logs(many));
    assert!(many
        .join("_forja/ranks/rank-00001-of-00004.final.json")
        .is_file());
    assert!(!many
        .join("_forja/ranks/rank-00002-of-00004.final.json")
        .exists());
    // The same command again: only rank 2 of the final pass, then the
    // megatron step and the finish job.
    let again = forja_slurm(env, cluster, many.to_str().unwrap());
    let steps: Vec<&str> = again
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(steps, ["final", "megatron", "finish"], "{again}");
    assert!(
        again.lines().next().unwrap().ends_with("ranks 2"),
        "{again}"
    );
    cluster.wait_idle(600);
    assert_same_outputs(one, many);
}
