//! The final pass's side of the shards: each unit's kept documents as token
//! ids, one indexed dataset per (split, language) in the unit's own folder.
//!
//! Units are written by whichever rank and thread holds them, so they cannot
//! append to shared shards; the `megatron` step later concatenates the parts
//! of every unit, in unit order, into the families' shards.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::megatron::{paths, DType, IndexedWriter, ShardError};
use super::MegatronConfig;
use super::VOCAB_SIZE;
use crate::batch;

/// Training, validation or test: every document goes to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Split {
    /// Training data.
    Train,
    /// Validation data.
    Valid,
    /// Test data.
    Test,
}

impl Split {
    /// Every split, in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    /// The split's folder name (`train`, `valid`, `test`).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }

    /// The split of a folder name.
    pub fn from_name(s: &str) -> Option<Split> {
        Split::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// Draws a document's split from a hash of its id, so the draw does not
/// depend on order, threads or ranks, and a document keeps its split when
/// the rest of the corpus changes.
#[derive(Debug, Clone, Copy)]
pub struct Splitter {
    seed: u64,
    /// Upper bounds of train and validation in [0, 1).
    train: f64,
    valid: f64,
}

impl Splitter {
    pub fn new(percent: [f64; 3], seed: u64) -> Self {
        let total: f64 = percent.iter().sum();
        Splitter {
            seed,
            train: percent[0] / total,
            valid: (percent[0] + percent[1]) / total,
        }
    }

    pub fn split(&self, id: &str) -> Split {
        // 53 bits: an exact f64 in [0, 1).
        let x = (xxh3_64_with_seed(id.as_bytes(), self.seed) >> 11) as f64 / (1u64 << 53) as f64;
        if x < self.train {
            Split::Train
        } else if x < self.valid {
            Split::Valid
        } else {
            Split::Test
        }
    }
}

/// A language as a file name: anything but letters, digits, `-` and `_`
/// becomes `_`, so a source's free-text `language` cannot escape the folder.
/// Borrowed when the name is fine as it is (every code `lid` writes).
pub fn lang_name(lang: &str) -> Cow<'_, str> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if lang.is_empty() {
        Cow::Borrowed("und")
    } else if lang.chars().all(ok) {
        Cow::Borrowed(lang)
    } else {
        Cow::Owned(lang.chars().map(|c| if ok(c) { c } else { '_' }).collect())
    }
}

/// The vocabulary size the `tokenize` stage recorded on `token_ids`.
pub fn batch_dtype(batch: &RecordBatch) -> Result<DType, String> {
    let schema = batch.schema();
    let field = schema
        .field_with_name("token_ids")
        .map_err(|_| "no `token_ids` column: the megatron format needs a tokenize stage")?;
    let vocab: usize = field
        .metadata()
        .get(VOCAB_SIZE)
        .and_then(|v| v.parse().ok())
        .ok_or("`token_ids` carries no vocabulary size")?;
    Ok(DType::for_vocab(vocab))
}

/// One unit's parts, being written.
pub struct UnitParts {
    dir: PathBuf,
    splitter: Splitter,
    /// The language of documents without a `lang` value.
    default_lang: String,
    /// Per language, a part per split (indexed by `Split as usize`).
    writers: BTreeMap<String, [Option<Part>; 3]>,
    /// The source's licence, recorded with every document.
    licence: String,
}

/// One part being written: its tokens, and one JSON line per document, the
/// provenance that travels into the shards (see [`DOCS_SUFFIX`]).
struct Part {
    tokens: IndexedWriter,
    docs: Vec<u8>,
}

/// Beside a part or shard `<prefix>.bin/.idx`: `<prefix>` + this, one JSON
/// object per document in shard order (`id`, `source`, `licence`, `file`,
/// `line`). Parts keep it plain; the merged shards' copy is zstd-compressed
/// ([`SHARD_DOCS_SUFFIX`]).
pub const DOCS_SUFFIX: &str = ".docs.jsonl";
pub const SHARD_DOCS_SUFFIX: &str = ".docs.jsonl.zst";

/// One document's provenance line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DocOrigin {
    pub id: String,
    pub source: String,
    pub licence: String,
    pub file: String,
    pub line: u64,
}

