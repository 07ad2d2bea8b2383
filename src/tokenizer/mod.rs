//! Tokenizers: a fast exact encoder for byte-level BPE
//! ([`bytelevel::ByteLevelBpe`]), which the `tokenize` stage uses when it
//! reproduces the tokenizer (Hugging Face `tokenizers` otherwise); the
//! SentencePiece-style BPE trainer ([`train`]); the corpus reader both the
//! trainer and the fertility report use ([`corpus`]); fertility ([`fertility`]).

pub mod bytelevel;
pub mod corpus;
pub mod fertility;
pub mod train;

pub use bytelevel::ByteLevelBpe;
