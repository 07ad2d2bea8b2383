//! Tokenizers: a fast exact encoder for byte-level BPE
//! ([`bytelevel::ByteLevelBpe`]); the `tokenize` stage uses it when it
//! reproduces the tokenizer, and Hugging Face `tokenizers` otherwise.

pub mod bytelevel;

pub use bytelevel::ByteLevelBpe;
