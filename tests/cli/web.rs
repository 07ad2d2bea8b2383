//! Web sources: WARC and WET input (real Debian HTML pages written as a crawl by
//! `scripts/make-warc` with warcio, read whole and damaged), URL blocklists
//! and banned words.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::harness::*;

const WARC: &str = "tests/data/warc/install-guide.warc.gz";
const WET: &str = "tests/data/warc/install-guide.warc.wet.gz";
/// Pages in the fixture (40 responses with HTML 200, 40 conversion records).
const PAGES: usize = 40;

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(REPO).join(rel)).unwrap()
}

fn source(paths: &str) -> String {
    format!("[[source]]\nname = \"crawl\"\npaths = [\"{paths}\"]\nformat = \"warc\"\nlicence = \"GPL-2.0-or-later\"\n")
}

/// Runs a one-source manifest over `paths`; returns the output folder.
fn run(env: &Env, name: &str, paths: &str) -> std::path::PathBuf {
    let m = env.manifest(name, &source(paths));
    env.ok(&["run", "--quiet", m.to_str().unwrap()]);
    env.path(&format!("out-{name}"))
}

/// The byte offsets where the gzip members of a file start, and its end.
fn members(data: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    let mut rest = data;
    while !rest.is_empty() {
        let mut dec = flate2::bufread::GzDecoder::new(&mut rest);
        std::io::copy(&mut dec, &mut std::io::sink()).unwrap();
        drop(dec);
        starts.push(data.len() - rest.len());
    }
    starts
}

fn by_url(out: &Path) -> BTreeMap<String, serde_json::Value> {
    kept_records(out)
        .into_iter()
        .map(|r| (r["url"].as_str().unwrap().to_string(), r))
        .collect()
}

fn file_stats(out: &Path) -> serde_json::Value {
    let s = stats(out);
    assert_eq!(s["files"].as_array().unwrap().len(), 1, "{s:#}");
    s["files"][0].clone()
}

#[test]
fn warc_and_wet_pages_are_read_with_their_metadata_and_without_navigation() {
    let env = Env::new();
    env.write("in/a.warc.gz", &fixture(WARC));
    env.write("wet/a.warc.wet.gz", &fixture(WET));
    let warc_out = run(&env, "warc", "in/*.warc.gz");
    let wet_out = run(&env, "wet", "wet/*.wet.gz");
    for out in [&warc_out, &wet_out] {
        let s = assert_accounted(out);
        assert_eq!(s["kept"], PAGES as u64, "{s:#}");
        assert_eq!(file_stats(out)["status"], "complete");
    }
    // warcinfo, 40 requests, a 404, a 301, an image and a metadata record.
    assert_eq!(file_stats(&warc_out)["skipped_records"], 45);
    assert_eq!(file_stats(&wet_out)["skipped_records"], 1);

    let html = by_url(&warc_out);
    let wet = by_url(&wet_out);
    assert_eq!(
        html.keys().collect::<Vec<_>>(),
        wet.keys().collect::<Vec<_>>()
    );
    for (url, page) in &html {
        assert!(url.starts_with("https://www.debian.org/releases/bookworm/amd64/"));
        let meta = &page["metadata"];
        assert_eq!(meta["warc_type"], "response");
        let wet_meta = &wet[url]["metadata"];
        assert_eq!(wet_meta["warc_type"], "conversion");
        // The pair was crawled at the same time; the WET language is the page's folder.
        assert_eq!(meta["warc_date"], wet_meta["warc_date"]);
        let lang = url.split('/').nth_back(1).unwrap();
        assert_eq!(wet_meta["content_language"], lang, "{url}");
        for m in [meta, wet_meta] {
            let id = m["warc_record_id"].as_str().unwrap();
            assert!(id.starts_with("<urn:uuid:") && id.len() == 47, "{id}");
            assert!(m["warc_offset"].as_u64().is_some());
        }
        assert_ne!(meta["warc_record_id"], wet_meta["warc_record_id"]);
        // The WET text keeps the navigation (its last line links the next
        // page); the HTML extraction keeps the prose and drops it.
        let wet_text = wet[url]["text"].as_str().unwrap();
        let text = page["text"].as_str().unwrap();
        let longest = wet_text.lines().max_by_key(|l| l.len()).unwrap();
        let nav = wet_text.lines().last().unwrap();
        assert!(text.contains(longest), "{url}: main text lost:\n{text}");
        assert!(
            !text.lines().any(|l| l == nav),
            "{url}: navigation kept:\n{text}"
        );
        assert!(text.len() < wet_text.len(), "{url}");
        assert!(meta["title"].as_str().is_some_and(|t| !t.is_empty()));
    }
    // The page sent chunked, the gzip-encoded one and the Latin-1 one
    // declared only in <meta> read like the others.
    let latin1: Vec<_> = html
        .values()
        .filter(|p| p["metadata"]["charset"] == "windows-1252")
        .collect();
    assert_eq!(latin1.len(), 1);
    let text = latin1[0]["text"].as_str().unwrap();
    assert!(text.contains("Sprache") && text.contains("ü"), "{text}");
    // Ids are stable: the record number is the line.
    let first = &html["https://www.debian.org/releases/bookworm/amd64/en/apas01.html"];
    assert_eq!(first["line"], 3);
    assert_eq!(first["metadata"]["warc_offset"], 690);

    // HTML extraction runs on the workers; one thread gives the same bytes.
    let m = env.path("warc.toml");
    let one = env.path("out-one");
    env.ok(&[
        "run",
        "--quiet",
        m.to_str().unwrap(),
        "--threads",
        "1",
        "--out",
        one.to_str().unwrap(),
    ]);
    assert_eq!(tree(&one.join("jsonl")), tree(&warc_out.join("jsonl")));
}

