//! The reader against WARC files whose Content-Length fields lie.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::*;

fn record(i: usize, claim: Option<&str>) -> Vec<u8> {
    let body = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html><body><p>Page {i} has some words.</p></body></html>"
    );
    let len = claim.map_or(body.len().to_string(), str::to_string);
    let mut r = format!(
        "WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: http://example.com/{i}\r\nContent-Type: application/http; msgtype=response\r\nContent-Length: {len}\r\n\r\n"
    )
    .into_bytes();
    r.extend_from_slice(body.as_bytes());
    r.extend_from_slice(b"\r\n\r\n");
    r
}

/// A reader over the file at `path`, documents capped at `cap` bytes.
fn reader(path: &std::path::Path, size: u64, cap: u64) -> WarcReader {
    let spec = Arc::new(SourceSpec {
        name: "s".into(),
        text_field: "text".into(),
        url_field: None,
        max_doc_bytes: cap,
    });
    let file = InputFile {
        path: path.to_path_buf(),
        rel: path.file_name().unwrap().to_string_lossy().into(),
        size,
    };
    WarcReader::new(file, spec, 1 << 16, Arc::new(AtomicU64::new(0)))
}

/// (record numbers framed, (number, reason) rejected, file status) of the chunks.
fn collect(q: VecDeque<Chunk>) -> (Vec<u64>, Vec<(u64, Reason)>, FileStatus) {
    let (mut records, mut rejects, mut status) = (Vec::new(), Vec::new(), None);
    for c in q {
        match c {
            Chunk::Records { records: rr, .. } => {
                records.extend(rr.records.iter().map(|x| x.number))
            }
            Chunk::Rejects(rows) => rejects.extend(rows.iter().map(|x| (x.line, x.reason))),
            Chunk::FileEnd { status: s, .. } => status = Some(s),
            _ => {}
        }
    }
    (records, rejects, status.expect("an end marker"))
}

/// Reads `bytes` as the file `name` whole.
fn read(bytes: &[u8], name: &str, cap: u64) -> (Vec<u64>, Vec<(u64, Reason)>, FileStatus) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let mut r = reader(&path, bytes.len() as u64, cap);
    let mut q = VecDeque::new();
    while r.step(&mut q).unwrap() {}
    collect(q)
}

/// Every number from 1 up is framed or rejected, once.
fn conserved(records: &[u64], rejects: &[(u64, Reason)]) -> usize {
    let mut all: Vec<u64> = records
        .iter()
        .copied()
        .chain(rejects.iter().map(|r| r.0))
        .collect();
    all.sort();
    let n = all.len();
    assert_eq!(all, (1..=n as u64).collect::<Vec<_>>(), "numbers each once");
    n
}

fn file_with(bad: usize, claim: &str, n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| record(i, (i == bad).then_some(claim)))
        .collect()
}

#[test]
fn a_length_over_the_cap_does_not_swallow_later_records() {
    let f = file_with(2, "5000000", 20);
    let (records, rejects, status) = read(&f, "over.warc", 100_000);
    assert_eq!(records.len(), 19, "{rejects:?}");
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].1, Reason::MalformedRecord);
    assert_eq!(status, FileStatus::Complete);
    conserved(&records, &rejects);
}

#[test]
fn a_length_too_big_does_not_merge_records() {
    let one = record(0, None).len();
    let f = file_with(2, &(one * 10).to_string(), 20);
    let (records, rejects, _) = read(&f, "big.warc", 1 << 20);
    assert_eq!(records.len(), 19, "{rejects:?}");
    assert_eq!(rejects, vec![(3, Reason::MalformedRecord)]);
    conserved(&records, &rejects);
}

#[test]
fn an_impossible_length_does_not_wrap() {
    for claim in [
        "18446744073709551615",
        "18446744073709551000",
        "99999999999999999999999",
    ] {
        let f = file_with(4, claim, 10);
        let (records, rejects, _) = read(&f, "wrap.warc", 1 << 20);
        assert_eq!(records.len(), 9, "{claim}: {rejects:?}");
        assert_eq!(rejects.len(), 1, "{claim}");
        conserved(&records, &rejects);
    }
}

#[test]
fn a_length_too_small_costs_its_record_only() {
    let f = file_with(5, "10", 12);
    let (records, rejects, _) = read(&f, "small.warc", 1 << 20);
    assert_eq!(records.len(), 11, "{rejects:?}");
    conserved(&records, &rejects);
}

