//! What the percentile scan keeps of each document (its language and
//! score) and how it is laid out in a unit's scores file, and the
//! cut-offs file the cluster step writes.

use super::*;

/// A unit's scores file: sections `0..P` hold the scored documents of the
/// languages that hash to each reduce partition (so a reduce task reads
/// only its own), and the engine's per-document section every document in
/// input order, for the final pass. The partition of language `lang`:
pub(super) fn partition_of(lang: &str, parts: usize) -> usize {
    (xxh3_64(lang.as_bytes()) % parts as u64) as usize
}

pub(super) fn read_cutoffs(bytes: &[u8], path: &std::path::Path) -> Result<Cutoffs, PhasedError> {
    serde_json::from_slice(bytes).map_err(|e| PhasedError::Corrupt {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// One document as the scan saw it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Record {
    pub(super) lang: String,
    pub(super) score: Option<DocScore>,
}

pub(super) fn put_record(out: &mut Vec<u8>, lang: &str, s: Option<&DocScore>) {
    let l = &lang.as_bytes()[..lang.len().min(255)];
    out.push(l.len() as u8);
    out.extend_from_slice(l);
    let s = s.copied().unwrap_or_default();
    out.extend_from_slice(&s.tokens.to_le_bytes());
    out.extend_from_slice(&s.logprob.to_le_bytes());
    out.extend_from_slice(&s.bytes.to_le_bytes());
}

pub(super) fn read_records(bytes: &[u8], path: &str) -> Result<Vec<Record>, PhasedError> {
    let corrupt = || PhasedError::Corrupt {
        path: path.into(),
        message: "truncated perplexity record".into(),
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let n = bytes[i] as usize;
        let end = i + 1 + n + 20;
        if end > bytes.len() {
            return Err(corrupt());
        }
        let lang = String::from_utf8_lossy(&bytes[i + 1..i + 1 + n]).into_owned();
        let f = &bytes[i + 1 + n..end];
        let tokens = u32::from_le_bytes(f[0..4].try_into().expect("4 bytes"));
        let logprob = f64::from_le_bytes(f[4..12].try_into().expect("8 bytes"));
        let bytes_ = u64::from_le_bytes(f[12..20].try_into().expect("8 bytes"));
        out.push(Record {
            lang,
            score: (tokens > 0).then_some(DocScore {
                tokens,
                logprob,
                bytes: bytes_,
            }),
        });
        i = end;
    }
    Ok(out)
}