#[test]
fn records_over_the_size_cap_are_rejected_and_the_rest_read() {
    let env = Env::new();
    let mut manifest = source("in/*.gz");
    manifest.push_str("[reader]\nmax_doc_bytes = 4000\n");
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(&fixture(WET)[..])
        .read_to_end(&mut plain)
        .unwrap();
    env.write("in/b.warc", &plain);
    let m = env.manifest("cap", &manifest.replace("in/*.gz", "in/b.warc"));
    env.ok(&["run", "--quiet", m.to_str().unwrap()]);
    let out = env.path("out-cap");
    let s = assert_accounted(&out);
    let rows = ledger(&out);
    assert!(!rows.is_empty());
    for (reason, _, line, detail) in &rows {
        assert_eq!(reason, "too_large", "{detail}");
        assert!(
            detail.starts_with(&format!("record {line} at byte offset ")),
            "{detail}"
        );
    }
    assert_eq!(
        s["kept"].as_u64().unwrap() + rows.len() as u64,
        PAGES as u64,
        "{s:#}"
    );
    for text in kept_texts(&out) {
        assert!(text.len() <= 4000);
    }
}

#[test]
fn a_corrupt_member_costs_that_record_only() {
    let env = Env::new();
    let mut data = fixture(WARC);
    let m = members(&data);
    // Member 6 is the third page's response.
    let (start, end) = (m[6], m[7]);
    let mid = (start + end) / 2;
    data[mid..mid + 40].fill(0xAA);
    env.write("in/a.warc.gz", &data);
    let out = run(&env, "corrupt", "in/*.warc.gz");
    let s = assert_accounted(&out);
    assert_eq!(s["kept"], PAGES as u64 - 1);
    assert_eq!(file_stats(&out)["status"], "complete");
    let rows = ledger(&out);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (reason, file, line, detail) = &rows[0];
    assert_eq!(reason, "malformed_record");
    assert_eq!(file, "in/a.warc.gz");
    assert_eq!(*line, 7);
    assert!(
        detail.contains(&format!("byte offset {start}:"))
            && detail.contains(&format!("next record at byte offset {end}")),
        "{detail}"
    );
}

#[test]
fn garbage_between_members_is_skipped_and_reported() {
    let env = Env::new();
    let data = fixture(WARC);
    let m = members(&data);
    let mut bad = data[..m[9]].to_vec();
    bad.extend_from_slice(&[b'x'; 100]);
    bad.extend_from_slice(&data[m[9]..]);
    env.write("in/a.warc.gz", &bad);
    let out = run(&env, "garbage", "in/*.warc.gz");
    let s = assert_accounted(&out);
    assert_eq!(s["kept"], PAGES as u64);
    let rows = ledger(&out);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "malformed_record");
    assert!(
        rows[0]
            .3
            .contains(&format!("byte offset {}: not a gzip member", m[9])),
        "{}",
        rows[0].3
    );
}

