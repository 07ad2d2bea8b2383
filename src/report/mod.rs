//! `forja report`: one self-contained HTML page about a finished run.
//!
//! It reads only what the run left in its output folder: `stats.json` (the
//! funnel), `run-manifest.json` (versions, licences, times), the ledger
//! (drop reasons, sample ids, duplicate clusters), the Parquet output
//! (length, quality score, LID confidence and perplexity per language) and
//! the Megatron families (tokens per language before and after weighting).
//! Sections whose data the run did not produce say so instead of failing.
//!
//! Distributions come from a sample of at most [`SAMPLE`] documents per
//! language and measure, picked by the smallest hashes of their ids, so
//! the report is the same whatever order the files are read in, and exact
//! for smaller runs; counts, means, minima and maxima are always exact.

mod format;
mod html;
mod svg;

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::files::{REPORT, RUN_MANIFEST};
use crate::ledger::{Kind, Reason, Stats};
use crate::provenance::{files_ending, read_json, RunManifest};

/// Values kept per language and measure for the quantiles.
pub const SAMPLE: usize = 100_000;

/// Sample document ids kept per drop reason.
const SAMPLE_IDS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Bad { path: String, message: String },
    #[error(transparent)]
    Provenance(#[from] crate::provenance::ProvenanceError),
}

