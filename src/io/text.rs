//! A folder of plain-text files: each file is one document.
//!
//! Files are sized before they are read, so an oversized file is rejected
//! without being loaded.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Chunk, InputFile, ReadError, Reader, SourceSpec};
use crate::batch::CoreBuilder;
use crate::ledger::{FileStatus, Reason};

pub struct TextReader {
    files: Vec<InputFile>,
    next: usize,
    spec: Arc<SourceSpec>,
    batch_bytes: usize,
    progress: Arc<AtomicU64>,
}

impl TextReader {
    pub fn new(
        files: Vec<InputFile>,
        spec: Arc<SourceSpec>,
        batch_bytes: usize,
        progress: Arc<AtomicU64>,
    ) -> Self {
        TextReader {
            files,
            next: 0,
            spec,
            batch_bytes,
            progress,
        }
    }
}

impl Reader for TextReader {
    /// Reads files until about a batch of text is collected.
    fn step(&mut self, out: &mut VecDeque<Chunk>) -> Result<bool, ReadError> {
        let mut builder = CoreBuilder::with_capacity(64, self.batch_bytes);
        let mut bytes = 0usize;
        let mut rejects = Vec::new();
        while self.next < self.files.len() && bytes < self.batch_bytes {
            let f = &self.files[self.next];
            self.next += 1;
            let reject = |reason, detail| self.spec.reject(&f.rel, 1, reason, detail);
            let read = std::fs::File::open(&f.path).and_then(|file| {
                let size = file.metadata()?.len();
                if size > self.spec.max_doc_bytes {
                    return Ok(Err(size));
                }
                let mut buf = Vec::with_capacity(size as usize);
                file.take(self.spec.max_doc_bytes + 1)
                    .read_to_end(&mut buf)?;
                Ok(Ok(buf))
            });
            self.progress.fetch_add(f.size, Ordering::Relaxed);
            match read {
                Err(e) => rejects.push(reject(Reason::ReadError, e.to_string())),
                Ok(Err(size)) => rejects.push(reject(
                    Reason::TooLarge,
                    format!(
                        "{size} bytes > reader.max_doc_bytes {}",
                        self.spec.max_doc_bytes
                    ),
                )),
                Ok(Ok(buf)) if buf.len() as u64 > self.spec.max_doc_bytes => rejects.push(reject(
                    Reason::TooLarge,
                    format!("grew past reader.max_doc_bytes {}", self.spec.max_doc_bytes),
                )),
                Ok(Ok(buf)) if buf.is_empty() => {
                    rejects.push(reject(Reason::EmptyText, "empty file".into()))
                }
                Ok(Ok(buf)) => match String::from_utf8(buf) {
                    Ok(text) => {
                        bytes += text.len();
                        builder.push(&self.spec.name, &f.rel, 1, &text, None, None);
                    }
                    Err(e) => rejects.push(reject(
                        Reason::InvalidUtf8,
                        format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
                    )),
                },
            }
        }
        if !builder.is_empty() {
            out.push_back(Chunk::Batch(builder.finish()));
        }
        if !rejects.is_empty() {
            out.push_back(Chunk::Rejects(rejects));
        }
        if self.next < self.files.len() {
            return Ok(true);
        }
        let first = self
            .files
            .first()
            .map(|f| f.rel.to_string())
            .unwrap_or_default();
        let label = if self.files.len() == 1 {
            first
        } else {
            format!("{first} (+{} more text files)", self.files.len() - 1)
        };
        out.push_back(Chunk::FileEnd {
            file: label.into(),
            status: FileStatus::Complete,
            detail: None,
        });
        Ok(false)
    }
}
