//! The core schema every batch of documents carries between stages.
//!
//! Readers produce these columns; stages append typed annotation columns
//! after them (declared up front, see [`crate::stages::Stage::fields`]) and may
//! replace `text`. Keeping one fixed prefix lets writers, the ledger and later
//! audit tools find a document's identity without knowing which stages ran.

use std::sync::Arc;

use arrow_array::builder::{ArrayBuilder, StringBuilder, UInt64Builder};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use xxhash_rust::xxh3::xxh3_64;

pub const ID: usize = 0;
pub const TEXT: usize = 1;
pub const SOURCE: usize = 2;
pub const FILE: usize = 3;
pub const LINE: usize = 4;
pub const URL: usize = 5;
pub const METADATA: usize = 6;

/// The columns every batch starts with, in this order.
pub fn core_fields() -> Vec<Field> {
    vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        // 1-based line of a JSON Lines file, row of a Parquet file, record of
        // a WARC file, 1 for a text file.
        Field::new("line", DataType::UInt64, false),
        Field::new("url", DataType::Utf8, true),
        // The input record's other fields, as a JSON object.
        Field::new("metadata", DataType::Utf8, true),
    ]
}

pub fn core_schema() -> SchemaRef {
    Arc::new(Schema::new(core_fields()))
}

/// Each row's language: the `lang` column an earlier stage (`lid`) added,
/// `und` where it is null or there is no such column.
pub fn langs<'a>(batch: &'a RecordBatch) -> impl Fn(usize) -> &'a str + 'a {
    let col = batch
        .column_by_name("lang")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>());
    move |row| match col {
        Some(l) if !l.is_null(row) => l.value(row),
        _ => "und",
    }
}

/// The stable id of the document at `line` of `file` in `source`.
///
/// It depends only on those three, so re-reading the same input gives the
/// same ids whatever the thread count, rank or machine.
pub fn doc_id(source: &str, file: &str, line: u64) -> String {
    let mut key = Vec::with_capacity(source.len() + file.len() + 10);
    key.extend_from_slice(source.as_bytes());
    key.push(0);
    key.extend_from_slice(file.as_bytes());
    key.push(0);
    key.extend_from_slice(&line.to_le_bytes());
    format!("{source}:{:016x}", xxh3_64(&key))
}

/// Accumulates documents into a core-schema batch.
pub struct CoreBuilder {
    id: StringBuilder,
    text: StringBuilder,
    source: StringBuilder,
    file: StringBuilder,
    line: UInt64Builder,
    url: StringBuilder,
    metadata: StringBuilder,
}

impl CoreBuilder {
    pub fn with_capacity(docs: usize, text_bytes: usize) -> Self {
        CoreBuilder {
            id: StringBuilder::with_capacity(docs, docs * 32),
            text: StringBuilder::with_capacity(docs, text_bytes),
            source: StringBuilder::with_capacity(docs, docs * 8),
            file: StringBuilder::with_capacity(docs, docs * 32),
            line: UInt64Builder::with_capacity(docs),
            url: StringBuilder::new(),
            metadata: StringBuilder::new(),
        }
    }

    pub fn push(
        &mut self,
        source: &str,
        file: &str,
        line: u64,
        text: &str,
        url: Option<&str>,
        metadata: Option<&str>,
    ) {
        self.id.append_value(doc_id(source, file, line));
        self.text.append_value(text);
        self.source.append_value(source);
        self.file.append_value(file);
        self.line.append_value(line);
        self.url.append_option(url);
        self.metadata.append_option(metadata);
    }

    pub fn len(&self) -> usize {
        self.line.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.text.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.file.finish()),
            Arc::new(self.line.finish()),
            Arc::new(self.url.finish()),
            Arc::new(self.metadata.finish()),
        ];
        RecordBatch::try_new(core_schema(), columns).expect("core columns match core schema")
    }
}

/// Typed access to the core columns of a batch.
pub struct Core<'a> {
    pub id: &'a StringArray,
    pub text: &'a StringArray,
    pub source: &'a StringArray,
    pub file: &'a StringArray,
    pub line: &'a UInt64Array,
    pub url: &'a StringArray,
}

impl<'a> Core<'a> {
    /// Views the core columns; batches are built by forja, so a wrong type is a bug.
    pub fn of(batch: &'a RecordBatch) -> Self {
        let s = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("core string column")
        };
        Core {
            id: s(ID),
            text: s(TEXT),
            source: s(SOURCE),
            file: s(FILE),
            line: batch
                .column(LINE)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .expect("core line column"),
            url: s(URL),
        }
    }
}

/// Total bytes of text in a batch.
pub fn text_bytes(batch: &RecordBatch) -> u64 {
    let text = Core::of(batch).text;
    let offsets = text.value_offsets();
    (offsets[offsets.len() - 1] - offsets[0]) as u64
}

/// One cell as JSON, for the scalar column types stages write (a
/// fixed-size binary as hex); `None` for other types (lists of token ids).
pub(crate) fn cell_json(a: &dyn Array, row: usize) -> Option<serde_json::Value> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_schema::DataType as T;
    use serde_json::json;
    if a.is_null(row) {
        return Some(serde_json::Value::Null);
    }
    Some(match a.data_type() {
        T::Utf8 => json!(a.as_string::<i32>().value(row)),
        T::Boolean => json!(a.as_boolean().value(row)),
        T::UInt64 => json!(a.as_primitive::<UInt64Type>().value(row)),
        T::UInt32 => json!(a.as_primitive::<UInt32Type>().value(row)),
        T::Int64 => json!(a.as_primitive::<Int64Type>().value(row)),
        T::Int32 => json!(a.as_primitive::<Int32Type>().value(row)),
        T::Float64 => json!(a.as_primitive::<Float64Type>().value(row)),
        T::Float32 => json!(a.as_primitive::<Float32Type>().value(row)),
        T::FixedSizeBinary(_) => json!(a
            .as_fixed_size_binary()
            .value(row)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = doc_id("web", "data/a.jsonl", 3);
        assert_eq!(a, doc_id("web", "data/a.jsonl", 3));
        assert_ne!(a, doc_id("web", "data/a.jsonl", 4));
        assert_ne!(a, doc_id("web", "data/b.jsonl", 3));
        assert_ne!(a, doc_id("wiki", "data/a.jsonl", 3));
        assert!(a.starts_with("web:"));
    }

    #[test]
    fn builder_makes_core_batches() {
        let mut b = CoreBuilder::with_capacity(2, 10);
        b.push("s", "f", 1, "hello", None, Some("{\"a\":1}"));
        b.push("s", "f", 2, "world!", Some("http://x"), None);
        let batch = b.finish();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(text_bytes(&batch), 11);
        assert_eq!(Core::of(&batch).line.value(1), 2);
    }
}
