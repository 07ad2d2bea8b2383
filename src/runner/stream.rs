//! The streaming pass: a reader thread, rayon workers and a writer thread
//! joined by bounded channels (see the runner's module doc). Each pass of a
//! run, scan or final, is one call of [`stream()`]; what the writer thread
//! does with each unit is the sink's (`sink.rs`).

use super::phases::{phased_err, Pass};
use super::sink::{Processed, ProcessedKind, ProgressLog, UnitWriter};
use super::*;
use crate::phased::BatchInput;

/// Streams `todo` through `stages`: reader thread, workers, writer thread.
pub(super) fn stream(
    ctx: &Ctx,
    stages: &mut [Box<dyn Stage>],
    passes: &mut [Option<Pass>],
    todo: &[Unit],
    sink: &Sink,
    label: &str,
) -> Result<Vec<Stats>, RunError> {
    let m = ctx.m;
    let specs: Vec<Arc<SourceSpec>> = m
        .manifest
        .sources
        .iter()
        .map(|s| Arc::new(SourceSpec::new(s, &m.manifest.reader)))
        .collect();
    let progress = Arc::new(AtomicU64::new(0));
    let input_bytes: u64 = todo.iter().map(Unit::bytes).sum();
    let bar = progress_bar(ctx.opts.progress, input_bytes, label);
    let cap = ctx.opts.threads.max(1) * 2;
    let (chunk_tx, chunk_rx) = bounded::<Item>(cap);
    let (done_tx, done_rx) = bounded::<Processed>(cap);
    let formats = match sink {
        Sink::Output => m.manifest.output.formats.clone(),
        Sink::Scan(_) => Vec::new(),
    };
    let source_names: Vec<String> = m.manifest.sources.iter().map(|s| s.name.clone()).collect();
    let stage_names: Vec<&str> = stages.iter().map(|s| s.name()).collect();
    let shard_bytes = m.manifest.output.shard_bytes;
    let level = m.manifest.output.zstd_level;
    let megatron = formats
        .contains(&crate::manifest::OutputFormat::Megatron)
        .then_some(&m.manifest.output.megatron);
    let sources_fmt: Vec<_> = m.manifest.sources.iter().map(|s| s.format).collect();
    let unit_stats = std::thread::scope(|scope| -> Result<Vec<Stats>, RunError> {
        let reader = {
            let specs = &specs;
            let reader_cfg = &m.manifest.reader;
            let progress = progress.clone();
            let sources_fmt = &sources_fmt;
            scope.spawn(move || {
                read_units(
                    todo,
                    &ctx.m.manifest.sources,
                    sources_fmt,
                    specs,
                    reader_cfg,
                    progress,
                    chunk_tx,
                )
            })
        };
        let writer = {
            let stage_names = &stage_names;
            let source_names = &source_names;
            let formats = &formats;
            let bar = bar.clone();
            let progress = progress.clone();
            scope.spawn(move || {
                let mut w = UnitWriter {
                    layout: ctx.layout,
                    sink,
                    stage_names,
                    source_names,
                    formats,
                    shard_bytes,
                    level,
                    megatron,
                    sources: &m.manifest.sources,
                    current: None,
                    finished: Vec::new(),
                    bar,
                    progress,
                    docs: 0,
                    log: ctx.opts.log_every.map(|every| ProgressLog {
                        every,
                        last: std::time::Instant::now(),
                        units: todo.len(),
                        bytes: input_bytes,
                        unit_bytes: todo.iter().map(|u| (u.index, u.bytes())).collect(),
                        done_bytes: 0,
                    }),
                };
                for p in done_rx {
                    w.take(p)?;
                }
                Ok::<_, RunError>(w.finished)
            })
        };
        let jsonl_level = formats
            .contains(&crate::manifest::OutputFormat::JsonlZst)
            .then_some(level);
        let formats = &formats;
        let nanos = &ctx.stage_nanos;
        let worked = ctx.pool.install(|| {
            work(
                stages,
                passes,
                &specs,
                jsonl_level,
                formats,
                chunk_rx,
                done_tx,
                cap,
                nanos,
            )
        });
        let written = writer.join().expect("writer thread panicked");
        let read = reader.join().expect("reader thread panicked");
        // The first failure in flow order is the cause; later ones are its echoes.
        read?;
        worked?;
        written
    })?;
    bar.finish_and_clear();
    Ok(unit_stats)
}

