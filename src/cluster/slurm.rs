//! `forja slurm`: a run as Slurm job arrays, one per step, chained by
//! `--dependency=afterok`, then a one-CPU job that finishes the run.
//!
//! Every array task runs `forja run MANIFEST --phase STEP --rank R
//! --world-size W`, so Slurm only schedules: the steps, the rank slices and
//! the barriers are forja's own, the same as on one machine. A task that
//! succeeds leaves `_forja/ranks/rank-R-of-W.STEP.json`; running `forja
//! slurm --submit` again submits only the ranks and steps that have none,
//! so failed or cancelled ranks are resubmitted and finished ones are not.
//! Array indices are capped by `max_array_size` (clusters limit them): a
//! step with more ranks gets several arrays, each with an offset.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::rank_record;

/// `[slurm]` in a manifest: how its jobs are submitted. None of it changes
/// what a run writes, so it is not part of the run's manifest hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    /// Ranks of every step (`forja slurm --world-size` overrides).
    #[serde(default = "default_world_size")]
    pub world_size: usize,
    /// Largest array index the cluster accepts plus one (its MaxArraySize).
    #[serde(default = "default_max_array_size")]
    pub max_array_size: usize,
    #[serde(default)]
    pub partition: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub qos: Option<String>,
    /// Defaults for every step; `phases` overrides them.
    #[serde(default, flatten)]
    pub resources: Resources,
    /// Per step, by its name (`near_dedup:scan`), its stage's name
    /// (`near_dedup`: all three of its steps) or its kind (`scan`, `reduce`,
    /// `cluster`, `final`, `megatron`, `finish`); the most specific wins.
    #[serde(default)]
    pub phases: BTreeMap<String, Resources>,
    /// More `#SBATCH` options, verbatim (`--constraint=highmem`).
    #[serde(default)]
    pub sbatch: Vec<String>,
    /// Shell lines run before forja in every job (`module load ...`).
    #[serde(default)]
    pub setup: Vec<String>,
    /// The forja binary the jobs run; by default the one that writes them.
    #[serde(default)]
    pub forja: Option<String>,
}

/// CPUs, memory, time limit and partition of a job's tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPUs per task; forja runs that many threads.
    #[serde(default)]
    pub cpus: Option<usize>,
    /// Memory per task, as sbatch takes it (`8G`).
    #[serde(default)]
    pub mem: Option<String>,
    /// Time limit per task, as sbatch takes it (`04:00:00`).
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub partition: Option<String>,
}

fn default_world_size() -> usize {
    1
}

fn default_max_array_size() -> usize {
    1001
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            world_size: default_world_size(),
            max_array_size: default_max_array_size(),
            partition: None,
            account: None,
            qos: None,
            resources: Resources::default(),
            phases: BTreeMap::new(),
            sbatch: Vec::new(),
            setup: Vec::new(),
            forja: None,
        }
    }
}

impl SlurmConfig {
    /// (field, message) for every value that cannot work.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        if self.world_size == 0 {
            p.push(("world_size".into(), "must be at least 1".into()));
        }
        if self.max_array_size < 2 {
            p.push(("max_array_size".into(), "must be at least 2".into()));
        }
        let mut check = |field: String, r: &Resources| {
            if r.cpus == Some(0) {
                p.push((format!("{field}cpus"), "must be at least 1".into()));
            }
            for (k, v) in [
                ("mem", &r.mem),
                ("time", &r.time),
                ("partition", &r.partition),
            ] {
                if v.as_deref()
                    .is_some_and(|v| v.trim().is_empty() || v.contains(['\n', '\'']))
                {
                    p.push((
                        format!("{field}{k}"),
                        format!("{v:?} is not a usable value"),
                    ));
                }
            }
        };
        check(String::new(), &self.resources);
        for (name, r) in &self.phases {
            check(format!("phases.{name}."), r);
        }
        p
    }

    /// A step's resources: its own, else its kind's, else the defaults.
    pub fn resources(&self, step: &str) -> Resources {
        let kind = step.rsplit(':').next().unwrap_or(step);
        let stage = step.split(':').next().unwrap_or(step);
        let mut r = self.resources.clone();
        for key in [kind, stage, step] {
            if let Some(o) = self.phases.get(key) {
                r.cpus = o.cpus.or(r.cpus);
                r.mem = o.mem.clone().or(r.mem);
                r.time = o.time.clone().or(r.time);
                r.partition = o.partition.clone().or(r.partition);
            }
        }
        r.partition = r.partition.or_else(|| self.partition.clone());
        r
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot run {command}: {source} (is Slurm installed and on PATH?)")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("sbatch refused {script}: {message}")]
    Refused { script: String, message: String },
}

