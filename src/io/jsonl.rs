//! JSON Lines, plain or compressed with gzip or zstd.
//!
//! The reader only decompresses and cuts the stream at line boundaries; JSON
//! parsing happens in [`decode_lines`] on worker threads. A line longer than
//! `max_doc_bytes` is never held whole: the reader switches to skipping until
//! the next newline and rejects the document as `too_large`. A stream that
//! breaks (truncated or corrupt `.gz`/`.zst`) ends the file: what was read
//! before the damage is kept and the file is marked truncated.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserializer;
use serde_json::value::RawValue;

use crate::files::open_decompressed;

use super::{Chunk, Decoded, InputFile, ReadError, Reader, SourceSpec};
use crate::batch::CoreBuilder;
use crate::ledger::{FileStatus, Reason};

pub struct JsonlReader {
    file: InputFile,
    spec: Arc<SourceSpec>,
    chunk_bytes: usize,
    progress: Arc<AtomicU64>,
    input: Option<Box<dyn Read + Send>>,
    buf: Vec<u8>,
    /// Line number of the first byte in `buf`.
    line: u64,
    /// Set while skipping the rest of an oversized line: (its line, bytes so far).
    skipping: Option<(u64, u64)>,
}

impl JsonlReader {
    pub fn new(
        file: InputFile,
        spec: Arc<SourceSpec>,
        chunk_bytes: usize,
        progress: Arc<AtomicU64>,
    ) -> Self {
        JsonlReader {
            file,
            spec,
            chunk_bytes: chunk_bytes.max(1 << 16),
            progress,
            input: None,
            buf: Vec::new(),
            line: 1,
            skipping: None,
        }
    }

    fn open(&self) -> Result<Box<dyn Read + Send>, ReadError> {
        let path = &self.file.path;
        open_decompressed(path, self.progress.clone()).map_err(|e| ReadError::Open {
            path: path.display().to_string(),
            source: e,
        })
    }

