//! The sink: the writer thread's side of a pass. It takes processed
//! batches in input order and writes each unit's shards, ledger rows and
//! stats, then its marker (a finished unit of the final pass, or a scanned
//! unit of a global stage's scan).

use super::*;

/// A window item after decoding and stages.
pub(super) struct Processed {
    pub(super) unit: usize,
    pub(super) source: usize,
    pub(super) kind: ProcessedKind,
}

pub(super) enum ProcessedKind {
    Data {
        batch: Option<RecordBatch>,
        /// Documents and text bytes that came out of the reader (rejects included in docs).
        read_docs: u64,
        read_bytes: u64,
        /// (stage index + 1, or 0 for the reader; row)
        ledger: Vec<(usize, LedgerRow)>,
        /// Per stage: (docs in, bytes in, docs out, bytes out).
        flow: Vec<(u64, u64, u64, u64)>,
        blank_lines: u64,
        skipped_records: u64,
        file_end: Option<(Arc<str>, ledger::FileStatus, Option<String>)>,
        /// The kept batch as a compressed JSONL frame, when JSONL is written.
        jsonl: Option<Vec<u8>>,
    },
    UnitEnd,
}

/// Where a pass's documents go.
pub(super) enum Sink<'a> {
    /// Output shards, ledger and unit markers.
    Output,
    /// Nowhere: the last stage is a global stage collecting keys; each unit
    /// ends with a scan marker.
    Scan(&'a GlobalDir),
}

/// The writer's view of the unit being written.
pub(super) struct OpenUnit {
    unit: usize,
    shards: ShardWriter,
    stats: Stats,
    ledger: Vec<LedgerRow>,
    file_docs: u64,
    file_blank: u64,
    file_skipped: u64,
}

pub(super) struct UnitWriter<'a> {
    pub(super) layout: &'a units::Layout,
    pub(super) sink: &'a Sink<'a>,
    pub(super) stage_names: &'a [&'a str],
    pub(super) source_names: &'a [String],
    pub(super) formats: &'a [crate::manifest::OutputFormat],
    pub(super) shard_bytes: u64,
    pub(super) level: i32,
    pub(super) megatron: Option<&'a crate::manifest::MegatronConfig>,
    pub(super) sources: &'a [crate::manifest::SourceConfig],
    pub(super) current: Option<OpenUnit>,
    pub(super) finished: Vec<Stats>,
    pub(super) bar: ProgressBar,
    pub(super) progress: Arc<AtomicU64>,
    pub(super) docs: u64,
    /// Progress lines for logs: how often, when the last was, and the
    /// units and input bytes of this run.
    pub(super) log: Option<ProgressLog>,
}

/// Progress as log lines, where no bar is drawn (batch jobs, pipes).
pub(super) struct ProgressLog {
    pub(super) every: std::time::Duration,
    pub(super) last: std::time::Instant,
    pub(super) units: usize,
    pub(super) bytes: u64,
    /// Input bytes of each unit of this run, by unit index, and of those
    /// finished: the ETA comes from them.
    pub(super) unit_bytes: std::collections::HashMap<usize, u64>,
    pub(super) done_bytes: u64,
}