#[test]
fn a_truncated_file_keeps_what_came_before_and_says_where_it_broke() {
    let env = Env::new();
    let data = fixture(WARC);
    let m = members(&data);
    // Cut inside member 20 (record 21, the tenth page's response).
    env.write("in/a.warc.gz", &data[..m[20] + 30]);
    let out = run(&env, "cut", "in/*.warc.gz");
    let s = assert_accounted(&out);
    assert_eq!(s["kept"], 9, "{s:#}");
    let f = file_stats(&out);
    assert_eq!(f["status"], "truncated");
    let rows = ledger(&out);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "truncated_file");
    assert!(
        rows[0].3.contains(&format!("byte offset {}", m[20])),
        "{}",
        rows[0].3
    );
    assert!(f["detail"].as_str().unwrap().contains("file ends"));
}

#[test]
fn plain_warc_with_a_malformed_header_and_a_cut_end() {
    let env = Env::new();
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(&fixture(WARC)[..])
        .read_to_end(&mut plain)
        .unwrap();
    let starts: Vec<usize> = memchr_all(&plain, b"WARC/1.1\r\n");
    assert_eq!(starts.len(), 85);
    // Record 5 (the second page's response) loses its version line.
    let mut bad = plain.clone();
    bad[starts[4]..starts[4] + 4].copy_from_slice(b"WARX");
    // And the file stops inside the last page's response.
    let last_response = starts[80];
    bad.truncate(last_response + 600);
    env.write("in/a.warc", &bad);
    let out = run(&env, "plain", "in/*.warc");
    let s = assert_accounted(&out);
    let rows = ledger(&out);
    let reasons: Vec<_> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(reasons, ["malformed_record", "truncated_file"], "{rows:?}");
    assert!(rows[0].3.contains(&format!("byte offset {}", starts[4])));
    assert!(rows[1].3.contains(&format!("byte offset {last_response}")));
    assert_eq!(s["kept"], PAGES as u64 - 2, "{s:#}");
    assert_eq!(file_stats(&out)["status"], "truncated");
}

fn memchr_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(i, w)| *w == needle && (*i == 0 || hay[i - 1] == b'\n'))
        .map(|(i, _)| i)
        .collect()
}

/// True if python3 can import warcio. `.ci/run` installs it and sets
/// FORJA_REQUIRE_CROSSCHECKS, so CI fails rather than skips.
fn have_warcio() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import warcio"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("FORJA_REQUIRE_CROSSCHECKS").is_none(),
            "FORJA_REQUIRE_CROSSCHECKS is set but python3 cannot import warcio"
        );
        eprintln!("SKIPPED: python3 with warcio not found (pip install warcio)");
    }
    ok
}