impl UnitParts {
    /// Parts go to `dir/<split>/<lang>.{bin,idx}`.
    pub fn new(
        dir: &Path,
        cfg: &MegatronConfig,
        default_lang: Option<&str>,
        licence: &str,
    ) -> Self {
        UnitParts {
            dir: dir.to_path_buf(),
            splitter: Splitter::new(cfg.split, cfg.split_seed),
            default_lang: lang_name(default_lang.unwrap_or("und")).into_owned(),
            writers: BTreeMap::new(),
            licence: licence.to_string(),
        }
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ShardError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let dtype = batch_dtype(batch).map_err(|message| ShardError::Format {
            path: self.dir.display().to_string(),
            message,
        })?;
        let ids = batch.column(batch::ID).as_string::<i32>();
        let core = batch::Core::of(batch);
        let tokens = batch
            .column_by_name("token_ids")
            .expect("checked by batch_dtype")
            .as_list::<i32>();
        let lang = batch
            .column_by_name("lang")
            .and_then(|c| c.as_string_opt::<i32>());
        for row in 0..batch.num_rows() {
            let split = self.splitter.split(ids.value(row));
            let l = match lang {
                Some(l) if l.is_valid(row) => lang_name(l.value(row)),
                _ => Cow::Borrowed(self.default_lang.as_str()),
            };
            if !self.writers.contains_key(l.as_ref()) {
                self.writers.insert(l.to_string(), Default::default());
            }
            let slot =
                &mut self.writers.get_mut(l.as_ref()).expect("inserted above")[split as usize];
            let part = match slot {
                Some(p) => p,
                None => {
                    let prefix = self.dir.join(split.name()).join(l.as_ref());
                    slot.insert(Part {
                        tokens: IndexedWriter::create(&prefix, dtype)?,
                        docs: Vec::new(),
                    })
                }
            };
            let doc = tokens.value(row);
            let doc = doc.as_primitive::<arrow_array::types::UInt32Type>();
            part.tokens.add(doc.values())?;
            let origin = DocOrigin {
                id: ids.value(row).to_string(),
                source: core.source.value(row).to_string(),
                licence: self.licence.clone(),
                file: core.file.value(row).to_string(),
                line: core.line.value(row),
            };
            serde_json::to_writer(&mut part.docs, &origin).expect("serializes");
            part.docs.push(b'\n');
        }
        Ok(())
    }

    /// Commits every part; returns their `.bin`, `.idx` and provenance paths.
    pub fn finish(mut self) -> Result<Vec<PathBuf>, ShardError> {
        let mut out = Vec::new();
        for split in Split::ALL {
            for (lang, writers) in self.writers.iter_mut() {
                if let Some(part) = writers[split as usize].take() {
                    part.tokens.finish()?;
                    let prefix = self.dir.join(split.name()).join(lang);
                    let (bin, idx) = paths(&prefix);
                    let docs = with_suffix(&prefix, DOCS_SUFFIX);
                    crate::files::atomic_write(&docs, &part.docs).map_err(|e| ShardError::Io {
                        path: docs.display().to_string(),
                        source: e,
                    })?;
                    out.push(bin);
                    out.push(idx);
                    out.push(docs);
                }
            }
        }
        Ok(out)
    }
}

/// `prefix` with `suffix` appended to its file name.
pub fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_follows_the_percentages_and_the_seed() {
        let s = Splitter::new([98.0, 1.0, 1.0], 0);
        let n = 200_000;
        let mut counts = [0usize; 3];
        for i in 0..n {
            counts[s.split(&format!("src/file.jsonl:{i}")) as usize] += 1;
        }
        let share = |c: usize| c as f64 / n as f64;
        assert!((share(counts[0]) - 0.98).abs() < 0.002, "{counts:?}");
        assert!((share(counts[1]) - 0.01).abs() < 0.001, "{counts:?}");
        assert!((share(counts[2]) - 0.01).abs() < 0.001, "{counts:?}");
        // Same id, same split; another seed draws again.
        let other = Splitter::new([50.0, 25.0, 25.0], 1);
        let moved = (0..1000)
            .filter(|i| {
                let id = format!("d{i}");
                Splitter::new([50.0, 25.0, 25.0], 0).split(&id) != other.split(&id)
            })
            .count();
        assert!(moved > 400, "{moved}");
        assert_eq!(s.split("x"), s.split("x"));
    }

    #[test]
    fn zero_shares_get_no_documents() {
        let s = Splitter::new([100.0, 0.0, 0.0], 7);
        assert!((0..10_000).all(|i| s.split(&i.to_string()) == Split::Train));
    }

    #[test]
    fn language_names_stay_in_their_folder() {
        assert_eq!(lang_name("es"), "es");
        assert_eq!(lang_name("../x y"), "___x_y");
        assert_eq!(lang_name(""), "und");
    }
}
