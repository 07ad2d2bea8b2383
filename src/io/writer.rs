//! Output shards: Parquet (zstd) and JSON Lines (zstd), written atomically.
//!
//! Every file is written under a `.tmp` name, synced and renamed when
//! complete, so a killed run never leaves a half-written shard under a final
//! name. Shards are per unit of work and rolled over by bytes of text, which
//! makes their names and contents independent of threads and ranks.
//!
//! With the `megatron` format the unit's token ids also go to its parts
//! ([`crate::shards::UnitParts`]), which the `megatron` step merges later;
//! the Parquet and JSONL shards then leave the `token_ids` lists out.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::OutputFormat;
use crate::batch;
use crate::files::{commit, tmp_path};
use crate::shards::UnitParts;

/// Row groups are flushed at this much buffered data, bounding writer memory.
const ROW_GROUP_BYTES: usize = 128 << 20;

struct OpenShard {
    text_bytes: u64,
    parquet: Option<(ArrowWriter<File>, PathBuf)>,
    jsonl: Option<(BufWriter<File>, PathBuf)>,
}

/// Writes the kept documents of one unit, shard by shard.
pub struct ShardWriter {
    root: PathBuf,
    source: String,
    unit: usize,
    formats: Vec<OutputFormat>,
    shard_bytes: u64,
    level: i32,
    shard: u32,
    open: Option<OpenShard>,
    done: Vec<PathBuf>,
    parts: Option<UnitParts>,
}

/// The batch as the Parquet and JSONL shards store it: without the token id
/// lists when they go to Megatron shards (they would double the output).
pub fn for_documents(batch: &RecordBatch, formats: &[OutputFormat]) -> RecordBatch {
    let mut b = batch.clone();
    if formats.contains(&OutputFormat::Megatron) {
        if let Ok(i) = b.schema().index_of("token_ids") {
            b.remove_column(i);
        }
    }
    b
}

impl ShardWriter {
    pub fn new(
        root: &Path,
        source: &str,
        unit: usize,
        formats: &[OutputFormat],
        shard_bytes: u64,
        level: i32,
        parts: Option<UnitParts>,
    ) -> Self {
        ShardWriter {
            parts,
            root: root.to_path_buf(),
            source: source.to_string(),
            unit,
            formats: formats.to_vec(),
            shard_bytes,
            level,
            shard: 0,
            open: None,
            done: Vec::new(),
        }
    }

    /// The final path of a shard of this unit.
    pub fn shard_path(&self, format: OutputFormat, shard: u32) -> PathBuf {
        self.root
            .join(format.dir_name())
            .join(&self.source)
            .join(format!(
                "{:06}-{shard:04}.{}",
                self.unit,
                format.extension()
            ))
    }

    fn open_shard(&mut self, schema: SchemaRef) -> io::Result<OpenShard> {
        let mut open = OpenShard {
            text_bytes: 0,
            parquet: None,
            jsonl: None,
        };
        for &format in &self.formats {
            if format == OutputFormat::Megatron {
                continue;
            }
            let path = self.shard_path(format, self.shard);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            let file = crate::files::journal::create_output(&tmp_path(&path))?;
            match format {
                OutputFormat::Parquet => {
                    let w = ArrowWriter::try_new(file, schema.clone(), Some(self.props()))
                        .map_err(io::Error::other)?;
                    open.parquet = Some((w, path));
                }
                OutputFormat::JsonlZst => {
                    open.jsonl = Some((BufWriter::with_capacity(1 << 20, file), path));
                }
                OutputFormat::Megatron => unreachable!("skipped above"),
            }
        }
        Ok(open)
    }

    fn props(&self) -> WriterProperties {
        let level = ZstdLevel::try_new(self.level).unwrap_or_default();
        let mut b = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_created_by(concat!("forja ", env!("CARGO_PKG_VERSION")).to_string());
        // Long unique strings: dictionaries and min/max statistics only cost.
        for col in ["id", "text", "metadata", "url"] {
            b = b
                .set_column_dictionary_enabled(ColumnPath::from(col), false)
                .set_column_statistics_enabled(ColumnPath::from(col), EnabledStatistics::None);
        }
        b.build()
    }

    /// Writes a batch; `jsonl_frame` is its [`jsonl_frame`], made by the caller
    /// (on a worker thread) when JSONL output is on.
    pub fn write(&mut self, batch: &RecordBatch, jsonl_frame: Option<&[u8]>) -> io::Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if let Some(parts) = self.parts.as_mut() {
            parts.write(batch).map_err(io::Error::other)?;
        }
        let batch = &for_documents(batch, &self.formats);
        if self.open.is_none() {
            self.open = Some(self.open_shard(batch.schema())?);
        }
        let open = self.open.as_mut().expect("opened above");
        if let Some((w, _)) = open.parquet.as_mut() {
            w.write(batch).map_err(io::Error::other)?;
            if w.in_progress_size() > ROW_GROUP_BYTES {
                w.flush().map_err(io::Error::other)?;
            }
        }
        if let Some((w, _)) = open.jsonl.as_mut() {
            let frame =
                jsonl_frame.ok_or_else(|| io::Error::other("JSONL output without a frame"))?;
            w.write_all(frame)?;
        }
        open.text_bytes += batch::text_bytes(batch);
        if open.text_bytes >= self.shard_bytes {
            self.close()?;
        }
        Ok(())
    }

    fn close(&mut self) -> io::Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        if let Some((w, path)) = open.parquet {
            w.close().map_err(io::Error::other)?;
            commit(&tmp_path(&path), &path)?;
            self.done.push(path);
        }
        if let Some((mut w, path)) = open.jsonl {
            w.flush()?;
            drop(w);
            commit(&tmp_path(&path), &path)?;
            self.done.push(path);
        }
        self.shard += 1;
        Ok(())
    }

    /// Closes the last shard; returns every file written, in order.
    pub fn finish(mut self) -> io::Result<Vec<PathBuf>> {
        self.close()?;
        if let Some(parts) = self.parts.take() {
            self.done.extend(parts.finish().map_err(io::Error::other)?);
        }
        Ok(self.done)
    }
}