#[test]
fn a_lying_length_inside_a_gzip_member_costs_that_record_only() {
    let mut f = Vec::new();
    for i in 0..10 {
        let rec = record(i, (i == 3).then_some("9000"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &rec).unwrap();
        f.extend(gz.finish().unwrap());
    }
    let (records, rejects, status) = read(&f, "m.warc.gz", 1 << 20);
    assert_eq!(records.len(), 9, "{rejects:?}");
    assert_eq!(rejects.len(), 1);
    assert_eq!(status, FileStatus::Complete);
    conserved(&records, &rejects);
}

#[test]
fn a_true_length_over_the_cap_is_too_large_and_the_rest_read() {
    // A genuine big record: its length is right, it is only too large.
    let mut f = Vec::new();
    for i in 0..6 {
        if i == 2 {
            // Over the framing cap (max_doc_bytes plus 1 MiB of header room).
            let body = "x".repeat(1_500_000);
            f.extend(
                format!(
                    "WARC/1.0\r\nWARC-Type: resource\r\nContent-Length: {}\r\n\r\n{body}\r\n\r\n",
                    body.len()
                )
                .into_bytes(),
            );
        } else {
            f.extend(record(i, None));
        }
    }
    let (records, rejects, _) = read(&f, "true.warc", 100_000);
    assert_eq!(records.len(), 5);
    assert_eq!(rejects, vec![(3, Reason::TooLarge)]);
    // The same, compressed whole as one gzip stream.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &f).unwrap();
    // (A member this small is framed whole; the page decoder rejects the
    // big record as too large.)
    let (records, rejects, _) = read(&gz.finish().unwrap(), "whole.warc.gz", 100_000);
    assert!(
        rejects.iter().all(|r| r.1 == Reason::TooLarge),
        "{rejects:?}"
    );
    assert_eq!(conserved(&records, &rejects), 6);
}

#[test]
fn a_dictionary_bomb_is_refused_in_bounded_memory() {
    // A dictionary frame whose zstd payload inflates to 1 GiB of zeros.
    let zeros = vec![0u8; 1 << 20];
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
    for _ in 0..1024 {
        std::io::Write::write_all(&mut enc, &zeros).unwrap();
    }
    let payload = enc.finish().unwrap();
    let mut f = vec![0x5d, 0x2a, 0x4d, 0x18];
    f.extend((payload.len() as u32).to_le_bytes());
    f.extend(&payload);
    f.extend(zstd::encode_all(&record(0, None)[..], 3).unwrap());
    let (records, rejects, _) = read(&f, "bomb.warc.zst", 1 << 20);
    // The plain frame after it still reads; the bad dictionary is one row.
    assert_eq!(records.len() + rejects.len(), 2, "{rejects:?}");
    assert!(rejects.iter().any(|r| r.1 == Reason::MalformedRecord));
}

#[test]
fn a_file_cut_while_it_is_read_ends_as_truncated_without_a_crash() {
    let f: Vec<u8> = (0..20_000).flat_map(|i| record(i, None)).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.warc");
    std::fs::write(&path, &f).unwrap();
    let mut r = reader(&path, f.len() as u64, 1 << 20);
    let mut q = VecDeque::new();
    assert!(r.step(&mut q).unwrap());
    // Another program cuts the file to a third.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(f.len() as u64 / 3)
        .unwrap();
    while r.step(&mut q).unwrap() {}
    let (records, rejects, status) = collect(q);
    assert_eq!(status, FileStatus::Truncated);
    assert!(!records.is_empty() && records.len() < 20_000 / 3 + 1);
    assert!(rejects.iter().any(|r| r.1 == Reason::TruncatedFile));
    conserved(&records, &rejects);
}

#[test]
fn a_warc_compressed_whole_with_a_long_zstd_window_is_read() {
    let f: Vec<u8> = (0..50).flat_map(|i| record(i, None)).collect();
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.long_distance_matching(true).unwrap();
    enc.window_log(31).unwrap();
    std::io::Write::write_all(&mut enc, &f).unwrap();
    let (records, rejects, status) = read(&enc.finish().unwrap(), "long.warc.zst", 1 << 20);
    assert_eq!(records.len(), 50, "{rejects:?}");
    assert_eq!(status, FileStatus::Complete);
}
