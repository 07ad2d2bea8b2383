//! Training a SentencePiece-style BPE tokenizer from the curated corpus.
//!
//! The pieces fit together as in SentencePiece's BPE trainer, with the
//! counting made parallel and mergeable and the merge loop incremental:
//!
//! 1. [`words`]: NFC, `▁` for spaces, a dummy prefix, then the text cut
//!    into *segments* at every place no piece may span (a space that does
//!    not start a word, a digit, a change of Unicode script, a runs of
//!    spaces, tabs or newlines that is a user-defined piece). Segments are
//!    counted per language; counts from many tasks add up.
//! 2. [`weights`]: per-language counts are reweighted to the target shares
//!    (alpha = 0 uniform, 1 natural) into one table of u64 counts.
//! 3. [`bpe`]: the merge loop on that table, with incremental pair counts
//!    and an indexed heap; `cuda.rs` does the same on a GPU.
//! 4. [`json`]: the vocabulary, `tokenizer.json` and a `.vocab` listing.

pub mod bpe;
#[cfg(feature = "cuda")]
pub mod cuda;
mod heap;
pub mod json;
pub mod weights;
pub mod words;

use serde::{Deserialize, Serialize};

pub use bpe::train_bpe;
pub use json::Vocabulary;
pub use words::{Segmenter, WordCounts};

/// Everything that shapes the vocabulary. The defaults are Salamandra's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Size of the whole vocabulary: special, user-defined and byte pieces,
    /// merges and single characters.
    pub vocab_size: usize,
    /// Sampling exponent over languages: 0 gives every language the same
    /// share, 1 keeps the corpus's own proportions.
    pub alpha: f64,
    /// Characters covering this fraction of all occurrences become pieces;
    /// the rarest rest is left to byte fallback.
    pub character_coverage: f64,
    /// Longest piece, in characters.
    pub max_piece_length: usize,
    /// Every digit is a piece of its own.
    pub split_digits: bool,
    /// Pieces never join characters of two Unicode scripts.
    pub split_by_unicode_script: bool,
    /// Pieces made only of `▁` are allowed.
    pub allow_whitespace_only_pieces: bool,
    /// `▁` is put before the text, so a word reads the same at the start.
    pub add_dummy_prefix: bool,
    /// Unicode NFC before anything else.
    pub nfc: bool,
    /// Unknown characters become their UTF-8 bytes (`<0x41>`), so no text
    /// is ever lost to `<unk>`.
    pub byte_fallback: bool,
    /// Pair counts below this end the training early.
    pub min_frequency: u64,
    /// The unknown-piece token.
    pub unk_token: String,
    /// The beginning-of-sequence token.
    pub bos_token: String,
    /// The end-of-sequence token.
    pub eos_token: String,
    /// The padding token.
    pub pad_token: String,
    /// Control tokens after the four above (chat markers).
    pub control_tokens: Vec<String>,
    /// `<|reserved_token_N|>` placeholders after the control tokens.
    pub reserved_tokens: usize,
    /// Runs of these characters, from 2 to the given length, are pieces of
    /// their own: `[" ", 24]` gives `▁▁` … `▁`×24.
    pub whitespace_runs: Vec<(char, usize)>,
    /// Further pieces kept whole (never merged with neighbours), e.g. `\r`.
    pub user_defined: Vec<String>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            vocab_size: 256_000,
            alpha: 0.0,
            character_coverage: 0.9999,
            max_piece_length: 16,
            split_digits: true,
            split_by_unicode_script: true,
            allow_whitespace_only_pieces: true,
            add_dummy_prefix: true,
            nfc: true,
            byte_fallback: true,
            min_frequency: 2,
            unk_token: "<unk>".into(),
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
            pad_token: "<pad>".into(),
            control_tokens: vec!["<|im_start|>".into(), "<|im_end|>".into()],
            reserved_tokens: 98,
            whitespace_runs: vec![(' ', 24), ('\t', 6), ('\n', 3)],
            user_defined: vec!["\r".into()],
        }
    }
}