/// The step a task runs, and which task it is.
pub const FINISH: &str = "finish";

/// One `sbatch` submission: a job array over some ranks of a step, or the
/// finishing job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub step: String,
    /// Ranks this job runs (array index + offset); `[0]` for one-task steps.
    pub ranks: Vec<usize>,
    pub offset: usize,
    /// Its place in the run: jobs with the same number run side by side,
    /// each after every job of the number before.
    pub stage: usize,
    pub script: String,
    pub file: PathBuf,
}

/// What `forja slurm` needs to know about a run.
pub struct RunSpec<'a> {
    /// The run's name (the jobs' name prefix).
    pub name: &'a str,
    /// The manifest, as an absolute path.
    pub manifest: &'a Path,
    /// The output folder, as an absolute path.
    pub out: &'a Path,
    /// Every step of the run, in order.
    pub steps: &'a [String],
    /// Ranks of every step.
    pub world_size: usize,
    /// The forja binary the jobs run.
    pub forja: &'a Path,
}

/// True if a step runs as one task (the dedup clustering), not one per rank.
pub fn single_task(step: &str) -> bool {
    step.ends_with(":cluster") || step == FINISH
}

/// True if rank `rank` has finished `step` (or a whole run without `--phase`).
pub fn rank_done(out: &Path, step: &str, rank: usize, world: usize) -> bool {
    rank_record(out, rank, world, Some(step)).is_file()
        || rank_record(out, rank, world, None).is_file()
}

/// The jobs still to run: every step's ranks that have not finished, in
/// step order, and the finishing job unless the run manifest is written
/// and nothing else is left.
pub fn plan(spec: &RunSpec, cfg: &SlurmConfig) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut stage = 0;
    for step in spec.steps {
        let ranks: Vec<usize> = if single_task(step) {
            vec![0]
        } else {
            (0..spec.world_size).collect()
        };
        let todo: Vec<usize> = ranks
            .into_iter()
            .filter(|&r| !rank_done(spec.out, step, r, spec.world_size))
            .collect();
        if todo.is_empty() {
            continue;
        }
        let cap = cfg.max_array_size;
        let mut chunks: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for r in todo {
            chunks.entry(r / cap * cap).or_default().push(r);
        }
        for (offset, ranks) in chunks {
            jobs.push(job(spec, cfg, step, ranks, offset, stage));
        }
        stage += 1;
    }
    let finished = spec.out.join(crate::files::RUN_MANIFEST).is_file();
    if !jobs.is_empty() || !finished {
        jobs.push(job(spec, cfg, FINISH, vec![0], 0, stage));
    }
    jobs
}