/// A bar of input bytes, labelled `label` (hidden when not `enabled`).
pub fn progress_bar(enabled: bool, total: u64, label: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} of input files, {binary_bytes_per_sec}, ETA {eta}, {msg}",
        )
        .expect("valid template"),
    );
    bar.set_prefix(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// What flows from the reader to the workers.
enum Item {
    Chunk {
        unit: usize,
        source: usize,
        chunk: Chunk,
    },
    UnitEnd {
        unit: usize,
        source: usize,
    },
}

#[allow(clippy::too_many_arguments)]
fn read_units(
    todo: &[Unit],
    sources: &[crate::manifest::SourceConfig],
    formats: &[crate::manifest::InputFormat],
    specs: &[Arc<SourceSpec>],
    cfg: &crate::manifest::ReaderConfig,
    progress: Arc<AtomicU64>,
    tx: Sender<Item>,
) -> Result<(), RunError> {
    let mut pending = VecDeque::new();
    for u in todo {
        // A stop asked for by a signal: no new unit; those read are committed.
        if let Some(signal) = interrupt::requested() {
            tracing::warn!("signal {signal}: stopping before unit {}", u.index);
            return Err(RunError::Interrupted { signal });
        }
        // Input objects are fetched here, one unit ahead of nothing: the
        // copy lives while the unit is read.
        let (u, _cached) = io::localize(u, &sources[u.source])?;
        let u = &u;
        let mut r = io::open_unit(
            u,
            formats[u.source],
            specs[u.source].clone(),
            cfg,
            progress.clone(),
        );
        let mut more = true;
        while more {
            more = r.step(&mut pending)?;
            for chunk in pending.drain(..) {
                let item = Item::Chunk {
                    unit: u.index,
                    source: u.source,
                    chunk,
                };
                if tx.send(item).is_err() {
                    return Ok(()); // downstream stopped; its error is reported there
                }
            }
        }
        let end = Item::UnitEnd {
            unit: u.index,
            source: u.source,
        };
        if tx.send(end).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn work(
    stages: &mut [Box<dyn Stage>],
    passes: &mut [Option<Pass>],
    specs: &[Arc<SourceSpec>],
    jsonl_level: Option<i32>,
    formats: &[crate::manifest::OutputFormat],
    rx: Receiver<Item>,
    tx: Sender<Processed>,
    window: usize,
    nanos: &[AtomicU64],
) -> Result<(), RunError> {
    while let Ok(first) = rx.recv() {
        let mut items = vec![first];
        while items.len() < window {
            match rx.try_recv() {
                Ok(i) => items.push(i),
                Err(_) => break,
            }
        }
        let processed = process_window(stages, passes, specs, jsonl_level, formats, items, nanos)?;
        for p in processed {
            if tx.send(p).is_err() {
                return Ok(()); // the writer failed; it reports why
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn process_window(
    stages: &mut [Box<dyn Stage>],
    passes: &mut [Option<Pass>],
    specs: &[Arc<SourceSpec>],
    jsonl_level: Option<i32>,
    formats: &[crate::manifest::OutputFormat],
    items: Vec<Item>,
    nanos: &[AtomicU64],
) -> Result<Vec<Processed>, RunError> {
    // Decode in parallel.
    let mut procs: Vec<Processed> = items
        .into_par_iter()
        .map(|item| match item {
            Item::UnitEnd { unit, source } => Processed {
                unit,
                source,
                kind: ProcessedKind::UnitEnd,
            },
            Item::Chunk {
                unit,
                source,
                chunk,
            } => {
                let file_end = match &chunk {
                    Chunk::FileEnd {
                        file,
                        status,
                        detail,
                    } => Some((file.clone(), *status, detail.clone())),
                    _ => None,
                };
                let d = io::decode(chunk, &specs[source]);
                let (rows, bytes) = d
                    .batch
                    .as_ref()
                    .map_or((0, 0), |b| (b.num_rows() as u64, batch::text_bytes(b)));
                Processed {
                    unit,
                    source,
                    kind: ProcessedKind::Data {
                        batch: d.batch,
                        read_docs: rows + d.rejects.len() as u64,
                        read_bytes: bytes,
                        ledger: d.rejects.into_iter().map(|r| (0, r)).collect(),
                        flow: Vec::with_capacity(stages.len()),
                        blank_lines: d.blank_lines,
                        skipped_records: d.skipped_records,
                        file_end,
                        jsonl: None,
                    },
                }
            }
        })
        .collect();

    for (si, stage) in stages.iter_mut().enumerate() {
        let t = Instant::now();
        // Pure part, in parallel.
        let mut outs: Vec<Option<StageOutput>> = {
            let stage: &dyn Stage = stage.as_ref();
            procs
                .par_iter()
                .map(|p| match &p.kind {
                    ProcessedKind::Data { batch: Some(b), .. } => stage.process(b).map(Some),
                    _ => Ok(None),
                })
                .collect::<Result<_, _>>()?
        };
        // The engine's part of a phased stage, in input order: the scan's
        // writer takes what `process` found, or the apply's reader hands
        // each batch what was decided for its rows.
        let name = stage.name();
        let mut inputs: Vec<Option<BatchInput>> = Vec::new();
        match &mut passes[si] {
            None if stage.global().is_some() => {
                return Err(RunError::Stage(StageError::Failed {
                    stage: name.into(),
                    message: "a global stage ran outside its phases".into(),
                }));
            }
            None => {}
            Some(Pass::Scan(w)) => {
                let records = stage.global().and_then(|g| g.records());
                for (p, out) in procs.iter().zip(outs.iter_mut()) {
                    match (&p.kind, out) {
                        (ProcessedKind::Data { batch: Some(b), .. }, Some(out)) => {
                            let scanned = out.scan.take().ok_or_else(|| {
                                RunError::Stage(StageError::Failed {
                                    stage: name.into(),
                                    message: "its scan returned nothing".into(),
                                })
                            })?;
                            let ids = batch::Core::of(b).id;
                            w.add(p.unit, &|r| ids.value(r), scanned, records)
                                .map_err(phased_err(name))?;
                        }
                        (ProcessedKind::UnitEnd, _) => {
                            w.end(p.unit, records).map_err(phased_err(name))?
                        }
                        _ => {}
                    }
                }
            }
            Some(Pass::Apply(r)) => {
                inputs = procs
                    .iter()
                    .map(|p| match &p.kind {
                        ProcessedKind::Data { batch: Some(b), .. } => {
                            r.take(p.unit, b.num_rows()).map(Some)
                        }
                        ProcessedKind::UnitEnd => r.end(p.unit).map(|_| None),
                        _ => Ok(None),
                    })
                    .collect::<Result<_, _>>()
                    .map_err(phased_err(name))?;
            }
        }
        // A phased stage's apply, in parallel.
        if !inputs.is_empty() {
            let g: &dyn stages::Global = stage.global().expect("a phased stage");
            procs
                .par_iter()
                .zip(outs.par_iter_mut())
                .zip(inputs.into_par_iter())
                .try_for_each(|((p, out), input)| match (&p.kind, out, input) {
                    (ProcessedKind::Data { batch: Some(b), .. }, Some(out), Some(input)) => {
                        g.apply(b, input, out)
                    }
                    _ => Ok(()),
                })?;
        }
        // Apply columns and drops, in parallel.
        let stage: &dyn Stage = stage.as_ref();
        procs
            .par_iter_mut()
            .zip(outs.into_par_iter())
            .try_for_each(|(p, out)| -> Result<(), StageError> {
                if let (
                    ProcessedKind::Data {
                        batch,
                        ledger,
                        flow,
                        ..
                    },
                    Some(out),
                ) = (&mut p.kind, out)
                {
                    let b = batch.take().expect("data with output has a batch");
                    let (din, bin) = (b.num_rows() as u64, batch::text_bytes(&b));
                    let applied = stages::apply(stage, b, out)?;
                    let out_bytes = batch::text_bytes(&applied.batch);
                    flow.push((din, bin, applied.batch.num_rows() as u64, out_bytes));
                    ledger.extend(applied.ledger.into_iter().map(|r| (si + 1, r)));
                    *batch = Some(applied.batch);
                }
                Ok(())
            })?;
        nanos[si].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
    // A document one stage changed and a later one dropped is a drop, not
    // a kept document whose text changed: its `modified` row goes.
    procs.par_iter_mut().for_each(|p| {
        if let ProcessedKind::Data { ledger, .. } = &mut p.kind {
            if ledger
                .iter()
                .any(|(_, r)| r.reason.kind() == ledger::Kind::Modified)
            {
                let dropped: std::collections::HashSet<String> = ledger
                    .iter()
                    .filter(|(_, r)| r.reason.kind() != ledger::Kind::Modified)
                    .map(|(_, r)| r.id.clone())
                    .collect();
                ledger.retain(|(_, r)| {
                    r.reason.kind() != ledger::Kind::Modified || !dropped.contains(&r.id)
                });
            }
        }
    });
    // Encode the JSONL output here, in parallel, rather than in the writer.
    if let Some(level) = jsonl_level {
        procs
            .par_iter_mut()
            .try_for_each(|p| -> Result<(), RunError> {
                if let ProcessedKind::Data {
                    batch: Some(b),
                    jsonl,
                    ..
                } = &mut p.kind
                {
                    if b.num_rows() > 0 {
                        let b = io::for_documents(b, formats);
                        *jsonl = Some(io::jsonl_frame(&b, level).map_err(|e| RunError::Io {
                            path: "<jsonl encoder>".into(),
                            source: e,
                        })?);
                    }
                }
                Ok(())
            })?;
    }
    Ok(procs)
}
