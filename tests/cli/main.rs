//! End-to-end tests of the `forja` binary: one test binary, one temp folder per test.

mod harness;

mod bad_input;
mod dedup;
mod determinism;
mod faults;
mod fuzz_pass;
mod manifest;
mod megatron;
mod perplexity;
mod provenance;
mod quality;
mod readers;
mod report;
mod resume;
mod slurm;
mod storage;
mod tokenizer;
mod trust;
mod web;
