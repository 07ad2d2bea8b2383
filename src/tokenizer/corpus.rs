//! Reading a text corpus for tokenizer training and fertility reports.
//!
//! Takes JSON Lines (`.jsonl`, `.json`, optionally `.gz`/`.zst`), Parquet
//! and plain text (`.txt`, one document per line, as SentencePiece reads
//! it). Each document has a language: the `lang` field (any name, see
//! [`CorpusSpec`]), else the default language, else for a text file its
//! name up to the first dot (`en.txt`), else `und`. A folder is read
//! recursively; a forja output folder (one with `_forja/`) is read through
//! its `jsonl/` (or `parquet/`) documents only.
//!
//! One thread reads and decompresses; parsing and the caller's work run on
//! the rayon pool. Malformed input stops the read with the file and line.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

/// One document.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub lang: Arc<str>,
    pub text: String,
}

/// Where a corpus keeps its text and language.
#[derive(Debug, Clone)]
pub struct CorpusSpec {
    /// JSON field or Parquet column holding the text.
    pub text_field: String,
    /// JSON field or Parquet column holding the language.
    pub lang_field: String,
    /// Language of documents that name none.
    pub default_lang: Option<String>,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        CorpusSpec {
            text_field: "text".into(),
            lang_field: "lang".into(),
            default_lang: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Record {
        path: String,
        line: u64,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("no input files found under {0}")]
    NoFiles(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Jsonl,
    Parquet,
    Text,
}

fn kind(path: &Path) -> Option<Kind> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let base = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zst"))
        .unwrap_or(&name);
    if base.ends_with(".jsonl") || base.ends_with(".json") || base.ends_with(".ndjson") {
        Some(Kind::Jsonl)
    } else if base.ends_with(".parquet") {
        Some(Kind::Parquet)
    } else if base.ends_with(".txt") {
        Some(Kind::Text)
    } else {
        None
    }
}

/// The files named, folders expanded (sorted, so runs read in one order).
pub fn list_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CorpusError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| CorpusError::Io {
            path: p.display().to_string(),
            source: e,
        })?;
        if meta.is_dir() {
            let root = if p.join("_forja").is_dir() {
                if p.join("jsonl").is_dir() {
                    p.join("jsonl")
                } else {
                    p.join("parquet")
                }
            } else {
                p.clone()
            };
            let before = out.len();
            walk(&root, &mut out)?;
            if out.len() == before {
                return Err(CorpusError::NoFiles(root.display().to_string()));
            }
        } else {
            if kind(p).is_none() {
                return Err(CorpusError::File {
                    path: p.display().to_string(),
                    message: "not a .jsonl[.gz|.zst], .parquet or .txt file".into(),
                });
            }
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CorpusError> {
    let io = |e| CorpusError::Io {
        path: dir.display().to_string(),
        source: e,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for e in entries {
        let hidden = e
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.') || n.starts_with('_'));
        if hidden {
            continue;
        }
        if e.is_dir() {
            walk(&e, out)?;
        } else if kind(&e).is_some() {
            out.push(e);
        }
    }
    Ok(())
}

/// Lines of one file, handed from the reading thread to the pool.
enum Chunk {
    Lines {
        file: Arc<str>,
        kind: Kind,
        first_line: u64,
        data: Vec<u8>,
        lang: Arc<str>,
    },
    Docs(Vec<Doc>),
}

const CHUNK_BYTES: usize = 4 << 20;

/// The language of a text file's documents: the name up to the first dot.
fn file_lang(path: &Path, spec: &CorpusSpec) -> Arc<str> {
    if let Some(l) = &spec.default_lang {
        return l.as_str().into();
    }
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("und")
        .into()
}

fn read_file(
    path: &Path,
    spec: &CorpusSpec,
    bytes_read: &Arc<AtomicU64>,
    send: &mut dyn FnMut(Chunk) -> bool,
) -> Result<(), CorpusError> {
    let file: Arc<str> = path.display().to_string().into();
    let k = kind(path).expect("listed files have a kind");
    if k == Kind::Parquet {
        return read_parquet(path, spec, bytes_read, send);
    }
    let lang: Arc<str> = if k == Kind::Text {
        file_lang(path, spec)
    } else {
        spec.default_lang.as_deref().unwrap_or("und").into()
    };
    let mut r =
        crate::files::open_decompressed(path, bytes_read.clone()).map_err(|e| CorpusError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
    // Whole blocks cut after their last newline; the rest starts the next.
    let mut line = 1u64;
    let mut carry: Vec<u8> = Vec::new();
    let mut want = CHUNK_BYTES;
    loop {
        let mut data = std::mem::take(&mut carry);
        data.reserve(want.saturating_sub(data.len()));
        let mut eof = false;
        while data.len() < want {
            let start = data.len();
            data.resize(start + (256 << 10), 0);
            let n = r
                .read(&mut data[start..])
                .map_err(|e| CorpusError::Record {
                    path: file.to_string(),
                    line: line + memchr::memchr_iter(b'\n', &data[..start]).count() as u64,
                    message: format!("cannot read: {e}"),
                })?;
            data.truncate(start + n);
            if n == 0 {
                eof = true;
                break;
            }
        }
        if !eof {
            match memchr::memrchr(b'\n', &data) {
                Some(i) => {
                    carry = data.split_off(i + 1);
                    want = CHUNK_BYTES;
                }
                // One line longer than a block: read on until it ends.
                None => {
                    want = data.len() * 2;
                    carry = data;
                    continue;
                }
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        let first_line = line;
        line += memchr::memchr_iter(b'\n', &data).count() as u64;
        let more = send(Chunk::Lines {
            file: file.clone(),
            kind: k,
            first_line,
            data,
            lang: lang.clone(),
        });
        if !more || eof {
            return Ok(());
        }
    }
}

fn read_parquet(
    path: &Path,
    spec: &CorpusSpec,
    bytes_read: &Arc<AtomicU64>,
    send: &mut dyn FnMut(Chunk) -> bool,
) -> Result<(), CorpusError> {
    use arrow_array::{Array, StringArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;
    let err = |m: String| CorpusError::File {
        path: path.display().to_string(),
        message: m,
    };
    let f = std::fs::File::open(path).map_err(|e| CorpusError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| err(e.to_string()))?;
    let schema = b.schema().clone();
    let col = |name: &str| schema.fields().iter().position(|f| f.name() == name);
    let text_i =
        col(&spec.text_field).ok_or_else(|| err(format!("no column {:?}", spec.text_field)))?;
    let lang_i = col(&spec.lang_field);
    let mut roots = vec![text_i];
    roots.extend(lang_i);
    let mask = ProjectionMask::roots(b.parquet_schema(), roots);
    let reader = b
        .with_projection(mask)
        .with_batch_size(4096)
        .build()
        .map_err(|e| err(e.to_string()))?;
    let default: Arc<str> = spec.default_lang.as_deref().unwrap_or("und").into();
    for batch in reader {
        let batch = batch.map_err(|e| err(e.to_string()))?;
        let text = batch
            .column_by_name(&spec.text_field)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| {
                err(format!(
                    "column {:?} is not a string column",
                    spec.text_field
                ))
            })?;
        let lang = batch
            .column_by_name(&spec.lang_field)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>());
        let mut docs = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            if text.is_null(i) {
                continue;
            }
            let l = match lang {
                Some(l) if !l.is_null(i) => l.value(i).into(),
                _ => default.clone(),
            };
            docs.push(Doc {
                lang: l,
                text: text.value(i).to_string(),
            });
        }
        if !send(Chunk::Docs(docs)) {
            return Ok(());
        }
    }
    bytes_read.fetch_add(size, Ordering::Relaxed);
    Ok(())
}

/// The two fields of a JSON record that matter, the rest skipped unparsed.
struct Fields<'s> {
    text: &'s str,
    lang: &'s str,
}

#[derive(Default)]
struct Record {
    text: Option<String>,
    lang: Option<String>,
}

impl<'de> DeserializeSeed<'de> for Fields<'_> {
    type Value = Record;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Record, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = Record;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Record, A::Error> {
        let mut r = Record::default();
        while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
            if k == self.text {
                r.text = m.next_value()?;
            } else if k == self.lang {
                r.lang = m.next_value()?;
            } else {
                m.next_value::<IgnoredAny>()?;
            }
        }
        Ok(r)
    }
}

