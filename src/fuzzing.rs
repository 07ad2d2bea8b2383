//! Entry points for the fuzz targets (`fuzz/`) and the bounded fuzz pass
//! the tests run: each takes arbitrary bytes, reads them the way a run
//! would, and checks the reader's own promise: it ends, every document it
//! met is kept or rejected exactly once (numbers 1, 2, ... with no gap),
//! and nothing panics. A broken promise panics, which the fuzzer reports.
//!
//! Inputs go through a real file (readers take paths), one per thread, in
//! the system's temporary folder.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::io::{decode, open_unit, Chunk, InputFile, SourceSpec, Unit};
use crate::io::{InputFormat, ReaderConfig};

/// For the fuzz targets: panics that forja catches itself (a page, a row
/// group) are not crashes, so they print nothing; libfuzzer-sys still
/// aborts on any panic that escapes a target.
pub fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

/// A per-thread scratch file holding the bytes under `name`.
fn scratch(bytes: &[u8], name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "forja-fuzz-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("scratch file");
    p
}

/// Reads `bytes` as one file of `format` named `name` (the name is only a
/// hint: codecs are sniffed) with documents capped at `max_doc_bytes`;
/// returns (documents kept, rows rejected). Panics if the reader breaks
/// its promises.
pub fn read(bytes: &[u8], name: &str, format: InputFormat, max_doc_bytes: u64) -> (usize, usize) {
    let path = scratch(bytes, name);
    let spec = Arc::new(SourceSpec {
        name: "fuzz".into(),
        text_field: "text".into(),
        url_field: Some("url".into()),
        max_doc_bytes,
    });
    let unit = Unit {
        index: 0,
        source: 0,
        files: vec![InputFile {
            path,
            rel: name.into(),
            size: bytes.len() as u64,
        }],
    };
    let reader_cfg = ReaderConfig {
        max_doc_bytes,
        batch_bytes: 1 << 16,
        ..Default::default()
    };
    let mut r = open_unit(
        &unit,
        format,
        spec.clone(),
        &reader_cfg,
        Arc::new(AtomicU64::new(0)),
    );
    let mut q = VecDeque::new();
    // What the reader met (record, line or row numbers), and what decoding
    // made of them (kept or rejected).
    let (mut met, mut decided) = (Vec::new(), Vec::new());
    let (mut kept, mut rejected, mut ends) = (0, 0, 0);
    // A reader must finish: no more steps than bytes (plus a margin).
    let mut budget = bytes.len() + 64;
    loop {
        let more = match r.step(&mut q) {
            Ok(m) => m,
            // A file that cannot be opened at all is an error for the run
            // to report (e.g. not Parquet); that is a promise kept too.
            Err(_) => return (0, 0),
        };
        for c in q.drain(..) {
            match &c {
                Chunk::FileEnd { .. } => {
                    ends += 1;
                    continue;
                }
                Chunk::Records { records, .. } => {
                    met.extend(records.records.iter().map(|r| r.number))
                }
                Chunk::Rejects(rows) => met.extend(rows.iter().map(|r| r.line)),
                Chunk::Lines {
                    first_line, data, ..
                } => {
                    let n = memchr::memchr_iter(b'\n', data).count() as u64
                        + u64::from(!data.ends_with(b"\n"));
                    met.extend(*first_line..*first_line + n);
                }
                Chunk::Batch(b) => {
                    let core = crate::batch::Core::of(b);
                    met.extend((0..b.num_rows()).map(|i| core.line.value(i)));
                }
            }
            let d = decode(c, &spec);
            if let Some(b) = &d.batch {
                let core = crate::batch::Core::of(b);
                for i in 0..b.num_rows() {
                    decided.push(core.line.value(i));
                    assert!(!core.text.value(i).is_empty(), "an empty document was kept");
                }
                kept += b.num_rows();
            }
            rejected += d.rejects.len();
            decided.extend(d.rejects.iter().map(|r| r.line));
        }
        if !more {
            break;
        }
        budget = budget.checked_sub(1).expect("the reader does not end");
    }
    assert_eq!(ends, 1, "one end marker per file");
    met.sort_unstable();
    let n = met.len() as u64;
    assert!(
        met.iter().copied().eq(1..=n),
        "every record, line or row met once, numbered without gaps"
    );
    decided.sort_unstable();
    let len = decided.len();
    decided.dedup();
    assert_eq!(
        decided.len(),
        len,
        "a document both kept and rejected, or twice"
    );
    assert!(
        decided.iter().all(|d| met.binary_search(d).is_ok()),
        "a document the reader never met"
    );
    (kept, rejected)
}

/// Extracts text from `html` as the WARC reader does (nesting checked
/// first); returns the text's length, or 0 for a page refused as too deep.
pub fn html(bytes: &[u8]) -> usize {
    let mut http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n".to_vec();
    http.extend_from_slice(bytes);
    crate::io::fuzz_page(&http)
}

/// Parses manifest text; returns the number of problems found (0 when it
/// parses). Never panics on any text.
pub fn manifest(text: &str) -> usize {
    match crate::manifest::parse(text) {
        Ok(_) => 0,
        Err(p) => p.len(),
    }
}

/// Splits `text` into words both ways (UAX #29 and the quality rules'
/// spaCy rules), counts its sentences and tests each line for prose.
/// Checks that every word is a non-empty slice of the text, in order and
/// without overlap, with no whitespace at its ends (none at all in the
/// spaCy-rule split); returns the number of words.
pub fn words(text: &str) -> usize {
    let base = text.as_ptr() as usize;
    let mut n = 0;
    // UAX #29 joins digits across a narrow no-break space (U+202F is
    // ExtendNumLet: `25 000`), so only its ends must be free of whitespace;
    // the spaCy-rule split cuts at every whitespace character.
    let uax = crate::text::words(text);
    let spacy = crate::text::spacy::words(text);
    for (split, inner_allowed) in [(&uax, true), (&spacy, false)] {
        let mut at = 0;
        for w in split {
            let start = w.as_ptr() as usize - base;
            assert!(
                start >= at && start + w.len() <= text.len(),
                "a word out of order"
            );
            let ends = w.starts_with(char::is_whitespace) || w.ends_with(char::is_whitespace);
            let inner = !inner_allowed && w.chars().any(char::is_whitespace);
            assert!(!w.is_empty() && !ends && !inner, "a bad word {w:?}");
            at = start + w.len();
        }
        n += split.len();
    }
    for line in text.lines() {
        n += crate::text::sentences(line);
        n += usize::from(crate::lid::is_prose(line, 25));
    }
    n
}

/// forja's own model and counts files from arbitrary bytes: the first byte
/// picks the reader (even: the second-opinion language model, odd: a
/// tokenizer word-counts file), the rest is the file. Either reader must
/// refuse or accept without panicking, and a model it accepts must answer
/// a question; returns what was read (languages or words).
pub fn models(data: &[u8]) -> usize {
    let Some((&which, file)) = data.split_first() else {
        return 0;
    };
    if which % 2 == 0 {
        match crate::lid::groups::GroupModel::from_bytes(file) {
            Ok(m) => {
                let langs = m.languages();
                let _ = m.decide_among(&langs, "Tots els éssers humans neixen lliures");
                langs.len()
            }
            Err(_) => 0,
        }
    } else {
        match crate::tokenizer::train::words::WordCounts::read_from(file, "fuzz") {
            Ok(c) => c.distinct(),
            Err(_) => 0,
        }
    }
}