/// warcio (Webrecorder's WARC library) lists every record of both files;
/// forja must account for each one and agree on each page's headers.
#[test]
fn every_record_matches_warcio() {
    if !have_warcio() {
        return;
    }
    let env = Env::new();
    env.write("in/a.warc.gz", &fixture(WARC));
    env.write("in/a.warc.wet.gz", &fixture(WET));
    let out = run(&env, "x", "in/*.gz");
    let script = r#"
import json, sys
from warcio.archiveiterator import ArchiveIterator
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        it = ArchiveIterator(f)
        for r in it:
            h = r.rec_headers
            http = r.http_headers
            print(json.dumps({"file": path.split("/")[-1], "offset": it.get_record_offset(),
                "type": h.get_header("WARC-Type"), "uri": h.get_header("WARC-Target-URI"),
                "id": h.get_header("WARC-Record-ID"), "date": h.get_header("WARC-Date"),
                "status": http.get_statuscode() if http else None,
                "ctype": http.get_header("Content-Type") if http else None}))
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(env.path("in/a.warc.gz"))
        .arg(env.path("in/a.warc.wet.gz"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let records: Vec<serde_json::Value> = o
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let pages: Vec<_> = records
        .iter()
        .filter(|r| {
            r["type"] == "conversion"
                || (r["type"] == "response"
                    && r["status"] == "200"
                    && r["ctype"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("text/html")))
        })
        .collect();
    let s = assert_accounted(&out);
    let skipped: u64 = s["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["skipped_records"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        s["documents_read"].as_u64().unwrap() + skipped,
        records.len() as u64
    );
    assert_eq!(s["kept"].as_u64().unwrap(), pages.len() as u64);
    let kept: BTreeMap<(String, u64), serde_json::Value> = kept_records(&out)
        .into_iter()
        .map(|r| {
            let file = r["file"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string();
            let off = r["metadata"]["warc_offset"].as_u64().unwrap();
            ((file, off), r)
        })
        .collect();
    for p in pages {
        let key = (
            p["file"].as_str().unwrap().to_string(),
            p["offset"].as_u64().unwrap(),
        );
        let doc = kept
            .get(&key)
            .unwrap_or_else(|| panic!("no document for {p}"));
        assert_eq!(doc["url"], p["uri"]);
        assert_eq!(doc["metadata"]["warc_record_id"], p["id"]);
        assert_eq!(doc["metadata"]["warc_date"], p["date"]);
        assert_eq!(doc["metadata"]["warc_type"], p["type"]);
    }
}

/// The crafted UT1 list of tests/data/urls against URLs that are, are not,
/// or only look like they are listed; then banned words in filter mode.
#[test]
fn url_blocklists_drop_chosen_categories_and_banned_words_are_measured() {
    let env = Env::new();
    let lists = Path::new(REPO).join("tests/data/urls");
    let texts: Vec<String> = udhr()
        .into_iter()
        .filter(|r| r["lang"] == "en")
        .map(|r| r["text"].as_str().unwrap().to_string())
        .collect();
    let urls = [
        Some("https://www.debian.org/releases/bookworm/amd64/en/ch01s01.html"),
        Some("https://cams.sexy-cams.test/room/1"),
        Some("http://freehost.example/~girls/page.html"),
        Some("http://freehost.example/~science/page.html"),
        Some("https://secure-login-paypa1.test/verify?id=3"),
        Some("http://185.243.115.84/payload"),
        Some("https://WWW.Casino-Royale.test/"),
        Some("https://notsexy-cams.test/"),
        None,
    ];
    let mut recs: Vec<_> = urls
        .iter()
        .zip(&texts)
        .map(|(u, t)| serde_json::json!({ "text": t, "url": u }))
        .collect();
    recs.push(serde_json::json!({
        "text": "Free xxx videos: milf, bukkake and gangbang clips with a dildo, all free today.",
        "url": "https://clips.example.org/free",
    }));
    env.write("in/web.jsonl", &jsonl(&recs));
    let manifest = format!(
        r#"
[[source]]
name = "web"
paths = ["in/*.jsonl"]
format = "jsonl"
url_field = "url"
licence = "test"

[[stage]]
type = "url_filter"
lists = "{}"

[[stage]]
type = "banned_words"
mode = "filter"
max_ratio = 0.05
"#,
        lists.display()
    );
    env.manifest("urls", &manifest);
    env.ok(&["run", "--quiet", "urls.toml"]);
    let out = env.path("out-urls");
    assert_accounted(&out);
    let mut dropped: Vec<(u64, String, String)> = ledger(&out)
        .into_iter()
        .map(|(reason, _, line, detail)| (line, reason, detail))
        .collect();
    dropped.sort();
    let lines: Vec<(u64, &str)> = dropped.iter().map(|d| (d.0, d.1.as_str())).collect();
    assert_eq!(
        lines,
        [
            (2, "url_blocklisted"),
            (3, "url_blocklisted"),
            (5, "url_blocklisted"),
            (6, "url_blocklisted"),
            (10, "banned_words"),
        ],
        "{dropped:#?}"
    );
    assert_eq!(dropped[0].2, "adult (domain sexy-cams.test)");
    assert_eq!(dropped[1].2, "adult (url freehost.example/~girls)");
    assert_eq!(dropped[2].2, "phishing (domain secure-login-paypa1.test)");
    assert_eq!(dropped[3].2, "malware (domain 185.243.115.84)");
    assert!(
        dropped[4].2.starts_with("5 of 14 words banned"),
        "{}",
        dropped[4].2
    );
    let kept: BTreeMap<u64, serde_json::Value> = kept_records(&out)
        .into_iter()
        .map(|r| (r["line"].as_u64().unwrap(), r))
        .collect();
    assert_eq!(kept.keys().copied().collect::<Vec<_>>(), [1, 4, 7, 8, 9]);
    // Gambling is annotated but not in the default drop list.
    assert_eq!(kept[&7]["url_category"], "gambling");
    for line in [1, 4, 8, 9] {
        assert!(kept[&line]["url_category"].is_null(), "{line}");
        assert_eq!(kept[&line]["banned_words"], 0);
        assert_eq!(kept[&line]["banned_word_ratio"], 0.0);
    }

    // A missing list folder stops the run before it starts, and says how to get one.
    env.manifest(
        "nolists",
        &manifest.replace(&lists.display().to_string(), "nope/urls"),
    );
    let o = env.forja(&["run", "--quiet", "nolists.toml"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nope/urls") && err.contains("scripts/fetch-ut1"),
        "{err}"
    );
}

/// A fixture's records, decompressed: the plain WARC and where each record starts.
fn plain_records(rel: &str) -> (Vec<u8>, Vec<usize>) {
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(&fixture(rel)[..])
        .read_to_end(&mut plain)
        .unwrap();
    let starts = memchr_all(&plain, b"WARC/1.");
    (plain, starts)
}

/// The documents as a reader of any layout must give them: text, URL and
/// the headers, in file order (offsets differ by layout).
fn documents(out: &Path) -> Vec<(String, String, serde_json::Value)> {
    kept_records(out)
        .into_iter()
        .map(|r| {
            let m = &r["metadata"];
            (
                r["url"].as_str().unwrap().to_string(),
                r["text"].as_str().unwrap().to_string(),
                serde_json::json!([
                    m["warc_record_id"],
                    m["warc_date"],
                    m["title"],
                    m["charset"]
                ]),
            )
        })
        .collect()
}

/// The IIPC WARC-zstd layout: a skippable frame (magic 0x184D2A5D) holding
/// the dictionary, then one zstd frame per record; returns the file and
/// where each record's frame starts.
fn warc_zst(
    records: &[&[u8]],
    dictionary: Option<&[u8]>,
    compress_dict: bool,
) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    if let Some(d) = dictionary {
        let payload = if compress_dict {
            zstd::encode_all(d, 3).unwrap()
        } else {
            d.to_vec()
        };
        out.extend_from_slice(&0x184D_2A5Du32.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&payload);
    }
    let mut c = match dictionary {
        Some(d) => zstd::bulk::Compressor::with_dictionary(3, d).unwrap(),
        None => zstd::bulk::Compressor::new(3).unwrap(),
    };
    // wget writes checksums; they are what tells a damaged frame.
    c.include_checksum(true).unwrap();
    let mut starts = Vec::new();
    for r in records {
        starts.push(out.len());
        out.extend_from_slice(&c.compress(r).unwrap());
    }
    (out, starts)
}

#[test]
fn zstd_per_record_with_a_dictionary_reads_like_gzip_per_record() {
    let env = Env::new();
    let (plain, starts) = plain_records(WARC);
    let mut bounds = starts.clone();
    bounds.push(plain.len());
    let records: Vec<&[u8]> = bounds.windows(2).map(|w| &plain[w[0]..w[1]]).collect();
    let dictionary = zstd::dict::from_samples(&records, 16 * 1024).unwrap();
    let (trained, frames) = warc_zst(&records, Some(&dictionary), false);
    let (packed, _) = warc_zst(&records, Some(&dictionary), true);
    let (bare, _) = warc_zst(&records, None, false);
    // The dictionary is what makes the frames small; the test would not
    // notice a reader that ignored it otherwise.
    assert!(trained.len() < bare.len());
    env.write("gz/a.warc.gz", &fixture(WARC));
    env.write("zd/a.warc.zst", &trained);
    env.write("zp/a.warc.zst", &packed);
    env.write("zb/a.warc.zst", &bare);
    let reference = documents(&run(&env, "gz", "gz/*.gz"));
    assert_eq!(reference.len(), PAGES);
    for name in ["zd", "zp", "zb"] {
        let out = run(&env, name, &format!("{name}/*.zst"));
        let s = assert_accounted(&out);
        assert_eq!(s["kept"], PAGES as u64, "{name}: {s:#}");
        assert_eq!(file_stats(&out)["skipped_records"], 45, "{name}");
        assert_eq!(documents(&out), reference, "{name}");
    }
    // Each document names its own frame: the record number picks it.
    for r in kept_records(&env.path("out-zd")) {
        let line = r["line"].as_u64().unwrap() as usize;
        assert_eq!(r["metadata"]["warc_offset"], frames[line - 1] as u64);
        assert!(r["metadata"]["warc_inner_offset"].is_null());
    }

    // A damaged frame (the third page's response, record 7) costs that record only.
    let mut bad = trained.clone();
    let (start, end) = (frames[6], frames[7]);
    bad[(start + end) / 2..(start + end) / 2 + 40].fill(0xAA);
    env.write("zx/a.warc.zst", &bad);
    let out = run(&env, "zx", "zx/*.zst");
    let s = assert_accounted(&out);
    assert_eq!(s["kept"], PAGES as u64 - 1);
    assert_eq!(file_stats(&out)["status"], "complete");
    let rows = ledger(&out);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].0.as_str(), rows[0].2), ("malformed_record", 7));
    assert!(
        rows[0]
            .3
            .contains(&format!("byte offset {start}: damaged zstd frame"))
            && rows[0]
                .3
                .contains(&format!("next record at byte offset {end}")),
        "{}",
        rows[0].3
    );

    // Cut inside the last record's frame: the file is truncated there.
    let last = *frames.last().unwrap();
    env.write("zc/a.warc.zst", &trained[..last + 20]);
    let out = run(&env, "zc", "zc/*.zst");
    assert_accounted(&out);
    assert_eq!(file_stats(&out)["status"], "truncated");
    let rows = ledger(&out);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "truncated_file");
    assert!(
        rows[0].3.contains(&format!("byte offset {last}")),
        "{}",
        rows[0].3
    );
}