    /// Appends up to one chunk of input to `buf`. Returns Ok(false) at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        let input = self.input.as_mut().expect("opened before fill");
        let target = self.buf.len() + self.chunk_bytes;
        while self.buf.len() < target {
            let start = self.buf.len();
            self.buf.resize(start + (1 << 18).min(target - start), 0);
            match input.read(&mut self.buf[start..]) {
                Ok(0) => {
                    self.buf.truncate(start);
                    return Ok(false);
                }
                Ok(n) => self.buf.truncate(start + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buf.truncate(start),
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    fn too_large(&self, line: u64, bytes: u64) -> Chunk {
        Chunk::Rejects(vec![self.spec.reject(
            &self.file.rel,
            line,
            Reason::TooLarge,
            format!(
                "{bytes} bytes > reader.max_doc_bytes {}",
                self.spec.max_doc_bytes
            ),
        )])
    }

    /// Queues the first `cut` bytes of `buf` as complete lines.
    fn emit_lines(&mut self, cut: usize, out: &mut VecDeque<Chunk>) {
        let rest = self.buf.split_off(cut);
        let data = std::mem::replace(&mut self.buf, rest);
        let first_line = self.line;
        self.line += memchr::memchr_iter(b'\n', &data).count() as u64;
        if !data.is_empty() {
            out.push_back(Chunk::Lines {
                file: self.file.rel.clone(),
                first_line,
                data,
            });
        }
    }

    /// Queues the file's end marker and lets go of the input; the unit is done.
    fn end(
        &mut self,
        status: FileStatus,
        detail: Option<String>,
        out: &mut VecDeque<Chunk>,
    ) -> bool {
        out.push_back(Chunk::FileEnd {
            file: self.file.rel.clone(),
            status,
            detail,
        });
        self.input = None;
        self.buf = Vec::new();
        false
    }
}

impl Reader for JsonlReader {
    fn step(&mut self, out: &mut VecDeque<Chunk>) -> Result<bool, ReadError> {
        if self.input.is_none() {
            self.input = Some(self.open()?);
        }
        let more = match self.fill() {
            Ok(more) => more,
            Err(e) => {
                // Damage: keep the complete lines, reject the partial one, end the file.
                // An oversized line being skipped may have ended before the
                // damage: it is rejected, and the whole lines after it kept.
                if let Some((l, so_far)) = self.skipping {
                    if let Some(nl) = memchr::memchr(b'\n', &self.buf) {
                        self.buf.drain(..=nl);
                        self.skipping = None;
                        self.line = l + 1;
                        out.push_back(self.too_large(l, so_far + nl as u64));
                    }
                }
                let cut = memchr::memrchr(b'\n', &self.buf).map_or(0, |i| i + 1);
                if self.skipping.is_none() {
                    self.emit_lines(cut, out);
                }
                let partial = std::mem::take(&mut self.buf);
                let line = self.skipping.take().map_or(self.line, |(l, _)| l);
                let detail = format!(
                    "stream broke in line {line}, after {} whole lines: {e}",
                    line - 1
                );
                // A file that breaks before its first line (not gzip or zstd
                // after all, damaged from the start) still gets its row.
                if !partial.iter().all(u8::is_ascii_whitespace) || line != self.line || line == 1 {
                    let row = self.spec.reject(
                        &self.file.rel,
                        line,
                        Reason::TruncatedFile,
                        format!("{detail} ({} bytes of this line read)", partial.len()),
                    );
                    out.push_back(Chunk::Rejects(vec![row]));
                }
                return Ok(self.end(FileStatus::Truncated, Some(detail), out));
            }
        };
        if let Some((line, so_far)) = self.skipping {
            match memchr::memchr(b'\n', &self.buf) {
                Some(nl) => {
                    self.buf.drain(..=nl);
                    self.skipping = None;
                    self.line = line + 1;
                    out.push_back(self.too_large(line, so_far + nl as u64));
                }
                None => {
                    let so_far = so_far + self.buf.len() as u64;
                    self.buf.clear();
                    if more {
                        self.skipping = Some((line, so_far));
                        return Ok(true);
                    }
                    self.skipping = None;
                    out.push_back(self.too_large(line, so_far));
                    return Ok(self.end(FileStatus::Complete, None, out));
                }
            }
        }
        if !more {
            self.emit_lines(self.buf.len(), out);
            return Ok(self.end(FileStatus::Complete, None, out));
        }
        let cut = memchr::memrchr(b'\n', &self.buf).map_or(0, |i| i + 1);
        self.emit_lines(cut, out);
        // What is left is one partial line; never hold more of it than the cap.
        if self.buf.len() as u64 > self.spec.max_doc_bytes {
            self.skipping = Some((self.line, self.buf.len() as u64));
            self.buf.clear();
        }
        Ok(true)
    }
}

/// Decodes complete JSON lines into a core batch plus rejects.
///
/// Whitespace-only lines are not documents; they are counted, not rejected.
pub fn decode_lines(data: &[u8], file: &str, first_line: u64, spec: &SourceSpec) -> Decoded {
    let mut builder = CoreBuilder::with_capacity(data.len() / 1024 + 1, data.len());
    let mut out = Decoded::default();
    let max = spec.max_doc_bytes as usize;
    let seed = DocSeed {
        text_field: &spec.text_field,
        url_field: spec.url_field.as_deref(),
    };
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line = first_line + i as u64;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        // A UTF-8 byte-order mark before the first line is not content.
        let raw = if line == 1 {
            raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
        } else {
            raw
        };
        if raw.iter().all(u8::is_ascii_whitespace) {
            out.blank_lines += 1;
            continue;
        }
        let reject = |reason, detail| spec.reject(file, line, reason, detail);
        if raw.len() > max {
            out.rejects.push(reject(
                Reason::TooLarge,
                format!("{} bytes > reader.max_doc_bytes {max}", raw.len()),
            ));
            continue;
        }
        let mut de = serde_json::Deserializer::from_slice(raw);
        let parsed = seed.deserialize(&mut de).and_then(|d| de.end().map(|_| d));
        let doc = match parsed {
            Ok(d) => d,
            Err(e) => {
                let (reason, detail) = match std::str::from_utf8(raw) {
                    Err(u) => (
                        Reason::InvalidUtf8,
                        format!(
                            "invalid UTF-8 at byte {} of the line{}",
                            u.valid_up_to(),
                            encoding_hint(raw, line)
                        ),
                    ),
                    Ok(_) => (
                        Reason::MalformedJson,
                        format!("{e}{}", encoding_hint(raw, line)),
                    ),
                };
                out.rejects.push(reject(reason, detail));
                continue;
            }
        };
        let text = match doc.text {
            TextVal::Str(t) if t.is_empty() => {
                out.rejects.push(reject(
                    Reason::EmptyText,
                    format!("field `{}` is empty", spec.text_field),
                ));
                continue;
            }
            TextVal::Str(t) => t,
            TextVal::Missing => {
                out.rejects.push(reject(
                    Reason::MissingTextField,
                    format!("no field `{}`", spec.text_field),
                ));
                continue;
            }
            TextVal::Null => {
                out.rejects.push(reject(
                    Reason::MissingTextField,
                    format!("field `{}` is null", spec.text_field),
                ));
                continue;
            }
            TextVal::Other(kind) => {
                out.rejects.push(reject(
                    Reason::MissingTextField,
                    format!("field `{}` is {kind}, not a string", spec.text_field),
                ));
                continue;
            }
        };
        let metadata = (!doc.meta.is_empty()).then(|| {
            let mut m = String::with_capacity(64);
            m.push('{');
            for (i, (k, v)) in doc.meta.iter().enumerate() {
                if i > 0 {
                    m.push(',');
                }
                m.push_str(&serde_json::to_string(k.as_ref()).expect("strings serialize"));
                m.push(':');
                m.push_str(v.get());
            }
            m.push('}');
            m
        });
        builder.push(
            &spec.name,
            file,
            line,
            &text,
            doc.url.as_deref(),
            metadata.as_deref(),
        );
    }
    if !builder.is_empty() {
        out.batch = Some(builder.finish());
    }
    out
}

/// Why a line may not parse, when its bytes say: UTF-16, a byte-order mark,
/// carriage returns as the only line breaks.
fn encoding_hint(raw: &[u8], line: u64) -> &'static str {
    let head = &raw[..raw.len().min(64)];
    if head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF") {
        " (the file is UTF-16, by its byte-order mark; convert it to UTF-8)"
    } else if head.iter().filter(|&&b| b == 0).count() * 4 >= head.len().max(1) {
        " (NUL bytes between characters: the file looks UTF-16 or binary; JSON Lines must be UTF-8)"
    } else if line > 1 && raw.starts_with(b"\xEF\xBB\xBF") {
        " (a byte-order mark inside the file: files concatenated?)"
    } else if memchr::memchr(b'\r', raw).is_some() {
        " (carriage returns inside the line: CR-only line endings? JSON Lines are split at LF)"
    } else {
        ""
    }
}

