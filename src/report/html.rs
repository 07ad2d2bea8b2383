//! The report page: sections of text, tables and inline SVG charts.
//!
//! Every number a table shows is also in its cell's `data-v` attribute,
//! exactly as Rust prints it, so tests and scripts can read the page back
//! without parsing formatted text. Nothing is fetched: the styles, the
//! charts and the one small script (which records in `<body>` that the
//! charts laid out, for the headless browser test) are all inline.

use std::fmt::Write;

use super::format::{esc, int, mb, num, pct, td, td_f, td_int, thead};
use super::svg::{self, BoxRow, Row, Scale, Segment};
use super::{Clusters, Dist, MeasureDists, Report};

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2329;margin:0;background:#f6f7f9}
main{max-width:940px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:34px 0 8px;border-bottom:1px solid #dde1e6;padding-bottom:4px}
h3{font-size:15px;margin:22px 0 6px}p.sub{color:#5b6570;margin:0 0 14px}p.note{color:#5b6570;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}.card{flex:1 1 120px;border:1px solid #dde1e6;border-radius:6px;padding:8px 12px}
.card b{display:block;font-size:20px}.card span{color:#5b6570;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.ok{color:#1b7f3b}.bad{color:#b42318}
table{border-collapse:collapse;width:100%;margin:8px 0 4px;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #eceef1;text-align:left;vertical-align:top}
th{background:#f3f5f7;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}code,td.id{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
details{margin:6px 0}summary{cursor:pointer;color:#35506b}
svg.chart{display:block;margin:6px 0;max-width:100%;height:auto}
svg .label,svg .tick,svg .note{font:11px system-ui,sans-serif;fill:#2c343c}svg .tick{fill:#6b7580}svg .grid{stroke:#e6e9ed}
.out{fill:#2f6fb0}.drop{fill:#e08a3c}.reject{fill:#b42318}.nat{fill:#9db8d6}.wgt{fill:#2f6fb0}.time{fill:#6c8f3f}.dup{fill:#8a63b8}
g.box line{stroke:#2f6fb0;stroke-width:1.2}g.box rect{fill:#cfe0f2;stroke:#2f6fb0}g.box line.median{stroke:#b42318;stroke-width:2}
.legend span{display:inline-block;width:11px;height:11px;margin:0 4px 0 12px;vertical-align:-1px}
"#;

const SCRIPT: &str = r#"<script>
(function(){
  var b=document.body,errs=[];
  window.addEventListener('error',function(e){errs.push(e.message);b.setAttribute('data-errors',errs.join('; '));});
  function check(){
    var all=document.querySelectorAll('svg.chart'),n=0;
    for(var i=0;i<all.length;i++){var r=all[i].getBBox();if(r.width>0&&r.height>0)n++;}
    b.setAttribute('data-charts',String(all.length));
    b.setAttribute('data-rendered',String(n));
  }
  if(document.readyState==='complete')check();else window.addEventListener('load',check);
})();
</script>"#;

fn legend(items: &[(&str, &str)]) -> String {
    let mut s = String::from(r#"<div class="legend">"#);
    for (class, text) in items {
        let _ = write!(
            s,
            r#"<svg width="11" height="11"><rect class="{class}" width="11" height="11"/></svg> {}&nbsp;&nbsp;"#,
            esc(text)
        );
    }
    s.push_str("</div>");
    s
}

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let name = r
        .run
        .as_ref()
        .and_then(|m| m.manifest["name"].as_str().map(str::to_string))
        .unwrap_or_else(|| "forja run".into());
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>forja report: {}</title><style>{STYLE}</style></head><body><main>"#,
        esc(&name)
    );
    summary(&mut s, r, &name);
    run_section(&mut s, r);
    sources(&mut s, r);
    funnel(&mut s, r);
    reasons(&mut s, r);
    tokens(&mut s, r);
    distributions(&mut s, r);
    duplicates(&mut s, r);
    s.push_str("</main>");
    s.push_str(SCRIPT);
    s.push_str("</body></html>\n");
    s
}

fn summary(s: &mut String, r: &Report, name: &str) {
    let st = &r.stats;
    let _ = write!(s, "<h1>forja report: {}</h1>", esc(name));
    if let Some(m) = &r.run {
        let _ = write!(
            s,
            r#"<p class="sub">manifest <code>{}</code> (hash <code>{}</code>), forja {}{}</p>"#,
            esc(&m.manifest_path),
            esc(&m.manifest_hash),
            esc(&m.forja_version),
            m.git_commit
                .as_deref()
                .map(|c| format!(" at <code>{}</code>", esc(&c[..c.len().min(12)])))
                .unwrap_or_default()
        );
    }
    s.push_str(r#"<div class="cards">"#);
    for (id, label, n, extra) in [
        (
            "read",
            "documents read",
            st.documents_read,
            mb(st.bytes_read),
        ),
        ("kept", "kept", st.kept, mb(st.kept_bytes)),
        (
            "dropped",
            "dropped",
            st.dropped,
            pct(st.dropped as f64 / st.documents_read.max(1) as f64),
        ),
        (
            "rejected",
            "rejected",
            st.rejected,
            pct(st.rejected as f64 / st.documents_read.max(1) as f64),
        ),
    ] {
        let _ = write!(
            s,
            r#"<div class="card"><span>{label}</span><b id="{id}" data-v="{n}">{}</b>{extra}</div>"#,
            int(n)
        );
    }
    s.push_str("</div>");
    match st.check_invariant() {
        Ok(()) => {
            let _ = write!(
                s,
                r#"<p id="invariant" class="ok">Every document is accounted for: {} read = {} kept + {} dropped + {} rejected.</p>"#,
                int(st.documents_read),
                int(st.kept),
                int(st.dropped),
                int(st.rejected)
            );
        }
        Err(e) => {
            let _ = write!(
                s,
                r#"<p id="invariant" class="bad">The counts do not add up: {}.</p>"#,
                esc(&e)
            );
        }
    }
}

fn run_section(s: &mut String, r: &Report) {
    s.push_str(r#"<h2 id="run">The run</h2>"#);
    let Some(m) = &r.run else {
        s.push_str(
            r#"<p class="note">No run-manifest.json: the run is not complete, so times and versions are not known.</p>"#,
        );
        return;
    };
    let world = m.ranks.iter().map(|k| k.world_size).max().unwrap_or(1);
    let threads: Vec<String> = {
        let mut t: Vec<usize> = m.ranks.iter().map(|k| k.threads).collect();
        t.sort_unstable();
        t.dedup();
        t.iter().map(|n| n.to_string()).collect()
    };
    let wall = m.ranks.iter().map(|k| k.seconds).fold(0.0, f64::max);
    let busy: f64 = m.ranks.iter().map(|k| k.seconds).sum();
    let _ = write!(
        s,
        r#"<p>{} task{} over {world} rank{} with {} thread{} each; the longest took {:.1} s ({:.1} s over all tasks). {} input file{} ({}), {} output file{} ({}), all checksummed in <code>run-manifest.json</code>: <code>forja verify</code> checks them.</p>"#,
        m.ranks.len(),
        if m.ranks.len() == 1 { "" } else { "s" },
        if world == 1 { "" } else { "s" },
        threads.join("/"),
        if threads == ["1"] { "" } else { "s" },
        wall,
        busy,
        m.inputs.len(),
        if m.inputs.len() == 1 { "" } else { "s" },
        mb(m.inputs.iter().map(|f| f.bytes).sum()),
        m.outputs.len(),
        if m.outputs.len() == 1 { "" } else { "s" },
        mb(m.outputs.iter().map(|f| f.bytes).sum()),
    );
    let mut per: Vec<(String, f64)> = Vec::new();
    for k in &m.ranks {
        for (stage, secs) in &k.stage_seconds {
            match per.iter_mut().find(|(n, _)| n == stage) {
                Some(e) => e.1 += secs,
                None => per.push((stage.clone(), *secs)),
            }
        }
    }
    // Manifest order, as the funnel.
    per.sort_by_key(|(n, _)| {
        r.stats
            .stages
            .iter()
            .position(|st| &st.name == n)
            .unwrap_or(usize::MAX)
    });
    if per.is_empty() {
        return;
    }
    let rows: Vec<Row> = per
        .iter()
        .map(|(n, secs)| Row {
            label: n.clone(),
            bars: vec![vec![Segment {
                value: *secs,
                class: "time",
                title: format!("{n}: {secs:.2} s"),
            }]],
            note: format!("{secs:.2} s"),
        })
        .collect();
    s.push_str("<h3>Time per stage (all tasks, all threads' wall time in the stage)</h3>");
    s.push_str(&svg::bars(
        "chart-time",
        "seconds per stage",
        &rows,
        Scale::Linear,
    ));
}

fn sources(s: &mut String, r: &Report) {
    s.push_str(r#"<h2 id="sources">Sources</h2><table id="sources-table">"#);
    s.push_str(&thead(&[
        "source",
        "licence",
        "read",
        "kept",
        "dropped",
        "rejected",
        "kept share",
        "MB kept",
    ]));
    s.push_str("<tbody>");
    for (name, c) in &r.stats.sources {
        let _ = write!(
            s,
            r#"<tr data-key="{}">{}{}{}{}{}{}{}{}</tr>"#,
            esc(name),
            td("source", name),
            td(
                "licence",
                r.licences.get(name).map(String::as_str).unwrap_or("?")
            ),
            td_int("read", c.read),
            td_int("kept", c.kept),
            td_int("dropped", c.dropped),
            td_int("rejected", c.rejected),
            td_f("kept_share", c.kept as f64 / c.read.max(1) as f64, pct),
            td_f("mb_kept", c.bytes_kept as f64 / 1e6, |v| format!("{v:.2}")),
        );
    }
    s.push_str("</tbody></table>");
}

fn funnel(s: &mut String, r: &Report) {
    s.push_str(r#"<h2 id="funnel">Funnel</h2><p class="sub">Documents into each stage, what it passed on and what it dropped; the reader's row counts rejected records.</p>"#);
    let rows: Vec<Row> = r
        .stats
        .stages
        .iter()
        .map(|st| {
            let dropped: u64 = st.dropped.values().sum();
            let class = if st.name == "read" { "reject" } else { "drop" };
            Row {
                label: st.name.clone(),
                bars: vec![vec![
                    Segment {
                        value: st.docs_out as f64,
                        class: "out",
                        title: format!("{}: {} passed on", st.name, int(st.docs_out)),
                    },
                    Segment {
                        value: dropped as f64,
                        class,
                        title: format!("{}: {} dropped", st.name, int(dropped)),
                    },
                ]],
                note: if dropped > 0 {
                    format!(
                        "{} → {} (−{})",
                        int(st.docs_in),
                        int(st.docs_out),
                        int(dropped)
                    )
                } else {
                    int(st.docs_out)
                },
            }
        })
        .collect();
    s.push_str(&legend(&[
        ("out", "passed on"),
        ("drop", "dropped"),
        ("reject", "rejected"),
    ]));
    s.push_str(&svg::bars(
        "chart-funnel",
        "documents per stage",
        &rows,
        Scale::Linear,
    ));
    s.push_str(r#"<table id="funnel-table">"#);
    s.push_str(&thead(&[
        "stage", "docs in", "docs out", "dropped", "MB out", "reasons",
    ]));
    s.push_str("<tbody>");
    for st in &r.stats.stages {
        let dropped: u64 = st.dropped.values().sum();
        let reasons = st
            .dropped
            .iter()
            .map(|(k, n)| format!("{} {}", k.as_str(), int(*n)))
            .chain(
                st.modified
                    .iter()
                    .map(|(k, n)| format!("{} {} (kept, text changed)", k.as_str(), int(*n))),
            )
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            s,
            r#"<tr data-key="{}">{}{}{}{}{}{}</tr>"#,
            esc(&st.name),
            td("stage", &st.name),
            td_int("docs_in", st.docs_in),
            td_int("docs_out", st.docs_out),
            td_int("dropped", dropped),
            td_f("mb_out", st.bytes_out as f64 / 1e6, |v| format!("{v:.2}")),
            td("reasons", &reasons),
        );
    }
    s.push_str("</tbody></table>");
}

fn reasons(s: &mut String, r: &Report) {
    s.push_str(r#"<h2 id="reasons">Drop reasons</h2>"#);
    if r.reasons.is_empty() {
        s.push_str(r#"<p class="note">Nothing was dropped or rejected.</p>"#);
        return;
    }
    let read = r.stats.documents_read.max(1) as f64;
    let rows: Vec<Row> = r
        .reasons
        .iter()
        .map(|x| Row {
            label: x.reason.to_string(),
            bars: vec![vec![Segment {
                value: x.documents as f64,
                class: if x.kind == "rejected" {
                    "reject"
                } else {
                    "drop"
                },
                title: format!(
                    "{} ({}, {}): {}",
                    x.reason,
                    x.kind,
                    x.stage,
                    int(x.documents)
                ),
            }]],
            note: format!("{} ({})", int(x.documents), pct(x.documents as f64 / read)),
        })
        .collect();
    s.push_str(&svg::bars(
        "chart-reasons",
        "documents per drop reason",
        &rows,
        Scale::Linear,
    ));
    s.push_str(r#"<p class="note">Samples are the smallest ids with that reason; <code>forja audit OUT --doc ID</code> tells a document's whole story.</p><table id="reasons-table">"#);
    s.push_str(&thead(&[
        "reason",
        "kind",
        "stage",
        "documents",
        "of read",
        "MB",
        "sample ids (detail)",
    ]));
    s.push_str("<tbody>");
    for x in &r.reasons {
        let samples = x
            .samples
            .iter()
            .map(|(id, detail)| {
                if detail.is_empty() {
                    format!("<code>{}</code>", esc(id))
                } else {
                    format!("<code>{}</code> ({})", esc(id), esc(detail))
                }
            })
            .collect::<Vec<_>>()
            .join("<br>");
        let _ = write!(
            s,
            r#"<tr data-key="{}">{}{}{}{}{}{}<td data-col="samples">{samples}</td></tr>"#,
            x.reason,
            td("reason", x.reason),
            td("kind", x.kind),
            td("stage", &x.stage),
            td_int("documents", x.documents),
            td_f("share", x.documents as f64 / read, pct),
            td_f("mb", x.bytes as f64 / 1e6, |v| format!("{v:.3}")),
        );
    }
    s.push_str("</tbody></table>");
}

fn tokens(s: &mut String, r: &Report) {
    s.push_str(r#"<h2 id="tokens">Tokens per language</h2>"#);
    let Some(langs) = &r.tokens else {
        s.push_str(r#"<p class="note">No Megatron output (<code>formats = ["megatron"]</code>): the run has no token counts or mixture.</p>"#);
        return;
    };
    let total: u64 = langs.iter().map(|l| l.tokens).sum();
    let _ = write!(
        s,
        r#"<p class="sub">The training split: <b id="train-tokens" data-v="{total}">{}</b> tokens. The mixture's factors (and source weights) turn each language's natural share into its target share of what is trained on; tokens after weighting are that share of the same total.</p>"#,
        int(total)
    );
    s.push_str(&legend(&[
        ("nat", "natural share"),
        ("wgt", "target share (weighted)"),
    ]));
    let rows: Vec<Row> = langs
        .iter()
        .map(|l| Row {
            label: l.lang.clone(),
            bars: vec![
                vec![Segment {
                    value: l.natural * 100.0,
                    class: "nat",
                    title: format!(
                        "{}: {} tokens, {} natural",
                        l.lang,
                        int(l.tokens),
                        pct(l.natural)
                    ),
                }],
                vec![Segment {
                    value: l.weighted * 100.0,
                    class: "wgt",
                    title: format!(
                        "{}: ×{} → {} of the mixture",
                        l.lang,
                        num(l.factor),
                        pct(l.weighted)
                    ),
                }],
            ],
            note: format!("{} → {}", pct(l.natural), pct(l.weighted)),
        })
        .collect();
    s.push_str(&svg::bars(
        "chart-tokens",
        "share of training tokens per language (percent)",
        &rows,
        Scale::Linear,
    ));
    s.push_str(r#"<table id="tokens-table">"#);
    s.push_str(&thead(&[
        "language",
        "documents",
        "tokens",
        "factor",
        "natural share",
        "target share",
        "tokens after weighting",
    ]));
    s.push_str("<tbody>");
    for l in langs {
        let _ = write!(
            s,
            r#"<tr data-key="{}">{}{}{}{}{}{}{}</tr>"#,
            esc(&l.lang),
            td("language", &l.lang),
            td_int("documents", l.documents),
            td_int("tokens", l.tokens),
            td_f("factor", l.factor, num),
            td_f("natural", l.natural, pct),
            td_f("weighted", l.weighted, pct),
            td_int(
                "weighted_tokens",
                (l.weighted * total as f64).round() as u64
            ),
        );
    }
    let _ = write!(
        s,
        r#"<tr data-key="total">{}{}{}<td></td>{}{}{}</tr></tbody></table>"#,
        td("language", "total"),
        td_int("documents", langs.iter().map(|l| l.documents).sum()),
        td_int("tokens", total),
        td_f("natural", 1.0, pct),
        td_f("weighted", 1.0, pct),
        td_int("weighted_tokens", total),
    );
}

fn dist_cells(d: &Dist) -> String {
    [
        td_int("n", d.n),
        td_f("mean", d.mean, num),
        td_f("min", d.min, num),
        td_f("q1", d.q1, num),
        td_f("median", d.median, num),
        td_f("q3", d.q3, num),
        td_f("max", d.max, num),
    ]
    .concat()
}

fn distributions(s: &mut String, r: &Report) {
    s.push_str(r#"<h2 id="distributions">Distributions per language</h2><p class="sub">Kept documents, from the Parquet output. Whiskers span minimum to maximum, the box the middle half, the red line is the median.</p>"#);
    if r.parquet_files == 0 {
        s.push_str(r#"<p class="note">No Parquet output (<code>formats = ["parquet"]</code>): per-document annotations are not kept.</p>"#);
        return;
    }
    for m in &r.measures {
        one_measure(s, m);
    }
    for m in &r.missing_measures {
        let why = match m.column {
            "n_chars" => "add a <code>length</code> stage",
            "curate_score" => {
                "add <code>\"curate\"</code> to the <code>quality</code> stage's <code>rules</code>"
            }
            "lang_score" => "add a <code>lid</code> stage",
            _ => "add a <code>perplexity</code> stage",
        };
        let _ = write!(
            s,
            r#"<h3>{}</h3><p class="note" id="missing-{}">No <code>{}</code> column in this run: {why}.</p>"#,
            esc(m.title),
            m.column,
            m.column
        );
    }
}

fn one_measure(s: &mut String, m: &MeasureDists) {
    let col = m.measure.column;
    let _ = write!(s, r#"<h3>{} <code>{col}</code></h3>"#, esc(m.measure.title));
    let mut rows: Vec<BoxRow> = m.langs.iter().map(|(l, d)| box_row(l, d)).collect();
    rows.push(box_row("all", &m.all));
    let scale = if m.measure.log && m.all.min > 0.0 {
        Scale::Log
    } else {
        Scale::Linear
    };
    s.push_str(&svg::boxes(
        &format!("chart-{col}"),
        &format!("{} per language", m.measure.title),
        &rows,
        scale,
    ));
    if let Some(k) = m
        .langs
        .values()
        .chain([&m.all])
        .filter_map(|d| d.sampled)
        .next()
    {
        let _ = write!(
            s,
            r#"<p class="note">Quartiles of the larger languages come from a sample of {} documents each, chosen by id hash; counts, means, minima and maxima are exact.</p>"#,
            int(k as u64)
        );
    }
    let _ = write!(
        s,
        r#"<details><summary>table</summary><table id="dist-{col}">"#
    );
    s.push_str(&thead(&[
        "language",
        "documents",
        "mean",
        "min",
        "q1",
        "median",
        "q3",
        "max",
    ]));
    s.push_str("<tbody>");
    for (l, d) in m
        .langs
        .iter()
        .map(|(l, d)| (l.as_str(), d))
        .chain([("all", &m.all)])
    {
        let _ = write!(
            s,
            r#"<tr data-key="{}">{}{}</tr>"#,
            esc(l),
            td("language", l),
            dist_cells(d)
        );
    }
    s.push_str("</tbody></table></details>");
}

fn box_row(label: &str, d: &Dist) -> BoxRow {
    BoxRow {
        label: label.to_string(),
        min: d.min,
        q1: d.q1,
        median: d.median,
        q3: d.q3,
        max: d.max,
        note: format!("{} docs, median {}", int(d.n), num(d.median)),
    }
}

/// Power-of-two buckets of cluster sizes: 2, 3–4, 5–8, ...
fn bucket(size: u64) -> (u64, u64) {
    if size <= 2 {
        return (2, 2);
    }
    let hi = size.next_power_of_two();
    (hi / 2 + 1, hi)
}

fn duplicates(s: &mut String, r: &Report) {
    s.push_str(r#"<h2 id="duplicates">Duplicate clusters</h2><p class="sub">A cluster is a kept document and the documents dropped as its duplicates (the ledger's detail names the one kept).</p>"#);
    for c in &r.clusters {
        clusters(s, c);
    }
}

fn clusters(s: &mut String, c: &Clusters) {
    let _ = write!(s, "<h3><code>{}</code></h3>", c.reason);
    if c.sizes.is_empty() {
        let _ = write!(
            s,
            r#"<p class="note" id="none-{}">No document was dropped as <code>{}</code>.</p>"#,
            c.reason, c.reason
        );
        return;
    }
    let mut buckets: Vec<((u64, u64), u64, u64)> = Vec::new();
    for (&size, &n) in &c.sizes {
        let b = bucket(size);
        match buckets.last_mut() {
            Some(last) if last.0 == b => {
                last.1 += n;
                last.2 += n * (size - 1);
            }
            _ => buckets.push((b, n, n * (size - 1))),
        }
    }
    let name = |(lo, hi): (u64, u64)| {
        if lo == hi {
            format!("{lo} docs")
        } else {
            format!("{lo}–{hi} docs")
        }
    };
    let rows: Vec<Row> = buckets
        .iter()
        .map(|&(b, n, dups)| Row {
            label: name(b),
            bars: vec![vec![Segment {
                value: n as f64,
                class: "dup",
                title: format!(
                    "{}: {} clusters, {} duplicates dropped",
                    name(b),
                    int(n),
                    int(dups)
                ),
            }]],
            note: format!("{} clusters", int(n)),
        })
        .collect();
    s.push_str(&svg::bars(
        &format!("chart-{}", c.reason),
        "clusters per size",
        &rows,
        Scale::Linear,
    ));
    let clusters: u64 = c.sizes.values().sum();
    let dups: u64 = c.sizes.iter().map(|(size, n)| (size - 1) * n).sum();
    let _ = write!(s, r#"<table id="dups-{}">"#, c.reason);
    s.push_str(&thead(&["cluster size", "clusters", "duplicates dropped"]));
    s.push_str("<tbody>");
    for &(b, n, d) in &buckets {
        let _ = write!(
            s,
            r#"<tr data-key="{}-{}">{}{}{}</tr>"#,
            b.0,
            b.1,
            td("size", &name(b)),
            td_int("clusters", n),
            td_int("duplicates", d)
        );
    }
    let _ = write!(
        s,
        r#"<tr data-key="all">{}{}{}</tr></tbody></table>"#,
        td("size", "all"),
        td_int("clusters", clusters),
        td_int("duplicates", dups)
    );
    s.push_str("<p>Largest: ");
    let largest = c
        .largest
        .iter()
        .map(|(size, id)| format!("<code>{}</code> ({size})", esc(id)))
        .collect::<Vec<_>>()
        .join(", ");
    s.push_str(&largest);
    s.push_str("</p>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(1234567), "1,234,567");
        assert_eq!(num(1234.6), "1,235");
        assert_eq!(num(-1234.6), "-1,235");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(0.12345), "0.123");
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn cluster_buckets_are_powers_of_two() {
        assert_eq!(bucket(2), (2, 2));
        assert_eq!(bucket(3), (3, 4));
        assert_eq!(bucket(4), (3, 4));
        assert_eq!(bucket(5), (5, 8));
        assert_eq!(bucket(8), (5, 8));
        assert_eq!(bucket(9), (9, 16));
    }
}