/// `0-3`, `1,5,7`, or `0-2,5`: array indices as sbatch takes them.
pub fn array_spec(indices: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}-{}", indices[i], indices[j])
        } else {
            indices[i].to_string()
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Quotes a word for a POSIX shell.
fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn job(
    spec: &RunSpec,
    cfg: &SlurmConfig,
    step: &str,
    ranks: Vec<usize>,
    offset: usize,
    stage: usize,
) -> Job {
    let res = cfg.resources(step);
    let finish = step == FINISH;
    let cpus = if finish { 1 } else { res.cpus.unwrap_or(1) };
    let file_step = step.replace(':', "-");
    let slurm_dir = spec.out.join(crate::files::FORJA_DIR).join("slurm");
    let logs = slurm_dir.join("logs");
    let name = format!("forja-{}-{file_step}", spec.name);
    let mut s = String::from("#!/bin/bash\n");
    let mut opt = |line: String| {
        let _ = writeln!(s, "#SBATCH {line}");
    };
    opt(format!("--job-name={name}"));
    let indices: Vec<usize> = ranks.iter().map(|r| r - offset).collect();
    if !single_task(step) {
        opt(format!("--array={}", array_spec(&indices)));
        opt(format!(
            "--output={}",
            logs.join(format!("{file_step}-%A_%a.log")).display()
        ));
    } else {
        opt(format!(
            "--output={}",
            logs.join(format!("{file_step}-%j.log")).display()
        ));
    }
    opt("--ntasks=1".into());
    opt(format!("--cpus-per-task={cpus}"));
    if let Some(m) = res.mem.as_deref().filter(|_| !finish) {
        opt(format!("--mem={m}"));
    }
    if let Some(t) = &res.time {
        opt(format!("--time={t}"));
    }
    if let Some(p) = &res.partition {
        opt(format!("--partition={p}"));
    }
    if let Some(a) = &cfg.account {
        opt(format!("--account={a}"));
    }
    if let Some(q) = &cfg.qos {
        opt(format!("--qos={q}"));
    }
    // A failed or cancelled rank cancels the steps after it, instead of
    // leaving them pending forever; `forja slurm --submit` resubmits.
    opt("--kill-on-invalid-dep=yes".into());
    for extra in &cfg.sbatch {
        opt(extra.clone());
    }
    let _ = writeln!(
        s,
        "# {} of {}: {} (world size {})",
        if finish { "the last job" } else { step },
        spec.name,
        spec.manifest.display(),
        spec.world_size
    );
    s.push_str("set -euo pipefail\n");
    for line in &cfg.setup {
        s.push_str(line);
        s.push('\n');
    }
    let (forja, manifest, out) = (
        sh(&spec.forja.display().to_string()),
        sh(&spec.manifest.display().to_string()),
        sh(&spec.out.display().to_string()),
    );
    let w = spec.world_size;
    if finish {
        let _ = writeln!(
            s,
            "exec {forja} --quiet finish {manifest} --out {out} --world-size {w}"
        );
    } else {
        if single_task(step) {
            s.push_str("rank=0\n");
        } else {
            let _ = writeln!(s, "rank=$((SLURM_ARRAY_TASK_ID + {offset}))");
        }
        // A folder that has a run record resumes it: the task skips the
        // units it (or an earlier attempt) finished.
        let record = sh(&spec
            .out
            .join(crate::files::FORJA_DIR)
            .join("run.json")
            .display()
            .to_string());
        let _ = writeln!(s, "resume=\nif [ -f {record} ]; then resume=--resume; fi");
        let _ = writeln!(
            s,
            "exec {forja} --quiet run {manifest} --out {out} --world-size {w} --rank \"$rank\" --phase {} --threads \"${{SLURM_CPUS_PER_TASK:-{cpus}}}\" --log-every 60 $resume",
            sh(step)
        );
    }
    let file = slurm_dir.join(if offset > 0 {
        format!("{stage:02}-{file_step}-{offset}.sbatch")
    } else {
        format!("{stage:02}-{file_step}.sbatch")
    });
    Job {
        step: step.to_string(),
        ranks,
        offset,
        stage,
        script: s,
        file,
    }
}

/// Writes every job's script (through a temporary name).
pub fn write_scripts(jobs: &[Job]) -> Result<(), SlurmError> {
    for j in jobs {
        let io = |source| SlurmError::Io {
            path: j.file.display().to_string(),
            source,
        };
        if let Some(logs) = j.file.parent().map(|p| p.join("logs")) {
            std::fs::create_dir_all(&logs).map_err(io)?;
        }
        crate::files::atomic_write(&j.file, j.script.as_bytes()).map_err(io)?;
    }
    Ok(())
}

/// Submits the jobs in order with `sbatch` (`sbatch` may be another
/// command with the same arguments and output); returns each job's id.
pub fn submit(jobs: &[Job], sbatch: &str) -> Result<Vec<String>, SlurmError> {
    let mut ids: Vec<String> = Vec::new();
    let mut before: Vec<String> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut stage = None;
    for j in jobs {
        if stage != Some(j.stage) {
            if !current.is_empty() {
                before = std::mem::take(&mut current);
            }
            stage = Some(j.stage);
        }
        let mut cmd = std::process::Command::new(sbatch);
        cmd.arg("--parsable");
        if !before.is_empty() {
            cmd.arg(format!("--dependency=afterok:{}", before.join(":")));
        }
        cmd.arg(&j.file);
        let out = cmd.output().map_err(|source| SlurmError::Spawn {
            command: sbatch.to_string(),
            source,
        })?;
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // `--parsable` prints `id` or `id;cluster`.
        let id = said.split(';').next().unwrap_or("").trim().to_string();
        if !out.status.success() || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SlurmError::Refused {
                script: j.file.display().to_string(),
                message: format!("{} {}", said, String::from_utf8_lossy(&out.stderr).trim())
                    .trim()
                    .to_string(),
            });
        }
        current.push(id.clone());
        ids.push(id);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(out: &'a Path, steps: &'a [String], world: usize) -> RunSpec<'a> {
        RunSpec {
            name: "t",
            manifest: Path::new("/m/t.toml"),
            out,
            steps,
            world_size: world,
            forja: Path::new("/bin/forja"),
        }
    }

    fn steps() -> Vec<String> {
        [
            "exact_dedup:scan",
            "exact_dedup:reduce",
            "exact_dedup:cluster",
            "final",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn array_specs_compress_runs() {
        assert_eq!(array_spec(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_spec(&[1, 5, 7]), "1,5,7");
        assert_eq!(array_spec(&[0, 1, 2, 5, 8, 9]), "0-2,5,8-9");
        assert_eq!(array_spec(&[4]), "4");
    }

    #[test]
    fn every_step_is_an_array_and_the_cluster_step_one_task() {
        let d = tempfile::tempdir().unwrap();
        let st = steps();
        let cfg = SlurmConfig {
            resources: Resources {
                cpus: Some(4),
                mem: Some("8G".into()),
                ..Default::default()
            },
            phases: [(
                "cluster".to_string(),
                Resources {
                    mem: Some("64G".into()),
                    ..Default::default()
                },
            )]
            .into(),
            account: Some("bsc".into()),
            ..Default::default()
        };
        let jobs = plan(&spec(d.path(), &st, 4), &cfg);
        let names: Vec<(&str, usize)> = jobs.iter().map(|j| (j.step.as_str(), j.stage)).collect();
        assert_eq!(
            names,
            vec![
                ("exact_dedup:scan", 0),
                ("exact_dedup:reduce", 1),
                ("exact_dedup:cluster", 2),
                ("final", 3),
                ("finish", 4)
            ]
        );
        let scan = &jobs[0].script;
        assert!(scan.contains("#SBATCH --array=0-3\n"), "{scan}");
        assert!(scan.contains("#SBATCH --cpus-per-task=4\n#SBATCH --mem=8G\n"));
        assert!(scan.contains("#SBATCH --account=bsc\n"));
        assert!(scan.contains("--phase 'exact_dedup:scan'"));
        assert!(scan.contains("rank=$((SLURM_ARRAY_TASK_ID + 0))"));
        let cluster = &jobs[2].script;
        assert!(!cluster.contains("--array"));
        assert!(cluster.contains("#SBATCH --mem=64G\n") && cluster.contains("rank=0\n"));
        let finish = &jobs[4].script;
        assert!(finish.contains("#SBATCH --cpus-per-task=1\n"));
        assert!(finish.contains("finish '/m/t.toml' --out"));
    }

    #[test]
    fn arrays_are_capped_with_offsets_and_done_ranks_are_left_out() {
        let d = tempfile::tempdir().unwrap();
        let st = vec!["final".to_string()];
        let cfg = SlurmConfig {
            max_array_size: 4,
            ..Default::default()
        };
        let jobs = plan(&spec(d.path(), &st, 10), &cfg);
        let arrays: Vec<(usize, Vec<usize>)> = jobs
            .iter()
            .filter(|j| j.step == "final")
            .map(|j| (j.offset, j.ranks.clone()))
            .collect();
        assert_eq!(
            arrays,
            vec![
                (0, vec![0, 1, 2, 3]),
                (4, vec![4, 5, 6, 7]),
                (8, vec![8, 9])
            ]
        );
        assert!(jobs[2].script.contains("--array=0-1\n"));
        assert!(jobs[2].script.contains("SLURM_ARRAY_TASK_ID + 8"));
        // Ranks 1 and 9 finished (one by step, one by a whole run): the rest go.
        for (rank, step) in [(1, Some("final")), (9, None)] {
            let f = rank_record(d.path(), rank, 10, step);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, "{}").unwrap();
        }
        let jobs = plan(&spec(d.path(), &st, 10), &cfg);
        let left: Vec<usize> = jobs
            .iter()
            .filter(|j| j.step == "final")
            .flat_map(|j| j.ranks.clone())
            .collect();
        assert_eq!(left, vec![0, 2, 3, 4, 5, 6, 7, 8]);
        assert!(jobs[0].script.contains("--array=0,2-3\n"));
    }

    #[test]
    fn a_step_name_overrides_its_kind_and_bad_values_are_named() {
        let cfg: SlurmConfig = toml::from_str(
            r#"
world_size = 8
cpus = 2
time = "01:00:00"
partition = "main"
[phases.scan]
cpus = 8
[phases."near_dedup:scan"]
cpus = 16
partition = "big"
[phases.near_dedup]
cpus = 12
"#,
        )
        .unwrap();
        assert_eq!(cfg.resources("near_dedup:scan").cpus, Some(16));
        assert_eq!(
            cfg.resources("near_dedup:scan").partition.as_deref(),
            Some("big")
        );
        assert_eq!(cfg.resources("exact_dedup:scan").cpus, Some(8));
        assert_eq!(cfg.resources("near_dedup:reduce").cpus, Some(12));
        assert_eq!(cfg.resources("final").cpus, Some(2));
        assert_eq!(cfg.resources("final").partition.as_deref(), Some("main"));
        assert!(cfg.problems().is_empty());
        let bad: SlurmConfig =
            toml::from_str("world_size = 0\n[phases.final]\ncpus = 0\n").unwrap();
        let p = bad.problems();
        assert!(p.iter().any(|(f, _)| f == "world_size"), "{p:?}");
        assert!(p.iter().any(|(f, _)| f == "phases.final.cpus"), "{p:?}");
        assert!(toml::from_str::<SlurmConfig>("colour = 1").is_err());
    }

    #[test]
    fn submit_chains_each_step_after_the_one_before() {
        let d = tempfile::tempdir().unwrap();
        let st = steps();
        let cfg = SlurmConfig {
            max_array_size: 2,
            ..Default::default()
        };
        let jobs = plan(&spec(d.path(), &st, 3), &cfg);
        write_scripts(&jobs).unwrap();
        // A stand-in sbatch that logs its arguments and answers a job id.
        let log = d.path().join("calls");
        let fake = d.path().join("sbatch");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\nn=$(wc -l < {})\necho $((100 + n))\n",
                log.display(),
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ids = submit(&jobs, fake.to_str().unwrap()).unwrap();
        // scan (2 arrays), reduce (2), cluster, final (2), finish.
        assert_eq!(ids.len(), 8);
        let calls = std::fs::read_to_string(&log).unwrap();
        let deps: Vec<&str> = calls
            .lines()
            .map(|l| {
                l.split_whitespace()
                    .find(|w| w.starts_with("--dependency"))
                    .unwrap_or("-")
            })
            .collect();
        assert_eq!(
            deps,
            vec![
                "-",
                "-",
                "--dependency=afterok:101:102",
                "--dependency=afterok:101:102",
                "--dependency=afterok:103:104",
                "--dependency=afterok:105",
                "--dependency=afterok:105",
                "--dependency=afterok:106:107",
            ]
        );
    }
}