/// A batch as one self-contained zstd frame of JSON lines.
///
/// Concatenated zstd frames are one valid zstd stream, so workers can
/// compress batches in parallel and the writer only appends bytes.
pub fn jsonl_frame(batch: &RecordBatch, level: i32) -> io::Result<Vec<u8>> {
    let mut json = Vec::with_capacity(batch::text_bytes(batch) as usize + batch.num_rows() * 256);
    json_lines(batch, &mut json);
    zstd::bulk::compress(&json, level)
}

/// Appends one JSON object per row: every column, `metadata` embedded as JSON.
pub fn json_lines(batch: &RecordBatch, out: &mut Vec<u8>) {
    let schema = batch.schema();
    let names: Vec<Vec<u8>> = schema
        .fields()
        .iter()
        .map(|f| serde_json::to_vec(f.name()).expect("strings serialize"))
        .collect();
    for row in 0..batch.num_rows() {
        out.push(b'{');
        for (i, col) in batch.columns().iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&names[i]);
            out.push(b':');
            if i == batch::METADATA && col.is_valid(row) {
                out.extend_from_slice(col.as_string::<i32>().value(row).as_bytes());
            } else {
                json_cell(col.as_ref(), row, out);
            }
        }
        out.extend_from_slice(b"}\n");
    }
}

fn json_cell(a: &dyn Array, row: usize, out: &mut Vec<u8>) {
    if a.is_null(row) {
        out.extend_from_slice(b"null");
        return;
    }
    let mut num = |s: String| out.extend_from_slice(s.as_bytes());
    match a.data_type() {
        DataType::Utf8 => {
            serde_json::to_writer(&mut *out, a.as_string::<i32>().value(row))
                .expect("writing to a Vec cannot fail");
        }
        DataType::Boolean => num(a.as_boolean().value(row).to_string()),
        DataType::UInt64 => num(a.as_primitive::<UInt64Type>().value(row).to_string()),
        DataType::UInt32 => num(a.as_primitive::<UInt32Type>().value(row).to_string()),
        DataType::Int64 => num(a.as_primitive::<Int64Type>().value(row).to_string()),
        DataType::Int32 => num(a.as_primitive::<Int32Type>().value(row).to_string()),
        DataType::Float64 => {
            let v = a.as_primitive::<Float64Type>().value(row);
            num(if v.is_finite() {
                v.to_string()
            } else {
                "null".into()
            })
        }
        DataType::Float32 => {
            let v = a.as_primitive::<Float32Type>().value(row);
            num(if v.is_finite() {
                v.to_string()
            } else {
                "null".into()
            })
        }
        DataType::FixedSizeBinary(_) => {
            let bytes = a.as_fixed_size_binary().value(row);
            out.push(b'"');
            for b in bytes {
                out.extend_from_slice(format!("{b:02x}").as_bytes());
            }
            out.push(b'"');
        }
        DataType::List(_) => {
            let items = a.as_list::<i32>().value(row);
            out.push(b'[');
            for i in 0..items.len() {
                if i > 0 {
                    out.push(b',');
                }
                json_cell(items.as_ref(), i, out);
            }
            out.push(b']');
        }
        other => {
            // A stage declared a type the JSON writer does not know: say so in the output
            // rather than dropping the column.
            serde_json::to_writer(&mut *out, &format!("<unsupported type {other}>"))
                .expect("writing to a Vec cannot fail");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::CoreBuilder;

    #[test]
    fn json_lines_embed_metadata_and_escape_text() {
        let mut b = CoreBuilder::with_capacity(1, 10);
        b.push("s", "f", 1, "a \"q\"\n", None, Some("{\"k\":1}"));
        let mut out = Vec::new();
        json_lines(&b.finish(), &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["text"], "a \"q\"\n");
        assert_eq!(v["metadata"]["k"], 1);
        assert_eq!(v["url"], serde_json::Value::Null);
    }

    #[test]
    fn shards_roll_over_and_leave_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ShardWriter::new(
            dir.path(),
            "s",
            3,
            &[OutputFormat::Parquet, OutputFormat::JsonlZst],
            10,
            3,
            None,
        );
        for i in 0..3 {
            let mut b = CoreBuilder::with_capacity(1, 16);
            b.push("s", "f", i, "0123456789ab", None, None);
            let b = b.finish();
            w.write(&b, Some(&jsonl_frame(&b, 3).unwrap())).unwrap();
        }
        let files = w.finish().unwrap();
        assert_eq!(files.len(), 6);
        assert!(files[0].ends_with("parquet/s/000003-0000.parquet"));
        let names: Vec<String> = walk(dir.path());
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        let text = zstd::decode_all(File::open(&files[1]).unwrap()).unwrap();
        assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 1);
    }

    fn walk(p: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                out.extend(walk(&e));
            } else {
                out.push(e.display().to_string());
            }
        }
        out
    }
}
