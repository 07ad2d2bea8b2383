//! Language identification backends.
//!
//! Each backend names languages in its own codes; forja names them as
//! Salamandra does (ISO 639-1, `sh` for Serbo-Croatian Latin, `no`/`nn`).

pub mod fasttext;