impl UnitWriter<'_> {
    pub(super) fn take(&mut self, p: Processed) -> Result<(), RunError> {
        if self.current.as_ref().map(|c| c.unit) != Some(p.unit) {
            self.current = Some(OpenUnit {
                unit: p.unit,
                shards: ShardWriter::new(
                    &self.layout.root,
                    &self.source_names[p.source],
                    p.unit,
                    self.formats,
                    self.shard_bytes,
                    self.level,
                    self.megatron.map(|cfg| {
                        crate::shards::UnitParts::new(
                            &self.layout.parts_dir(p.unit),
                            cfg,
                            self.sources[p.source].language.as_deref(),
                            &self.sources[p.source].licence,
                        )
                    }),
                ),
                stats: Stats::new(self.stage_names),
                ledger: Vec::new(),
                file_docs: 0,
                file_blank: 0,
                file_skipped: 0,
            });
        }
        let source = &self.source_names[p.source];
        let cur = self.current.as_mut().expect("set above");
        match p.kind {
            ProcessedKind::Data {
                batch,
                read_docs,
                read_bytes,
                ledger,
                flow,
                blank_lines,
                skipped_records,
                file_end,
                jsonl,
            } => {
                let rejects = ledger.iter().filter(|(s, _)| *s == 0).count() as u64;
                cur.stats.read_many(source, read_docs, read_bytes);
                cur.stats
                    .stage_flow(0, 0, 0, (read_docs - rejects, read_bytes));
                for (i, f) in flow.iter().enumerate() {
                    cur.stats.stage_flow(i + 1, f.0, f.1, (f.2, f.3));
                }
                for (stage, row) in ledger {
                    cur.stats.ledger(stage, &row);
                    cur.ledger.push(row);
                }
                cur.file_docs += read_docs;
                cur.file_blank += blank_lines;
                cur.file_skipped += skipped_records;
                self.docs += read_docs;
                if let Some(b) = batch {
                    cur.stats
                        .keep_many(source, b.num_rows() as u64, batch::text_bytes(&b));
                    let path = self.layout.root.clone();
                    cur.shards
                        .write(&b, jsonl.as_deref())
                        .map_err(io_err(&path))?;
                }
                if let Some((file, status, detail)) = file_end {
                    if status == ledger::FileStatus::Truncated {
                        tracing::warn!(
                            "{file}: {}; kept what was read before the damage",
                            detail.as_deref().unwrap_or("truncated")
                        );
                    }
                    cur.stats.files.push(FileStats {
                        source: source.clone(),
                        path: file.to_string(),
                        documents: std::mem::take(&mut cur.file_docs),
                        blank_lines: std::mem::take(&mut cur.file_blank),
                        skipped_records: std::mem::take(&mut cur.file_skipped),
                        status,
                        detail,
                    });
                }
            }
            ProcessedKind::UnitEnd => {
                let cur = self.current.take().expect("unit open");
                let outputs = cur.shards.finish().map_err(io_err(&self.layout.root))?;
                match self.sink {
                    Sink::Output => {
                        self.layout
                            .commit_unit(cur.unit, &cur.stats, &cur.ledger, &outputs)?
                    }
                    Sink::Scan(dir) => {
                        let docs = cur.stats.stages.last().map_or(0, |s| s.docs_in);
                        dir.write_marker(
                            &dir.scan_marker(cur.unit),
                            [("documents".to_string(), docs)].into(),
                        )
                        .map_err(phases::phased_err("scan"))?
                    }
                }
                if let Some(log) = &mut self.log {
                    log.done_bytes += log.unit_bytes.get(&cur.unit).copied().unwrap_or(0);
                }
                self.finished.push(cur.stats);
            }
        }
        let read = self.progress.load(Ordering::Relaxed);
        self.bar.set_position(read);
        let secs = self.bar.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{} docs, {:.0} docs/s",
            self.docs,
            self.docs as f64 / secs
        ));
        if let Some(log) = &mut self.log {
            if log.last.elapsed() >= log.every {
                log.last = std::time::Instant::now();
                // Finished units are the honest measure of what is done
                // (input is read ahead of the work).
                let done = self.finished.len();
                let eta = if log.done_bytes == 0 {
                    "unknown".to_string()
                } else {
                    let left = log.bytes.saturating_sub(log.done_bytes) as f64;
                    format!("{:.0}s", secs * left / log.done_bytes as f64)
                };
                tracing::info!(
                    target: "forja::progress",
                    "{done}/{} units done, {} documents, {:.1} of {:.1} MB of input read, {:.1} MB/s, {:.0} docs/s, ETA {eta}",
                    log.units,
                    self.docs,
                    read as f64 / 1e6,
                    log.bytes as f64 / 1e6,
                    read as f64 / 1e6 / secs,
                    self.docs as f64 / secs,
                );
            }
        }
        Ok(())
    }
}
