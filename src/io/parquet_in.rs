//! Parquet input, e.g. a Hugging Face dataset's `data/train-*.parquet`.
//!
//! Row groups are decoded in batches sized from the file's own metadata so a
//! batch holds about `batch_bytes` of data. Columns other than text and url
//! become the `metadata` JSON object when they are scalars.

use std::collections::VecDeque;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::{Chunk, InputError, InputFile, ReadError, Reader, SourceSpec};
use crate::batch::CoreBuilder;
use crate::ledger::{FileStatus, Reason};
use crate::manifest::SourceConfig;

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
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
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
    reader: Option<ParquetRecordBatchReader>,
    total_rows: u64,
    /// 1-based row number of the next row.
    next_row: u64,
    reported_bytes: u64,
}

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
            reader: None,
            total_rows: 0,
            next_row: 1,
            reported_bytes: 0,
        }
    }

    fn open(&mut self) -> Result<(), ReadError> {
        let path = self.file.path.display().to_string();
        let file = File::open(&self.file.path).map_err(|e| ReadError::Open {
            path: path.clone(),
            source: e,
        })?;
        let perr = |e: parquet::errors::ParquetError| ReadError::Parquet {
            path: path.clone(),
            message: e.to_string(),
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(perr)?;
        let meta = builder.metadata().file_metadata();
        self.total_rows = meta.num_rows().max(0) as u64;
        let bytes: i64 = builder
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.total_byte_size())
            .sum();
        let per_row = (bytes.max(1) as u64 / self.total_rows.max(1)).max(1);
        let rows = (self.batch_bytes as u64 / per_row).clamp(1, 65_536) as usize;
        self.reader = Some(builder.with_batch_size(rows).build().map_err(perr)?);
        Ok(())
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
        let text = col(&spec.text_field).expect("checked when planning");
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
        if self.reader.is_none() {
            self.open()?;
        }
        match self.reader.as_mut().expect("opened").next() {
            Some(Ok(rb)) => {
                self.convert(&rb, out);
                self.report_progress();
                Ok(true)
            }
            Some(Err(e)) => {
                // Rows that could not be decoded are each rejected, so none goes missing.
                let detail = format!("cannot decode rows from {}: {e}", self.next_row);
                let rows: Vec<_> = (self.next_row..=self.total_rows)
                    .map(|line| {
                        self.spec
                            .reject(&self.file.rel, line, Reason::ReadError, detail.clone())
                    })
                    .collect();
                if !rows.is_empty() {
                    out.push_back(Chunk::Rejects(rows));
                }
                out.push_back(Chunk::FileEnd {
                    file: self.file.rel.clone(),
                    status: FileStatus::Truncated,
                    detail: Some(detail),
                });
                self.reader = None;
                Ok(false)
            }
            None => {
                out.push_back(Chunk::FileEnd {
                    file: self.file.rel.clone(),
                    status: FileStatus::Complete,
                    detail: None,
                });
                self.reader = None;
                Ok(false)
            }
        }
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