fn bad(path: &Path, message: impl std::fmt::Display) -> ReportError {
    ReportError::Bad {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// A measure whose distribution per language the report draws.
#[derive(Debug, Clone, Copy)]
pub struct Measure {
    /// The Parquet output column.
    pub column: &'static str,
    pub title: &'static str,
    pub log: bool,
}

/// Length, quality score, LID confidence and perplexity, as the stages
/// name their columns.
pub const MEASURES: [Measure; 4] = [
    Measure {
        column: "n_chars",
        title: "Length (characters)",
        log: true,
    },
    Measure {
        column: "curate_score",
        title: "Quality score (CURATE)",
        log: false,
    },
    Measure {
        column: "lang_score",
        title: "Language ID confidence",
        log: false,
    },
    Measure {
        column: "perplexity",
        title: "Perplexity",
        log: true,
    },
];

/// Quantiles and exact moments of one measure for one language.
#[derive(Debug, Clone, PartialEq)]
pub struct Dist {
    pub n: u64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    /// Quantiles come from a sample of this many documents (< n), if sampled.
    pub sampled: Option<usize>,
}

/// Accumulates one measure for one language: exact moments, and the
/// values of the [`SAMPLE`] documents with the smallest id hashes.
#[derive(Debug, Default)]
struct Acc {
    n: u64,
    sum: f64,
    min: f64,
    max: f64,
    /// Max-heap on (hash, value bits): the largest hash leaves first.
    keep: BinaryHeap<(u64, u64)>,
}

impl Acc {
    fn add(&mut self, hash: u64, v: f64) {
        if !v.is_finite() {
            return;
        }
        if self.n == 0 || v < self.min {
            self.min = v;
        }
        if self.n == 0 || v > self.max {
            self.max = v;
        }
        self.n += 1;
        self.sum += v;
        if self.keep.len() < SAMPLE {
            self.keep.push((hash, v.to_bits()));
        } else if self.keep.peek().is_some_and(|&(h, _)| hash < h) {
            self.keep.pop();
            self.keep.push((hash, v.to_bits()));
        }
    }

    fn dist(&self) -> Dist {
        let mut v: Vec<f64> = self.keep.iter().map(|&(_, b)| f64::from_bits(b)).collect();
        v.sort_by(f64::total_cmp);
        Dist {
            n: self.n,
            mean: self.sum / self.n as f64,
            min: self.min,
            max: self.max,
            q1: quantile(&v, 0.25),
            median: quantile(&v, 0.5),
            q3: quantile(&v, 0.75),
            sampled: ((v.len() as u64) < self.n).then_some(v.len()),
        }
    }
}

/// The `q` quantile of sorted values, interpolated linearly between the
/// two nearest ranks (numpy's and pandas' default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n => {
            let pos = q * (n - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

/// One measure's distributions.
#[derive(Debug, Clone)]
pub struct MeasureDists {
    pub measure: Measure,
    /// Per language (`und` for documents without one), then `all`.
    pub langs: BTreeMap<String, Dist>,
    pub all: Dist,
}

/// Tokens of one language in the training split.
#[derive(Debug, Clone, PartialEq)]
pub struct LangTokens {
    pub lang: String,
    pub documents: u64,
    pub tokens: u64,
    pub factor: f64,
    pub natural: f64,
    pub weighted: f64,
}

/// How many clusters of each size one dedup reason left.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Clusters {
    pub reason: &'static str,
    /// Cluster size (the kept document and its duplicates) → clusters.
    pub sizes: BTreeMap<u64, u64>,
    /// The largest clusters: (size, representative id), largest first.
    pub largest: Vec<(u64, String)>,
}

/// A drop or reject reason with its count and examples.
#[derive(Debug, Clone, PartialEq)]
pub struct ReasonRow {
    pub reason: &'static str,
    pub kind: &'static str,
    pub stage: String,
    pub documents: u64,
    pub bytes: u64,
    /// The smallest ids dropped for it, with the ledger's detail.
    pub samples: Vec<(String, String)>,
}

/// What the report shows.
#[derive(Debug, Clone)]
pub struct Report {
    pub stats: Stats,
    pub run: Option<RunManifest>,
    pub licences: BTreeMap<String, String>,
    pub tokens: Option<Vec<LangTokens>>,
    pub measures: Vec<MeasureDists>,
    /// Measures the Parquet output has no column for.
    pub missing_measures: Vec<Measure>,
    pub parquet_files: usize,
    pub clusters: Vec<Clusters>,
    pub reasons: Vec<ReasonRow>,
}

/// Reads everything the report needs from output folder `out`.
pub fn gather(out: &Path) -> Result<Report, ReportError> {
    let stats_path = out.join("stats.json");
    if !stats_path.is_file() {
        return Err(bad(
            out,
            "no stats.json: not the output folder of a finished forja run",
        ));
    }
    let stats: Stats = read_json(&stats_path)?;
    let run_path = out.join(RUN_MANIFEST);
    let run: Option<RunManifest> = if run_path.is_file() {
        Some(read_json(&run_path)?)
    } else {
        None
    };
    let licences = run.as_ref().map(RunManifest::licences).unwrap_or_default();
    let (clusters, reasons) = ledger(&out.join("ledger"))?;
    let (measures, missing_measures, parquet_files) = distributions(&out.join("parquet"))?;
    Ok(Report {
        stats,
        run,
        licences,
        tokens: tokens(out)?,
        measures,
        missing_measures,
        parquet_files,
        clusters,
        reasons,
    })
}

/// Writes `OUT/report.html` (through a temporary name) and returns its path.
pub fn write(out: &Path) -> Result<PathBuf, ReportError> {
    let r = gather(out)?;
    let path = out.join(REPORT);
    crate::files::atomic_write(&path, html::render(&r).as_bytes()).map_err(|source| {
        ReportError::Io {
            path: path.display().to_string(),
            source,
        }
    })?;
    Ok(path)
}

/// Tokens per language of the training split, before and after the
/// mixture's factors, from the Megatron families; `None` without them.
fn tokens(out: &Path) -> Result<Option<Vec<LangTokens>>, ReportError> {
    let dir = out.join(crate::files::MEGATRON_DIR);
    if !dir.join(crate::shards::blend::Families::FILE).is_file() {
        return Ok(None);
    }
    let fams = crate::shards::blend::Families::load(&dir).map_err(|e| bad(&dir, e))?;
    let b = crate::shards::blend::blend(&fams);
    Ok(Some(
        b.language_shares()
            .into_iter()
            .map(|s| LangTokens {
                lang: s.lang,
                documents: s.documents,
                tokens: s.tokens,
                factor: s.factor,
                natural: s.natural,
                weighted: s.weighted,
            })
            .collect(),
    ))
}

/// Drop reasons with samples, and duplicate cluster sizes, from every
/// rank's ledger file.
fn ledger(dir: &Path) -> Result<(Vec<Clusters>, Vec<ReasonRow>), ReportError> {
    let mut reasons: BTreeMap<Reason, ReasonRow> = BTreeMap::new();
    let mut reps: [HashMap<String, u64>; 2] = Default::default();
    for f in files_ending(dir, ".parquet")? {
        for r in crate::ledger::read_rows(&f).map_err(|e| bad(&f, e))? {
            // Kept documents whose text changed: in the funnel, not here.
            if r.reason.kind() == Kind::Modified {
                continue;
            }
            let e = reasons.entry(r.reason).or_insert_with(|| ReasonRow {
                reason: r.reason.as_str(),
                kind: r.reason.kind().as_str(),
                stage: r.stage.clone(),
                documents: 0,
                bytes: 0,
                samples: Vec::new(),
            });
            e.documents += 1;
            e.bytes += r.bytes;
            // The smallest ids, so the samples do not depend on file order.
            let at = e.samples.partition_point(|(id, _)| *id < r.id);
            if at < SAMPLE_IDS {
                e.samples.insert(at, (r.id.clone(), r.detail.clone()));
                e.samples.truncate(SAMPLE_IDS);
            }
            let slot = match r.reason {
                Reason::ExactDuplicate => 0,
                Reason::NearDuplicate => 1,
                _ => continue,
            };
            *reps[slot].entry(r.detail).or_default() += 1;
        }
    }
    let clusters = [Reason::ExactDuplicate, Reason::NearDuplicate]
        .into_iter()
        .zip(reps)
        .map(|(reason, reps)| {
            let mut c = Clusters {
                reason: reason.as_str(),
                ..Default::default()
            };
            let mut all: Vec<(u64, String)> = reps.into_iter().map(|(id, n)| (n + 1, id)).collect();
            for (size, _) in &all {
                *c.sizes.entry(*size).or_default() += 1;
            }
            all.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            all.truncate(10);
            c.largest = all;
            c
        })
        .collect();
    let mut rows: Vec<ReasonRow> = reasons.into_values().collect();
    rows.sort_by(|a, b| b.documents.cmp(&a.documents).then(a.reason.cmp(b.reason)));
    Ok((clusters, rows))
}

/// A column as f64 values, for the numeric types stages write.
fn floats(a: &dyn Array) -> Option<Vec<Option<f64>>> {
    let v = |i: usize, x: f64| (!a.is_null(i)).then_some(x);
    Some(match a.data_type() {
        DataType::Float64 => {
            let p = a.as_primitive::<Float64Type>();
            (0..a.len()).map(|i| v(i, p.value(i))).collect()
        }
        DataType::UInt64 => {
            let p = a.as_primitive::<UInt64Type>();
            (0..a.len()).map(|i| v(i, p.value(i) as f64)).collect()
        }
        DataType::UInt32 => {
            let p = a.as_primitive::<UInt32Type>();
            (0..a.len()).map(|i| v(i, p.value(i) as f64)).collect()
        }
        _ => return None,
    })
}

type Dists = (Vec<MeasureDists>, Vec<Measure>, usize);

/// Distributions of [`MEASURES`] per language over the Parquet output.
fn distributions(dir: &Path) -> Result<Dists, ReportError> {
    let paths = files_ending(dir, ".parquet")?;
    let mut accs: Vec<BTreeMap<String, Acc>> = MEASURES.iter().map(|_| BTreeMap::new()).collect();
    let mut alls: Vec<Acc> = MEASURES.iter().map(|_| Acc::default()).collect();
    let mut seen = [false; MEASURES.len()];
    for p in &paths {
        let file = std::fs::File::open(p).map_err(|source| ReportError::Io {
            path: p.display().to_string(),
            source,
        })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(p, e))?;
        let wanted = ["id", "lang"]
            .into_iter()
            .chain(MEASURES.iter().map(|m| m.column));
        let mask = ProjectionMask::columns(builder.parquet_schema(), wanted);
        let reader = builder
            .with_projection(mask)
            .build()
            .map_err(|e| bad(p, e))?;
        for b in reader {
            let b: RecordBatch = b.map_err(|e| bad(p, e))?;
            let ids = b
                .column_by_name("id")
                .ok_or_else(|| bad(p, "no `id` column: not forja's Parquet output"))?
                .as_string::<i32>();
            let langs = b
                .column_by_name("lang")
                .map(|c| c.as_string::<i32>().clone());
            let hashes: Vec<u64> = (0..b.num_rows())
                .map(|i| xxhash_rust::xxh3::xxh3_64(ids.value(i).as_bytes()))
                .collect();
            for (k, m) in MEASURES.iter().enumerate() {
                let Some(col) = b.column_by_name(m.column) else {
                    continue;
                };
                let vals = floats(col.as_ref()).ok_or_else(|| {
                    bad(
                        p,
                        format!("column `{}` is {}, not a number", m.column, col.data_type()),
                    )
                })?;
                seen[k] = true;
                for (i, v) in vals.into_iter().enumerate() {
                    let Some(v) = v else { continue };
                    let lang = match &langs {
                        Some(l) if !l.is_null(i) => l.value(i),
                        _ => "und",
                    };
                    match accs[k].get_mut(lang) {
                        Some(a) => a.add(hashes[i], v),
                        None => accs[k]
                            .entry(lang.to_string())
                            .or_default()
                            .add(hashes[i], v),
                    }
                    alls[k].add(hashes[i], v);
                }
            }
        }
    }
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for (k, m) in MEASURES.iter().enumerate() {
        if !seen[k] || alls[k].n == 0 {
            missing.push(*m);
            continue;
        }
        present.push(MeasureDists {
            measure: *m,
            langs: accs[k].iter().map(|(l, a)| (l.clone(), a.dist())).collect(),
            all: alls[k].dist(),
        });
    }
    Ok((present, missing, paths.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 0.25), 1.75);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert_eq!(quantile(&[7.0], 0.75), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn the_sample_keeps_the_smallest_hashes_in_any_order() {
        let n = SAMPLE as u64 + 5000;
        let mut fwd = Acc::default();
        let mut rev = Acc::default();
        for i in 0..n {
            fwd.add(xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()), i as f64);
        }
        for i in (0..n).rev() {
            rev.add(xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()), i as f64);
        }
        let (a, b) = (fwd.dist(), rev.dist());
        assert_eq!(a, b);
        assert_eq!(a.n, n);
        assert_eq!(a.sampled, Some(SAMPLE));
        assert_eq!((a.min, a.max), (0.0, (n - 1) as f64));
        assert!((a.mean - (n - 1) as f64 / 2.0).abs() < 1e-6);
        // A hash sample of 0..n has its median near the middle.
        assert!((a.median - n as f64 / 2.0).abs() < n as f64 * 0.01, "{a:?}");
        let mut small = Acc::default();
        for (i, v) in [3.0, 1.0, 2.0, f64::NAN].into_iter().enumerate() {
            small.add(i as u64, v);
        }
        let d = small.dist();
        assert_eq!((d.n, d.median, d.sampled), (3, 2.0, None));
    }
}
