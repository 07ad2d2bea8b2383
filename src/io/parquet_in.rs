//! Parquet input, e.g. a Hugging Face dataset's `data/train-*.parquet`.
//!
//! Row groups are decoded in batches sized from the file's own metadata so a
//! batch holds about `batch_bytes` of data. Columns other than text and url
//! become the `metadata` JSON object when they are scalars.
//!
//! Each row group is read by a reader of its own: a damaged page rejects the
//! rest of its row group (each row into the ledger, with the cause) and
//! reading goes on with the next group, so one bad page does not cost the
//! whole file.

use std::collections::VecDeque;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};

use super::SourceConfig;
use super::{Chunk, InputError, InputFile, ReadError, Reader, SourceSpec};
use crate::batch::CoreBuilder;
use crate::ledger::{FileStatus, Reason};

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Checks that a Parquet file opens and has the configured columns.
pub fn check_schema(path: &Path, source: &SourceConfig) -> Result<(), InputError> {
    let bad = |message: String| InputError::BadParquet {
        path: path.display().to_string(),
        message,
    };
    let file = File::open(path).map_err(|e| InputError::Unreadable {
        path: path.display().to_string(),
        source: e,
    })?;
    let builder = std::panic::catch_unwind(|| ParquetRecordBatchReaderBuilder::try_new(file))
        .map_err(|_| bad("the Parquet footer could not be decoded".into()))?
        .map_err(|e| bad(e.to_string()))?;
    let schema = builder.schema();
    let mut fields = vec![&source.text_field];
    fields.extend(source.url_field.as_ref());
    for name in fields {
        match schema.field_with_name(name) {
            Ok(f) if is_string(f.data_type()) => {}
            Ok(f) => {
                return Err(bad(format!(
                    "column `{name}` is {}, not a string",
                    f.data_type()
                )))
            }
            Err(_) => {
                let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(bad(format!(
                    "no column `{name}` (columns: {})",
                    have.join(", ")
                )));
            }
        }
    }
    Ok(())
}

pub struct ParquetReader {
    file: InputFile,
    spec: Arc<SourceSpec>,
    batch_bytes: usize,
    progress: Arc<AtomicU64>,
    /// The open file, its metadata and rows per batch, once opened.
    opened: Option<(File, ArrowReaderMetadata, usize)>,
    /// The reader of the current row group.
    reader: Option<ParquetRecordBatchReader>,
    /// Rows of each row group, as the footer claims.
    groups: Vec<u64>,
    /// The next row group to open.
    next_group: usize,
    /// 1-based row number just past the current row group.
    group_end: u64,
    total_rows: u64,
    /// 1-based row number of the next row.
    next_row: u64,
    reported_bytes: u64,
    /// The first damage met, for the file's status.
    damage: Option<String>,
}

/// Rows of one damaged row group listed one by one in the ledger at most;
/// a footer claiming more is not believed.
const MAX_LISTED_ROWS: u64 = 1 << 24;

impl ParquetReader {
    pub fn new(
        file: InputFile,
        spec: Arc<SourceSpec>,
        batch_bytes: usize,
        progress: Arc<AtomicU64>,
    ) -> Self {
        ParquetReader {
            file,
            spec,
            batch_bytes,
            progress,
            opened: None,
            reader: None,
            groups: Vec::new(),
            next_group: 0,
            group_end: 1,
            total_rows: 0,
            next_row: 1,
            reported_bytes: 0,
            damage: None,
        }
    }