/// The piece SentencePiece writes for a space.
pub const SPACE: char = '\u{2581}';

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("tokenizer training: {0}")]
    Config(String),
    #[error("tokenizer training: the corpus has no text to learn from")]
    Empty,
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    #[cfg(feature = "cuda")]
    #[error("gpu: {0}")]
    Gpu(String),
}

impl TrainConfig {
    /// Problems with the settings, before any text is read.
    pub fn check(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if !(0.0..=1.0).contains(&self.alpha) {
            return bad(format!("alpha must be in [0, 1], not {}", self.alpha));
        }
        if !(self.character_coverage > 0.0 && self.character_coverage <= 1.0) {
            return bad(format!(
                "character_coverage must be in (0, 1], not {}",
                self.character_coverage
            ));
        }
        if self.max_piece_length == 0 {
            return bad("max_piece_length must be at least 1".into());
        }
        for (c, n) in &self.whitespace_runs {
            if *n < 2 || *n > 64 {
                return bad(format!(
                    "whitespace run of {c:?} up to {n}: the longest run must be 2..=64"
                ));
            }
        }
        let fixed = self.fixed_len();
        if self.vocab_size <= fixed {
            return bad(format!(
                "vocab_size {} leaves no room: {fixed} pieces are special, user-defined or bytes",
                self.vocab_size
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for p in self.fixed_pieces() {
            if p.is_empty() {
                return bad("an empty special or user-defined piece".into());
            }
            if !seen.insert(p.clone()) {
                return bad(format!("the piece {p:?} is listed twice"));
            }
        }
        Ok(())
    }

    /// Special tokens in id order: unk, bos, eos, pad, control, reserved.
    pub fn special_tokens(&self) -> Vec<String> {
        let mut v = vec![
            self.unk_token.clone(),
            self.bos_token.clone(),
            self.eos_token.clone(),
            self.pad_token.clone(),
        ];
        v.extend(self.control_tokens.iter().cloned());
        v.extend((0..self.reserved_tokens).map(|i| format!("<|reserved_token_{i}|>")));
        v
    }

    /// The whitespace-run pieces, in the normalized form (`▁` for a space),
    /// shortest first for each character.
    pub fn run_pieces(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (c, max) in self.normalized_runs() {
            for n in 2..=max {
                v.push(std::iter::repeat_n(c, n).collect());
            }
        }
        v
    }

    /// `whitespace_runs` with the space as the normalized text has it (`▁`).
    pub fn normalized_runs(&self) -> impl Iterator<Item = (char, usize)> + '_ {
        self.whitespace_runs
            .iter()
            .map(|&(c, max)| (if c == ' ' { SPACE } else { c }, max))
    }

    /// How many pieces precede the learned ones: fixed pieces and bytes.
    pub fn fixed_len(&self) -> usize {
        self.fixed_pieces().len() + if self.byte_fallback { 256 } else { 0 }
    }

    /// Pieces whose ids are fixed before training: specials, whitespace
    /// runs, other user-defined pieces.
    pub fn fixed_pieces(&self) -> Vec<String> {
        let mut v = self.special_tokens();
        v.extend(self.run_pieces());
        v.extend(self.user_defined.iter().cloned());
        v
    }
}

/// Counts the segments of every document in `files` on the rayon pool;
/// `progress` follows the bytes read.
pub fn count_files(
    files: &[std::path::PathBuf],
    spec: &crate::tokenizer::corpus::CorpusSpec,
    cfg: &TrainConfig,
    progress: &indicatif::ProgressBar,
) -> Result<WordCounts, crate::tokenizer::corpus::CorpusError> {
    let seg = Segmenter::new(cfg);
    let (counts, _) = crate::tokenizer::corpus::fold_docs(
        files,
        spec,
        progress,
        || (WordCounts::default(), String::new()),
        |(c, norm), docs| {
            for d in docs {
                c.add(&seg, &d.lang, &d.text, norm);
            }
        },
        |(mut a, n), (b, _)| {
            a.merge(b);
            (a, n)
        },
    )?;
    Ok(counts)
}

/// What a training run did, written beside the tokenizer as `training.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub vocab_size: usize,
    pub merges_learned: usize,
    /// The count of the last merge's pair (weighted).
    pub last_merge_count: u64,
    pub alphabet: usize,
    pub docs: u64,
    pub distinct_words: usize,
    pub languages: Vec<LanguageReport>,
    pub device: String,
    pub seconds_counting: f64,
    pub seconds_merging: f64,
    /// Why the vocabulary is smaller than asked for, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shortfall: Option<String>,
    pub config: TrainConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct LanguageReport {
    pub lang: String,
    pub docs: u64,
    pub bytes: u64,
    pub words: u64,
    /// The factor applied to this language's counts (see [`weights`]).
    pub scale: f64,
}

/// Which trainer runs the merge loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// The CPU trainer.
    #[default]
    Cpu,
    /// The CUDA trainer (the `cuda` feature and a GPU).
    #[value(alias = "gpu")]
    Cuda,
}

/// Trains from counts and writes `tokenizer.json`, `tokenizer.vocab` and
/// `training.json` into `dir`.
pub fn train_to_dir(
    counts: &WordCounts,
    cfg: &TrainConfig,
    device: Device,
    dir: &std::path::Path,
    seconds_counting: f64,
) -> Result<(Vocabulary, TrainReport), TrainError> {
    cfg.check()?;
    let t = std::time::Instant::now();
    let table = weights::weighted_table(counts, cfg.alpha);
    if table.words.is_empty() {
        return Err(TrainError::Empty);
    }
    tracing::debug!(
        "weighted table: {} words ({:.2}s)",
        table.words.len(),
        t.elapsed().as_secs_f64()
    );
    let merges = match device {
        Device::Cpu => train_bpe(&table, cfg)?,
        #[cfg(feature = "cuda")]
        Device::Cuda => cuda::train_bpe_cuda(&table, cfg)?,
        #[cfg(not(feature = "cuda"))]
        Device::Cuda => {
            return Err(TrainError::Config(
                "this forja was built without the `cuda` feature \
                 (cargo build --release --features cuda)"
                    .into(),
            ))
        }
    };
    let vocab = Vocabulary::build(&merges, cfg);
    let seconds_merging = t.elapsed().as_secs_f64();
    let io = |e: std::io::Error| TrainError::Io {
        path: dir.display().to_string(),
        source: e,
    };
    vocab.write(dir).map_err(io)?;
    let report = TrainReport {
        vocab_size: vocab.len(),
        merges_learned: merges.merges.len(),
        last_merge_count: merges.counts.last().copied().unwrap_or(0),
        alphabet: merges.alphabet_len,
        docs: counts.docs(),
        distinct_words: table.words.len(),
        languages: counts
            .langs
            .iter()
            .map(|(l, c)| LanguageReport {
                lang: l.clone(),
                docs: c.docs,
                bytes: c.bytes,
                words: c.occurrences(),
                scale: table
                    .scales
                    .iter()
                    .find(|(x, _)| x == l)
                    .map_or(0.0, |(_, s)| *s),
            })
            .collect(),
        device: format!("{device:?}").to_lowercase(),
        seconds_counting,
        seconds_merging,
        shortfall: shortfall(vocab.len(), &merges, cfg, table.words.len()),
        config: cfg.clone(),
    };
    if let Some(why) = &report.shortfall {
        tracing::warn!("{}: {why}", dir.display());
    }
    let json = serde_json::to_vec_pretty(&report).map_err(|e| io(std::io::Error::other(e)))?;
    crate::files::atomic_write(&dir.join("training.json"), &json).map_err(io)?;
    Ok((vocab, report))
}

/// Why a vocabulary of `made` pieces falls short of the one asked for: the
/// merge loop stops when no pair of symbols is counted `min_frequency`
/// times any more (or none is left at all).
fn shortfall(made: usize, m: &bpe::Merges, cfg: &TrainConfig, words: usize) -> Option<String> {
    (made < cfg.vocab_size).then(|| {
        format!(
            "asked for {} pieces, made {made}: after {} merges no pair of symbols is \
             counted min_frequency ({}) times any more (the last merge's pair: {} times; \
             {words} distinct words). Train on more text, or ask for fewer pieces or a \
             lower min_frequency.",
            cfg.vocab_size,
            m.merges.len(),
            cfg.min_frequency,
            m.counts.last().copied().unwrap_or(0),
        )
    })
}