fn parse(chunk: Chunk, spec: &CorpusSpec) -> Result<Vec<Doc>, CorpusError> {
    let (file, kind, first_line, data, lang) = match chunk {
        Chunk::Docs(d) => return Ok(d),
        Chunk::Lines {
            file,
            kind,
            first_line,
            data,
            lang,
        } => (file, kind, first_line, data, lang),
    };
    let mut docs = Vec::new();
    for (i, raw) in data.split(|&b| b == b'\n').enumerate() {
        let line = first_line + i as u64;
        let bad = |m: String| CorpusError::Record {
            path: file.to_string(),
            line,
            message: m,
        };
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let s = std::str::from_utf8(raw).map_err(|e| bad(format!("invalid UTF-8 ({e})")))?;
        match kind {
            Kind::Text => {
                if !s.is_empty() {
                    docs.push(Doc {
                        lang: lang.clone(),
                        text: s.to_string(),
                    });
                }
            }
            _ => {
                if s.trim().is_empty() {
                    continue;
                }
                let mut de = serde_json::Deserializer::from_str(s);
                let rec = Fields {
                    text: &spec.text_field,
                    lang: &spec.lang_field,
                }
                .deserialize(&mut de)
                .and_then(|r| de.end().map(|_| r))
                .map_err(|e| bad(format!("malformed JSON ({e})")))?;
                let text = rec
                    .text
                    .ok_or_else(|| bad(format!("no {:?} field", spec.text_field)))?;
                let l = match rec.lang {
                    Some(l) => l.into(),
                    None => lang.clone(),
                };
                docs.push(Doc { lang: l, text });
            }
        }
    }
    Ok(docs)
}