    fn open(&mut self) -> Result<(), ReadError> {
        let path = self.file.path.display().to_string();
        let file = File::open(&self.file.path).map_err(|e| ReadError::Open {
            path: path.clone(),
            source: e,
        })?;
        let meta =
            std::panic::catch_unwind(|| ArrowReaderMetadata::load(&file, Default::default()))
                .unwrap_or_else(|_| {
                    Err(parquet::errors::ParquetError::General(
                        "the Parquet footer could not be decoded".into(),
                    ))
                })
                .map_err(|e| ReadError::Parquet {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
        let md = meta.metadata();
        self.groups = md
            .row_groups()
            .iter()
            .map(|g| g.num_rows().max(0) as u64)
            .collect();
        self.total_rows = self.groups.iter().sum();
        let bytes: i64 = md.row_groups().iter().map(|g| g.total_byte_size()).sum();
        let per_row = (bytes.max(1) as u64 / self.total_rows.max(1)).max(1);
        let rows = (self.batch_bytes as u64 / per_row).clamp(1, 65_536) as usize;
        self.opened = Some((file, meta, rows));
        Ok(())
    }

    /// Opens the next row group's reader; false when none is left.
    fn open_group(&mut self) -> Result<bool, String> {
        let Some(&rows) = self.groups.get(self.next_group) else {
            return Ok(false);
        };
        let g = self.next_group;
        self.next_group += 1;
        self.next_row = self.group_end;
        self.group_end = self.next_row + rows;
        let (file, meta, batch) = self.opened.as_ref().expect("opened");
        let file = file.try_clone().map_err(|e| e.to_string())?;
        self.reader = Some(
            ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
                .with_row_groups(vec![g])
                .with_batch_size(*batch)
                .build()
                .map_err(|e| e.to_string())?,
        );
        Ok(true)
    }

    /// Rejects the rest of the current row group, each row with the cause.
    fn reject_rest_of_group(&mut self, error: &str, out: &mut VecDeque<Chunk>) {
        let group = self.next_group.saturating_sub(1);
        let detail = format!(
            "row group {group}: cannot decode rows {} to {}: {error}",
            self.next_row,
            self.group_end.saturating_sub(1)
        );
        self.damage.get_or_insert_with(|| detail.clone());
        let n = self.group_end.saturating_sub(self.next_row);
        if n > MAX_LISTED_ROWS {
            // A footer that claims this many rows is itself damage: one row
            // stands for the group, and the rest of the file is not read.
            out.push_back(Chunk::Rejects(vec![self.spec.reject(
                &self.file.rel,
                self.next_row,
                Reason::ReadError,
                format!("{detail} (the footer claims {n} rows; not listed one by one)"),
            )]));
            self.next_group = self.groups.len();
        } else {
            let rows: Vec<_> = (self.next_row..self.group_end)
                .map(|line| {
                    self.spec
                        .reject(&self.file.rel, line, Reason::ReadError, detail.clone())
                })
                .collect();
            if !rows.is_empty() {
                out.push_back(Chunk::Rejects(rows));
            }
        }
        self.next_row = self.group_end;
        self.reader = None;
    }

    fn report_progress(&mut self) {
        let done = self.file.size * (self.next_row - 1) / self.total_rows.max(1);
        let add = done.saturating_sub(self.reported_bytes);
        self.reported_bytes += add;
        self.progress.fetch_add(add, Ordering::Relaxed);
    }

    fn convert(&mut self, rb: &RecordBatch, out: &mut VecDeque<Chunk>) {
        let spec = self.spec.clone();
        let schema = rb.schema();
        let col = |name: &str| schema.index_of(name).ok().map(|i| rb.column(i).clone());
        // Checked when planning, but the file may have changed since: rows
        // without the column are rejected, not a panic.
        let text = col(&spec.text_field)
            .unwrap_or_else(|| arrow_array::new_null_array(&DataType::Utf8, rb.num_rows()));
        let url = spec.url_field.as_deref().and_then(col);
        let others: Vec<(String, arrow_array::ArrayRef)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                f.name() != &spec.text_field && Some(f.name().as_str()) != spec.url_field.as_deref()
            })
            .map(|(i, f)| (f.name().clone(), rb.column(i).clone()))
            .collect();
        let mut builder = CoreBuilder::with_capacity(rb.num_rows(), self.batch_bytes);
        let mut rejects = Vec::new();
        let mut meta = String::new();
        for row in 0..rb.num_rows() {
            let line = self.next_row + row as u64;
            let reject = |reason, detail: String| spec.reject(&self.file.rel, line, reason, detail);
            let Some(t) = str_at(text.as_ref(), row) else {
                rejects.push(reject(
                    Reason::MissingTextField,
                    format!("column `{}` is null", spec.text_field),
                ));
                continue;
            };
            if t.is_empty() {
                rejects.push(reject(
                    Reason::EmptyText,
                    format!("column `{}` is empty", spec.text_field),
                ));
                continue;
            }
            if t.len() as u64 > spec.max_doc_bytes {
                rejects.push(reject(
                    Reason::TooLarge,
                    format!(
                        "{} bytes > reader.max_doc_bytes {}",
                        t.len(),
                        spec.max_doc_bytes
                    ),
                ));
                continue;
            }
            meta.clear();
            for (name, array) in &others {
                if let Some(v) = json_scalar(array.as_ref(), row) {
                    meta.push(if meta.is_empty() { '{' } else { ',' });
                    meta.push_str(&serde_json::to_string(name).expect("strings serialize"));
                    meta.push(':');
                    meta.push_str(&v);
                }
            }
            if !meta.is_empty() {
                meta.push('}');
            }
            let url = url.as_ref().and_then(|u| str_at(u.as_ref(), row));
            builder.push(
                &spec.name,
                &self.file.rel,
                line,
                t,
                url,
                (!meta.is_empty()).then_some(meta.as_str()),
            );
        }
        self.next_row += rb.num_rows() as u64;
        if !builder.is_empty() {
            out.push_back(Chunk::Batch(builder.finish()));
        }
        if !rejects.is_empty() {
            out.push_back(Chunk::Rejects(rejects));
        }
    }
}

