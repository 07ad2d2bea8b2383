//! `forja report`: the demo's report opened in headless Chromium (Debian's
//! `chromium`, which `.ci/run` installs), its numbers checked against the
//! run's own files. Without Chromium the browser half skips with a message,
//! unless FORJA_REQUIRE_CROSSCHECKS is set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FORJA_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    if std::env::var_os("FORJA_REQUIRE_CROSSCHECKS").is_some() {
        panic!("FORJA_REQUIRE_CROSSCHECKS is set but no chromium is on PATH (apt-get install chromium)");
    }
    eprintln!("skipping the browser half: no chromium on PATH (apt-get install chromium)");
    None
}

/// The page as Chromium has it after loading and running its script.
fn dump_dom(browser: &Path, page: &Path, profile: &Path) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium starts");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The value of attribute `attr` on the element whose attributes contain `anchor`.
pub fn attr(html: &str, anchor: &str, attr: &str) -> Option<String> {
    let at = html.find(anchor)?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let key = format!(r#"{attr}=""#);
    let v = tag.find(&key)? + key.len();
    Some(tag[v..v + tag[v..].find('"')?].to_string())
}

/// `data-v` of column `col` in row `key` of table `table`.
pub fn cell(html: &str, table: &str, key: &str, col: &str) -> String {
    let t = html
        .find(&format!(r#"id="{table}""#))
        .unwrap_or_else(|| panic!("no table {table}"));
    let t = &html[t..t + html[t..].find("</table>").unwrap()];
    let r = t
        .find(&format!(r#"data-key="{key}""#))
        .unwrap_or_else(|| panic!("no row {key} in {table}"));
    let row = &t[r..r + t[r..].find("</tr>").unwrap()];
    attr(row, &format!(r#"data-col="{col}""#), "data-v")
        .unwrap_or_else(|| panic!("no {col} in row {key} of {table}: {row}"))
}

fn u(s: String) -> u64 {
    s.parse().unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let pos = (v.len() - 1) as f64 / 2.0;
    (v[pos.floor() as usize] + v[pos.ceil() as usize]) / 2.0
}

/// Checks the page's numbers against the run's files, whichever of the
/// page's source or Chromium's DOM it is given.
fn check_numbers(html: &str, out: &Path) {
    let s = stats(out);
    for k in ["kept", "dropped", "rejected"] {
        assert_eq!(
            attr(html, &format!(r#"id="{k}""#), "data-v"),
            Some(s[k].to_string()),
            "{k}"
        );
    }
    assert_eq!(
        attr(html, r#"id="read""#, "data-v"),
        Some(s["documents_read"].to_string())
    );
    assert!(html.contains(r#"id="invariant" class="ok""#));
    // The funnel, stage by stage.
    for st in s["stages"].as_array().unwrap() {
        let name = st["name"].as_str().unwrap();
        for col in ["docs_in", "docs_out"] {
            assert_eq!(
                cell(html, "funnel-table", name, col),
                st[col].to_string(),
                "{name} {col}"
            );
        }
    }
    // Drop reasons and duplicate clusters, counted from the ledger here.
    let rows = ledger_all(out);
    let mut per_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &rows {
        *per_reason.entry(r.0.as_str()).or_default() += 1;
    }
    assert!(per_reason.len() >= 4, "{per_reason:?}");
    for (reason, n) in &per_reason {
        assert_eq!(
            u(cell(html, "reasons-table", reason, "documents")),
            *n,
            "{reason}"
        );
    }
    for reason in ["exact_duplicate", "near_duplicate"] {
        let dups: Vec<&str> = rows
            .iter()
            .filter(|r| r.0 == reason)
            .map(|r| r.3.as_str())
            .collect();
        assert!(!dups.is_empty(), "the demo has a {reason}");
        let reps: BTreeSet<&str> = dups.iter().copied().collect();
        let table = format!("dups-{reason}");
        assert_eq!(u(cell(html, &table, "all", "clusters")), reps.len() as u64);
        assert_eq!(
            u(cell(html, &table, "all", "duplicates")),
            dups.len() as u64
        );
    }
    // Tokens per language against shares.tsv.
    let shares = std::fs::read_to_string(out.join("megatron/shares.tsv")).unwrap();
    let mut total = 0;
    for line in shares.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let tokens: u64 = f[3].parse().unwrap();
        if f[0] != "total" {
            total += tokens;
        }
        assert_eq!(
            u(cell(html, "tokens-table", f[0], "tokens")),
            tokens,
            "{}",
            f[0]
        );
        let weighted: f64 = cell(html, "tokens-table", f[0], "weighted")
            .parse()
            .unwrap();
        assert!(
            (weighted - f[6].parse::<f64>().unwrap()).abs() < 1e-6,
            "{line}"
        );
    }
    assert_eq!(
        attr(html, r#"id="train-tokens""#, "data-v"),
        Some(total.to_string())
    );
    // Distributions: English length and CURATE score medians from the kept records.
    let recs = kept_records(out);
    for col in ["n_chars", "curate_score", "lang_score"] {
        let en: Vec<f64> = recs
            .iter()
            .filter(|r| r["lang"] == "en")
            .filter_map(|r| r[col].as_f64())
            .collect();
        assert!(en.len() > 20, "{col}");
        let table = format!("dist-{col}");
        assert_eq!(u(cell(html, &table, "en", "n")), en.len() as u64, "{col}");
        let m: f64 = cell(html, &table, "en", "median").parse().unwrap();
        assert!((m - median(en.clone())).abs() < 1e-9, "{col}: {m}");
        let all: u64 = u(cell(html, &table, "all", "n"));
        assert_eq!(
            all,
            recs.iter().filter(|r| r[col].is_number()).count() as u64
        );
    }
    // The demo has no perplexity stage: the page says how to get one.
    assert!(html.contains(r#"id="missing-perplexity""#));
}

#[test]
fn the_demo_report_renders_in_chromium_with_the_runs_numbers() {
    let env = Env::new();
    let out = env.path("demo");
    let said = env.ok(&[
        "run",
        &format!("{REPO}/manifests/demo.toml"),
        "--out",
        out.to_str().unwrap(),
    ]);
    let page = out.join("report.html");
    assert!(
        said.contains(&format!("report: {}", page.display())),
        "{said}"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    check_numbers(&html, &out);
    // Self-contained: nothing is loaded from anywhere.
    for needle in ["src=", "href=\"http", "url(", "@import"] {
        assert!(!html.contains(needle), "{needle}");
    }
    let charts = html.matches(r#"<svg id="chart-"#).count();
    assert!(charts >= 8, "{charts}");
    // `forja verify` still passes: the report is not an output it vouches for.
    let v = env.forja(&["verify", out.to_str().unwrap()]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    // `forja report` rewrites it from the folder alone.
    std::fs::remove_file(&page).unwrap();
    env.ok(&["report", out.to_str().unwrap()]);
    assert!(page.is_file());

    let Some(browser) = chromium() else { return };
    let dom = dump_dom(&browser, &page, &env.path("profile"));
    assert_eq!(attr(&dom, "<body", "data-errors"), None, "script errors");
    assert_eq!(
        attr(&dom, "<body", "data-charts"),
        Some(charts.to_string()),
        "the page's script did not run"
    );
    assert_eq!(
        attr(&dom, "<body", "data-rendered"),
        Some(charts.to_string()),
        "a chart laid out empty"
    );
    check_numbers(&dom, &out);
}

#[test]
fn a_run_without_parquet_or_shards_gets_a_report_that_says_so() {
    let env = Env::new();
    let recs: Vec<_> = udhr().into_iter().take(30).collect();
    env.write("in/udhr.jsonl", &jsonl(&recs));
    env.write(
        "r.toml",
        br#"version = 1
name = "r"
[[source]]
name = "udhr"
paths = ["in/*.jsonl"]
format = "jsonl"
licence = "UDHR: free to reproduce"
[[stage]]
type = "exact_dedup"
[output]
dir = "out-r"
formats = ["jsonl_zst"]
"#,
    );
    env.ok(&["run", "--quiet", "r.toml"]);
    let html = std::fs::read_to_string(env.path("out-r/report.html")).unwrap();
    assert!(html.contains("No Megatron output"));
    assert!(html.contains("No Parquet output"));
    let s = stats(&env.path("out-r"));
    assert_eq!(
        attr(&html, r#"id="kept""#, "data-v"),
        Some(s["kept"].to_string())
    );

    // Not an output folder: a clear error naming it.
    let bad = env.forja(&["report", "in"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("in: no stats.json"), "{err}");
}