/// Reads every document of `files` and folds batches of them on as many
/// threads as the rayon pool has: `fold` adds a batch to an accumulator, `merge` joins two. The
/// result does not depend on how batches were spread over threads as long
/// as `merge` is commutative and associative (sums are).
pub fn fold_docs<A: Send>(
    files: &[PathBuf],
    spec: &CorpusSpec,
    progress: &indicatif::ProgressBar,
    init: impl Fn() -> A + Sync + Send,
    fold: impl Fn(&mut A, Vec<Doc>) + Sync + Send,
    merge: impl Fn(A, A) -> A + Sync + Send,
) -> Result<A, CorpusError> {
    // One accumulator per worker, merged once at the end: merging big
    // maps is costly, so rayon's fold (an accumulator per split) is not used.
    let workers = rayon::current_num_threads().max(1);
    let (tx, rx) = crossbeam_channel::bounded::<Chunk>(2 * workers + 2);
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let failed = &failed;
        let reader = s.spawn(move || -> Result<(), CorpusError> {
            let bytes_read = Arc::new(AtomicU64::new(0));
            for f in files {
                let mut send = |c: Chunk| {
                    progress.set_position(bytes_read.load(Ordering::Relaxed));
                    !failed.load(Ordering::Relaxed) && tx.send(c).is_ok()
                };
                read_file(f, spec, &bytes_read, &mut send)?;
            }
            Ok(())
        });
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let rx = rx.clone();
                let (init, fold) = (&init, &fold);
                s.spawn(move || -> Result<A, CorpusError> {
                    let mut acc = init();
                    for chunk in rx.iter() {
                        match parse(chunk, spec) {
                            Ok(docs) => fold(&mut acc, docs),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(acc)
                })
            })
            .collect();
        drop(rx);
        let mut out: Option<A> = None;
        let mut first_err = None;
        for h in handles {
            match h.join().expect("a corpus worker does not panic") {
                Ok(a) => {
                    out = Some(match out.take() {
                        None => a,
                        Some(o) => merge(o, a),
                    })
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let read = reader.join().expect("the reader thread does not panic");
        if let Some(e) = first_err {
            return Err(e);
        }
        read?;
        Ok(out.unwrap_or_else(&init))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(files: &[PathBuf], spec: &CorpusSpec) -> Result<Vec<Doc>, CorpusError> {
        let mut v = fold_docs(
            files,
            spec,
            &indicatif::ProgressBar::hidden(),
            Vec::new,
            |a, d| a.extend(d),
            |mut a, b| {
                a.extend(b);
                a
            },
        )?;
        v.sort_by(|a, b| a.text.cmp(&b.text));
        Ok(v)
    }

    #[test]
    fn reads_jsonl_text_and_compressed_files_with_languages() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("a.jsonl"),
            "{\"text\":\"hola\",\"lang\":\"es\",\"x\":[1,{\"y\":2}]}\n\n{\"text\":\"hi\"}\n",
        )
        .unwrap();
        std::fs::write(d.path().join("ca.txt"), "bon dia\r\n\nadeu\n").unwrap();
        let mut z = zstd::Encoder::new(Vec::new(), 1).unwrap();
        std::io::Write::write_all(&mut z, b"{\"lang\":\"fr\",\"text\":\"salut\"}\n").unwrap();
        std::fs::write(d.path().join("b.jsonl.zst"), z.finish().unwrap()).unwrap();
        let files = list_files(&[d.path().to_path_buf()]).unwrap();
        assert_eq!(files.len(), 3);
        let docs = all(&files, &CorpusSpec::default()).unwrap();
        let got: Vec<(&str, &str)> = docs.iter().map(|d| (&*d.lang, d.text.as_str())).collect();
        assert_eq!(
            got,
            [
                ("ca", "adeu"),
                ("ca", "bon dia"),
                ("und", "hi"),
                ("es", "hola"),
                ("fr", "salut")
            ]
        );
    }

    #[test]
    fn bad_records_name_the_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bad.jsonl");
        std::fs::write(&p, "{\"text\":\"ok\"}\n{\"text\": 3}\n").unwrap();
        let e = all(std::slice::from_ref(&p), &CorpusSpec::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.jsonl:2"), "{e}");
        std::fs::write(&p, "{\"text\":\"ok\"}\n{\"txt\":\"x\"}\n").unwrap();
        let e = all(std::slice::from_ref(&p), &CorpusSpec::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.jsonl:2") && e.contains("no \"text\" field"),
            "{e}"
        );
        std::fs::write(&p, b"{\"text\":\"\xff\"}\n").unwrap();
        let e = all(std::slice::from_ref(&p), &CorpusSpec::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.jsonl:1") && e.contains("UTF-8"), "{e}");
        // A truncated zstd file.
        let mut z = zstd::Encoder::new(Vec::new(), 1).unwrap();
        std::io::Write::write_all(&mut z, "{\"text\":\"abc\"}\n".repeat(5000).as_bytes()).unwrap();
        let bytes = z.finish().unwrap();
        let t = d.path().join("cut.jsonl.zst");
        std::fs::write(&t, &bytes[..bytes.len() / 2]).unwrap();
        let e = all(&[t], &CorpusSpec::default()).unwrap_err().to_string();
        assert!(e.contains("cut.jsonl.zst"), "{e}");
        let e = list_files(&[d.path().join("missing.jsonl")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.jsonl"), "{e}");
    }
}