impl Reader for ParquetReader {
    fn step(&mut self, out: &mut VecDeque<Chunk>) -> Result<bool, ReadError> {
        if self.opened.is_none() {
            self.open()?;
        }
        if self.reader.is_none() {
            match self.open_group() {
                Ok(true) => {}
                Ok(false) => {
                    let status = if self.damage.is_some() {
                        FileStatus::Truncated
                    } else {
                        FileStatus::Complete
                    };
                    out.push_back(Chunk::FileEnd {
                        file: self.file.rel.clone(),
                        status,
                        detail: self.damage.take(),
                    });
                    self.opened = None;
                    return Ok(false);
                }
                Err(e) => {
                    self.reject_rest_of_group(&e, out);
                    return Ok(true);
                }
            }
        }
        // The Parquet decoder can panic on a crafted file (seen by the fuzzer:
        // "Decoder for dict should have been set"): that costs the row group.
        let reader = self.reader.as_mut().expect("opened");
        let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.next()))
            .unwrap_or_else(|p| {
                let why = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the decoder failed".into());
                Some(Err(parquet::errors::ParquetError::General(format!(
                    "the Parquet decoder failed: {why}"
                ))
                .into()))
            });
        match next {
            Some(Ok(rb)) if self.next_row + rb.num_rows() as u64 <= self.group_end => {
                self.convert(&rb, out);
                self.report_progress();
            }
            Some(Ok(rb)) => {
                let e = format!("{} more rows than the footer gives", rb.num_rows());
                self.reject_rest_of_group(&e, out);
            }
            // Rows that could not be decoded are each rejected, so none goes missing.
            Some(Err(e)) => self.reject_rest_of_group(&e.to_string(), out),
            None if self.next_row < self.group_end => {
                self.reject_rest_of_group("the row group ends early", out);
            }
            None => self.reader = None,
        }
        Ok(true)
    }
}

fn str_at(a: &dyn Array, row: usize) -> Option<&str> {
    if a.is_null(row) {
        return None;
    }
    match a.data_type() {
        DataType::Utf8 => Some(a.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Some(a.as_string::<i64>().value(row)),
        DataType::Utf8View => Some(a.as_string_view().value(row)),
        _ => None,
    }
}

/// A scalar cell as JSON, or None for nulls and nested types.
fn json_scalar(a: &dyn Array, row: usize) -> Option<String> {
    if a.is_null(row) {
        return None;
    }
    let finite = |v: f64| v.is_finite().then(|| v.to_string());
    match a.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            str_at(a, row).map(|s| serde_json::to_string(s).expect("strings serialize"))
        }
        DataType::Boolean => Some(a.as_boolean().value(row).to_string()),
        DataType::Int8 => Some(a.as_primitive::<Int8Type>().value(row).to_string()),
        DataType::Int16 => Some(a.as_primitive::<Int16Type>().value(row).to_string()),
        DataType::Int32 => Some(a.as_primitive::<Int32Type>().value(row).to_string()),
        DataType::Int64 => Some(a.as_primitive::<Int64Type>().value(row).to_string()),
        DataType::UInt8 => Some(a.as_primitive::<UInt8Type>().value(row).to_string()),
        DataType::UInt16 => Some(a.as_primitive::<UInt16Type>().value(row).to_string()),
        DataType::UInt32 => Some(a.as_primitive::<UInt32Type>().value(row).to_string()),
        DataType::UInt64 => Some(a.as_primitive::<UInt64Type>().value(row).to_string()),
        DataType::Float32 => finite(a.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => finite(a.as_primitive::<Float64Type>().value(row)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::StringArray;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    #[test]
    fn a_damaged_page_costs_its_row_group_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.parquet");
        let texts: Vec<String> = (0..5000).map(|i| format!("document number {i}")).collect();
        let batch = RecordBatch::try_from_iter([(
            "text",
            Arc::new(StringArray::from(texts.clone())) as arrow_array::ArrayRef,
        )])
        .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(1000))
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), Some(props))
            .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        // Garble the page header of row group 2's text column.
        let meta =
            ArrowReaderMetadata::load(&File::open(&path).unwrap(), Default::default()).unwrap();
        let at = meta.metadata().row_group(2).column(0).data_page_offset() as usize;
        let mut bytes = std::fs::read(&path).unwrap();
        for b in &mut bytes[at..at + 12] {
            *b = 0xff;
        }
        std::fs::write(&path, &bytes).unwrap();

        let spec = Arc::new(SourceSpec {
            name: "s".into(),
            text_field: "text".into(),
            url_field: None,
            max_doc_bytes: 1 << 20,
        });
        let file = InputFile {
            path: path.clone(),
            rel: "d.parquet".into(),
            size: bytes.len() as u64,
        };
        let mut r = ParquetReader::new(file, spec, 1 << 16, Arc::default());
        let mut q = VecDeque::new();
        while r.step(&mut q).unwrap() {}
        let (mut kept, mut rejected, mut status) = (Vec::new(), Vec::new(), None);
        for c in q {
            match c {
                Chunk::Batch(b) => {
                    let core = crate::batch::Core::of(&b);
                    kept.extend((0..b.num_rows()).map(|i| core.line.value(i)));
                }
                Chunk::Rejects(rows) => rejected.extend(rows.iter().map(|r| r.line)),
                Chunk::FileEnd { status: s, .. } => status = Some(s),
                _ => {}
            }
        }
        assert_eq!(kept.len(), 4000);
        assert_eq!(rejected, (2001..=3000).collect::<Vec<u64>>());
        assert!(kept.iter().all(|l| !(2001..=3000).contains(l)));
        assert_eq!(status, Some(FileStatus::Truncated));
    }
}