#[test]
fn a_warc_compressed_whole_is_framed_as_a_stream() {
    let env = Env::new();
    let (one, _) = plain_records(WARC);
    // Four crawls in one stream, past the cap (1 MiB of header room on top
    // of max_doc_bytes), so no part of it is inflated whole.
    let plain: Vec<u8> = one.repeat(4);
    let starts = memchr_all(&plain, b"WARC/1.");
    assert!(plain.len() > (1 << 20) + 100_000);
    env.write("gz/a.warc.gz", &gzip(&plain));
    env.write("zs/a.warc.zst", &zstd::encode_all(&plain[..], 3).unwrap());
    env.write("ref/a.warc.gz", &fixture(WARC));
    let reference = documents(&run(&env, "ref", "ref/*.gz"));
    let four: Vec<_> = (0..4).flat_map(|_| reference.iter().cloned()).collect();
    for name in ["gz", "zs"] {
        let mut manifest = source(&format!("{name}/*"));
        manifest.push_str("[reader]\nmax_doc_bytes = 100000\nbatch_bytes = 300000\n");
        env.manifest(name, &manifest);
        env.ok(&["run", "--quiet", &format!("{name}.toml")]);
        let out = env.path(&format!("out-{name}"));
        let s = assert_accounted(&out);
        assert_eq!(s["kept"], 4 * PAGES as u64, "{name}: {s:#}");
        assert_eq!(file_stats(&out)["status"], "complete", "{name}");
        assert_eq!(file_stats(&out)["skipped_records"], 4 * 45, "{name}");
        assert_eq!(documents(&out), four, "{name}");
        // One member: every record is found by its place in the content.
        for r in kept_records(&out) {
            let m = &r["metadata"];
            assert_eq!(m["warc_offset"], 0, "{name}");
            // Left out at 0: the record starts where its member does.
            let inner = m["warc_inner_offset"].as_u64().unwrap_or(0) as usize;
            let line = r["line"].as_u64().unwrap() as usize;
            assert_eq!(inner, starts[line - 1], "{name}");
        }
    }

    // Cut two thirds of the way through: the records before the cut are
    // read, the one it falls in is rejected as truncated.
    let gz = gzip(&plain);
    env.write("cut/a.warc.gz", &gz[..gz.len() * 2 / 3]);
    let mut manifest = source("cut/*");
    manifest.push_str("[reader]\nmax_doc_bytes = 100000\n");
    env.manifest("cut", &manifest);
    env.ok(&["run", "--quiet", "cut.toml"]);
    let out = env.path("out-cut");
    let s = assert_accounted(&out);
    let kept = s["kept"].as_u64().unwrap();
    assert!(kept > 2 * PAGES as u64 && kept < 3 * PAGES as u64, "{s:#}");
    assert_eq!(file_stats(&out)["status"], "truncated");
    let rows = ledger(&out);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "truncated_file");
    assert!(
        rows[0].3.contains("byte offset 0 (byte ") && rows[0].3.contains("damaged gzip member"),
        "{}",
        rows[0].3
    );
}