/// Pulls the text and url fields out of one JSON object, keeping the other
/// fields as raw JSON without building a `Value` tree.
struct DocSeed<'s> {
    text_field: &'s str,
    url_field: Option<&'s str>,
}

struct Doc<'a> {
    text: TextVal<'a>,
    url: Option<Cow<'a, str>>,
    meta: Vec<(Cow<'a, str>, &'a RawValue)>,
}

enum TextVal<'a> {
    Missing,
    Null,
    Str(Cow<'a, str>),
    Other(&'static str),
}

impl<'de> DeserializeSeed<'de> for &DocSeed<'_> {
    type Value = Doc<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Doc<'de>, D::Error> {
        d.deserialize_map(DocVisitor(self))
    }
}

struct DocVisitor<'a, 's>(&'a DocSeed<'s>);

impl<'de> Visitor<'de> for DocVisitor<'_, '_> {
    type Value = Doc<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'de>, A::Error> {
        let mut doc = Doc {
            text: TextVal::Missing,
            url: None,
            meta: Vec::new(),
        };
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == self.0.text_field {
                doc.text = map.next_value::<TextVal<'de>>()?;
            } else if Some(key.as_ref()) == self.0.url_field {
                if let TextVal::Str(u) = map.next_value::<TextVal<'de>>()? {
                    doc.url = Some(u);
                }
            } else {
                let v: &'de RawValue = map.next_value()?;
                doc.meta.push((key, v));
            }
        }
        Ok(doc)
    }
}

struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> de::Deserialize<'de> for TextVal<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TextVal<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<TextVal<'de>, E> {
                Ok(TextVal::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TextVal<'de>, E> {
                Ok(TextVal::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<TextVal<'de>, E> {
                Ok(TextVal::Str(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<TextVal<'de>, E> {
                Ok(TextVal::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<TextVal<'de>, E> {
                Ok(TextVal::Null)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<TextVal<'de>, E> {
                Ok(TextVal::Other("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<TextVal<'de>, E> {
                Ok(TextVal::Other("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<TextVal<'de>, E> {
                Ok(TextVal::Other("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<TextVal<'de>, E> {
                Ok(TextVal::Other("a number"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<TextVal<'de>, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TextVal::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<TextVal<'de>, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(TextVal::Other("an object"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Core;
    use arrow_array::Array;

    fn spec(max: u64) -> SourceSpec {
        SourceSpec {
            name: "s".into(),
            text_field: "text".into(),
            url_field: Some("url".into()),
            max_doc_bytes: max,
        }
    }

    #[test]
    fn decodes_text_url_and_metadata() {
        let data = b"{\"text\":\"a\\nb\",\"url\":\"http://x\",\"lang\":\"ca\",\"n\":[1,2]}\n\n{\"id\":7,\"text\":\"c\"}";
        let d = decode_lines(data, "f.jsonl", 1, &spec(100));
        let b = d.batch.unwrap();
        let core = Core::of(&b);
        assert_eq!(core.text.value(0), "a\nb");
        assert_eq!(core.line.value(1), 3);
        assert_eq!(d.blank_lines, 1);
        let meta = b
            .column(crate::batch::METADATA)
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        assert_eq!(meta.value(0), "{\"lang\":\"ca\",\"n\":[1,2]}");
        assert_eq!(meta.value(1), "{\"id\":7}");
        assert!(meta.is_valid(0));
    }

    #[test]
    fn bad_lines_are_rejected_with_reason_and_line() {
        let mut data = Vec::new();
        data.extend_from_slice(b"{\"text\":\"ok\"}\n");
        data.extend_from_slice(b"{\"text\": broken\n");
        data.extend_from_slice(b"{\"body\":\"x\"}\n");
        data.extend_from_slice(b"{\"text\":\"\xff\xfe\"}\n");
        data.extend_from_slice(b"{\"text\":\"\"}\n");
        data.extend_from_slice(b"{\"text\":5}\n");
        data.extend_from_slice(b"[1]\n");
        data.extend_from_slice(b"{\"text\":\"0123456789012345678901234567890\"}\n");
        let d = decode_lines(&data, "f", 10, &spec(30));
        let got: Vec<(u64, Reason)> = d.rejects.iter().map(|r| (r.line, r.reason)).collect();
        assert_eq!(
            got,
            vec![
                (11, Reason::MalformedJson),
                (12, Reason::MissingTextField),
                (13, Reason::InvalidUtf8),
                (14, Reason::EmptyText),
                (15, Reason::MissingTextField),
                (16, Reason::MalformedJson),
                (17, Reason::TooLarge),
            ]
        );
        assert_eq!(d.batch.unwrap().num_rows(), 1);
    }
}

#[cfg(test)]
mod reader_tests {
    use super::*;
    use crate::batch::Core;

    /// (line, text) of each document and (line, reason) of each reject.
    type ReadBack = (Vec<(u64, String)>, Vec<(u64, Reason)>);

    fn read_all(content: &[u8], max: u64, name: &str) -> ReadBack {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let spec = Arc::new(SourceSpec {
            name: "s".into(),
            text_field: "text".into(),
            url_field: None,
            max_doc_bytes: max,
        });
        let file = InputFile {
            path: path.clone(),
            rel: name.into(),
            size: content.len() as u64,
        };
        let mut r = JsonlReader::new(file, spec.clone(), 1 << 16, Arc::new(AtomicU64::new(0)));
        let (mut docs, mut rejects) = (Vec::new(), Vec::new());
        let mut ends = 0;
        let mut queue = VecDeque::new();
        let mut more = true;
        while more {
            more = r.step(&mut queue).unwrap();
        }
        for chunk in queue {
            if let Chunk::FileEnd { .. } = chunk {
                ends += 1;
            }
            let d = super::super::decode(chunk, &spec);
            if let Some(b) = d.batch {
                let core = Core::of(&b);
                for i in 0..b.num_rows() {
                    docs.push((core.line.value(i), core.text.value(i).to_string()));
                }
            }
            rejects.extend(d.rejects.iter().map(|r| (r.line, r.reason)));
        }
        assert_eq!(ends, 1, "one end marker per file");
        (docs, rejects)
    }

    #[test]
    fn oversized_lines_are_skipped_wherever_they_fall() {
        let mut c = Vec::new();
        c.extend_from_slice(b"{\"text\":\"one\"}\n");
        // Spans many reads: skipped as it streams.
        c.extend_from_slice(b"{\"text\":\"");
        c.resize(c.len() + 300_000, b'x');
        c.extend_from_slice(b"\"}\n");
        c.extend_from_slice(b"{\"text\":\"three\"}\n");
        // Over the cap but inside one chunk: rejected by the decoder.
        c.extend_from_slice(b"{\"text\":\"");
        c.resize(c.len() + 2_000, b'y');
        c.extend_from_slice(b"\"}\n");
        c.extend_from_slice(b"{\"text\":\"five\"}"); // no final newline
        let (docs, rejects) = read_all(&c, 1_000, "a.jsonl");
        assert_eq!(
            docs,
            vec![(1, "one".into()), (3, "three".into()), (5, "five".into())]
        );
        assert_eq!(rejects, vec![(2, Reason::TooLarge), (4, Reason::TooLarge)]);
    }

    #[test]
    fn oversized_last_line_without_newline_is_rejected() {
        let mut c = b"{\"text\":\"one\"}\n{\"text\":\"".to_vec();
        c.resize(c.len() + 200_000, b'x');
        let (docs, rejects) = read_all(&c, 1_000, "b.jsonl");
        assert_eq!(docs, vec![(1, "one".into())]);
        assert_eq!(rejects, vec![(2, Reason::TooLarge)]);
    }

    #[test]
    fn a_file_broken_from_its_first_byte_gets_a_ledger_row() {
        // gzip magic, then garbage: nothing decodes, and that is said.
        let (docs, rejects) = read_all(b"\x1f\x8b\x08\x00garbage-not-deflate", 1_000, "x.jsonl.gz");
        assert!(docs.is_empty());
        assert_eq!(rejects, vec![(1, Reason::TruncatedFile)]);
    }

    #[test]
    fn corrupt_gzip_keeps_the_lines_before_the_damage() {
        let mut lines = Vec::new();
        for i in 0..5000 {
            lines.extend_from_slice(format!("{{\"text\":\"document number {i}\"}}\n").as_bytes());
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &lines).unwrap();
        let mut gz = gz.finish().unwrap();
        let n = gz.len();
        gz.truncate(n / 2);
        let (docs, rejects) = read_all(&gz, 1_000, "c.jsonl.gz");
        assert!(!docs.is_empty() && docs.len() < 5000);
        for (i, (line, text)) in docs.iter().enumerate() {
            assert_eq!(
                (*line, text.as_str()),
                (i as u64 + 1, format!("document number {i}").as_str())
            );
        }
        assert!(rejects.len() <= 1);
        assert!(rejects.iter().all(|r| r.1 == Reason::TruncatedFile));
    }

    #[test]
    fn damage_while_skipping_an_oversized_line_keeps_the_lines_after_it() {
        // Line 2 is over the cap and spans reads; lines 3.. follow it in the
        // same read as the damage.
        let mut lines = b"{\"text\":\"one\"}\n{\"text\":\"".to_vec();
        lines.resize(lines.len() + 300_000, b'x');
        lines.extend_from_slice(b"\"}\n");
        for i in 3..200 {
            lines.extend_from_slice(format!("{{\"text\":\"line {i}\"}}\n").as_bytes());
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &lines).unwrap();
        let mut gz = gz.finish().unwrap();
        // Cut the trailer and the last bytes: the stream breaks at its end.
        gz.truncate(gz.len() - 12);
        let (docs, rejects) = read_all(&gz, 1_000, "d.jsonl.gz");
        assert_eq!(docs[0], (1, "one".to_string()));
        assert!(docs.len() > 150, "{} lines kept", docs.len());
        assert_eq!(docs[1], (3, "line 3".to_string()));
        assert_eq!(rejects[0], (2, Reason::TooLarge));
        assert_eq!(rejects.last().unwrap().1, Reason::TruncatedFile);
    }

    #[test]
    fn encodings_are_named_and_a_bom_is_not_content() {
        let bom = b"\xEF\xBB\xBF{\"text\":\"one\"}\n{\"text\":\"two\"}\n";
        let (docs, rejects) = read_all(bom, 1_000, "bom.jsonl");
        assert_eq!(docs.len(), 2, "{rejects:?}");
        let s = SourceSpec {
            name: "s".into(),
            text_field: "text".into(),
            url_field: None,
            max_doc_bytes: 1000,
        };
        let utf16: Vec<u8> = "{\"text\":\"x\"}"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        let mut data = b"\xFF\xFE".to_vec();
        data.extend(utf16);
        data.push(b'\n');
        let d = decode_lines(&data, "u.jsonl", 1, &s);
        assert!(
            d.rejects[0].detail.contains("UTF-16"),
            "{}",
            d.rejects[0].detail
        );
        let d = decode_lines(b"{\"text\":\"a\"}\r{\"text\":\"b\"}\n", "cr.jsonl", 1, &s);
        assert!(
            d.rejects[0].detail.contains("CR-only"),
            "{}",
            d.rejects[0].detail
        );
    }
}
