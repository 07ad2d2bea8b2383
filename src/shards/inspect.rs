//! What `forja inspect` and `forja blend` read: a shard by any of its names,
//! the tokenizer beside it, and a run's `families.json`.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use super::blend::Families;
use super::megatron::{IndexedReader, ShardError};
use crate::files::MEGATRON_DIR;

/// `x`, `x.bin` or `x.idx` as the shard prefix `x`.
pub fn shard_prefix(path: &Path) -> PathBuf {
    match path.extension().and_then(|e| e.to_str()) {
        Some("bin" | "idx") => path.with_extension(""),
        _ => path.to_path_buf(),
    }
}

/// Counts of one shard.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSummary {
    pub documents: usize,
    pub tokens: u64,
    pub min_len: u64,
    pub max_len: u64,
}

/// A shard's document and token counts and its document lengths.
pub fn summary(r: &IndexedReader) -> ShardSummary {
    let lens = r.lengths.iter().map(|&l| l as u64);
    ShardSummary {
        documents: r.len(),
        tokens: r.tokens(),
        min_len: lens.clone().min().unwrap_or(0),
        max_len: lens.max().unwrap_or(0),
    }
}

/// The `tokenizer.json` the run copied into its `megatron` folder: the
/// nearest one in the shard's folder or above it.
pub fn find_tokenizer(prefix: &Path) -> Option<PathBuf> {
    let mut dir = prefix.parent();
    while let Some(d) = dir {
        let t = d.join("tokenizer.json");
        if t.is_file() {
            return Some(t);
        }
        dir = d.parent();
    }
    None
}

/// Loads the `tokenizer.json` that decodes a shard's ids.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, ShardError> {
    Tokenizer::from_file(path).map_err(|e| ShardError::Format {
        path: path.display().to_string(),
        message: format!("not a tokenizer.json: {e}"),
    })
}

/// Token ids back to text, special tokens (the end-of-document one) kept.
pub fn decode(t: &Tokenizer, ids: &[u32]) -> Result<String, ShardError> {
    t.decode(ids, false).map_err(|e| ShardError::Format {
        path: "<tokenizer>".into(),
        message: format!("cannot decode: {e}"),
    })
}

/// The `megatron` folder of an output folder (or the folder itself).
pub fn megatron_dir(dir: &Path) -> Option<PathBuf> {
    [dir.join(MEGATRON_DIR), dir.to_path_buf()]
        .into_iter()
        .find(|d| d.join(Families::FILE).is_file())
}

/// Checks every shard `families.json` lists against its index: present,
/// readable, and holding the recorded documents and tokens. Returns one
/// line per mismatch.
pub fn check_families(megatron: &Path, fams: &Families) -> Vec<String> {
    let mut bad = Vec::new();
    for f in &fams.families {
        for s in &f.shards {
            match IndexedReader::open(&megatron.join(&s.prefix)) {
                Err(e) => bad.push(e.to_string()),
                Ok(r) => {
                    if r.len() as u64 != s.documents || r.tokens() != s.tokens {
                        bad.push(format!(
                            "{}: {} documents and {} tokens, families.json says {} and {}",
                            s.prefix,
                            r.len(),
                            r.tokens(),
                            s.documents,
                            s.tokens
                        ));
                    }
                }
            }
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_name_of_a_shard_is_its_prefix() {
        for p in ["a/b/00000", "a/b/00000.bin", "a/b/00000.idx"] {
            assert_eq!(shard_prefix(Path::new(p)), PathBuf::from("a/b/00000"));
        }
    }
}
