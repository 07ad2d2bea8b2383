//! WARC records into documents: WET text as it is, HTTP responses with HTML
//! through Readability. Pure, so it runs on the worker threads.

use std::borrow::Cow;
use std::io::Read;

use encoding_rs::Encoding;

use super::{blank_line, RawRecords};
use crate::batch::CoreBuilder;
use crate::io::{Decoded, SourceSpec};
use crate::ledger::Reason;

/// The WARC headers a document needs, by lower-case name.
#[derive(Default)]
struct Headers<'a> {
    kind: &'a str,
    uri: Option<&'a str>,
    date: Option<&'a str>,
    id: Option<&'a str>,
    content_type: Option<&'a str>,
    language: Option<&'a str>,
}

/// Turns framed records into documents; pure, runs on worker threads.
pub fn decode_records(raw: &RawRecords, file: &str, spec: &SourceSpec) -> Decoded {
    let mut builder = CoreBuilder::with_capacity(raw.records.len(), raw.data.len() / 2);
    let mut out = Decoded::default();
    for rec in &raw.records {
        let data = &raw.data[rec.start..rec.end];
        let reject = |reason, what: String| {
            spec.reject(
                file,
                rec.number,
                reason,
                format!("record {} at {}: {what}", rec.number, rec.place),
            )
        };
        let (rest, fields) = match warc::parser::headers(data) {
            Ok((rest, (_, fields, _))) => (rest, fields),
            Err(_) => {
                out.rejects.push(reject(
                    Reason::MalformedRecord,
                    "unreadable WARC header".into(),
                ));
                continue;
            }
        };
        let block = &rest[blank_line(rest).unwrap_or(0)..];
        let mut h = Headers::default();
        for (name, value) in &fields {
            let Ok(value) = std::str::from_utf8(value) else {
                continue;
            };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "warc-type" => h.kind = value,
                "warc-target-uri" => {
                    // WARC 1.0 writers may wrap the URI in angle brackets.
                    h.uri = Some(value.trim_start_matches('<').trim_end_matches('>'))
                }
                "warc-date" => h.date = Some(value),
                "warc-record-id" => h.id = Some(value),
                "content-type" => h.content_type = Some(value),
                "warc-identified-content-language" => h.language = Some(value),
                _ => {}
            }
        }
        let page = match h.kind {
            "conversion" if block.len() as u64 > spec.max_doc_bytes => Err((
                Reason::TooLarge,
                format!(
                    "{} bytes of text > reader.max_doc_bytes {}",
                    block.len(),
                    spec.max_doc_bytes
                ),
            )),
            "conversion" => match std::str::from_utf8(block) {
                Ok(t) => Ok(Some(Page {
                    text: Cow::Borrowed(t),
                    charset: None,
                    title: None,
                })),
                Err(e) => Err((
                    Reason::InvalidUtf8,
                    format!("invalid UTF-8 at byte {} of the text", e.valid_up_to()),
                )),
            },
            "response" if block.starts_with(b"HTTP/") => http_page(block, h.uri, spec),
            _ => Ok(None),
        };
        match page {
            Ok(None) => out.skipped_records += 1,
            Err((reason, what)) => out.rejects.push(reject(reason, what)),
            Ok(Some(page)) if page.text.trim().is_empty() => out
                .rejects
                .push(reject(Reason::EmptyText, "no text in the page".into())),
            Ok(Some(page)) => {
                let mut meta = serde_json::Map::new();
                let mut put = |k: &str, v: Option<&str>| {
                    if let Some(v) = v {
                        meta.insert(k.into(), v.into());
                    }
                };
                put("warc_type", Some(h.kind));
                put("warc_record_id", h.id);
                put("warc_date", h.date);
                put("content_language", h.language);
                put("charset", page.charset);
                put("title", page.title.as_deref());
                meta.insert("warc_offset".into(), rec.place.offset.into());
                if let Some(inner) = rec.place.inner {
                    meta.insert("warc_inner_offset".into(), inner.into());
                }
                let meta = serde_json::Value::Object(meta).to_string();
                builder.push(&spec.name, file, rec.number, &page.text, h.uri, Some(&meta));
            }
        }
    }
    if !builder.is_empty() {
        out.batch = Some(builder.finish());
    }
    out
}

struct Page<'a> {
    text: Cow<'a, str>,
    charset: Option<&'static str>,
    title: Option<String>,
}

type PageResult<'a> = Result<Option<Page<'a>>, (Reason, String)>;

/// An HTTP response's page as text, `None` when it is not a 2xx HTML page.
fn http_page<'a>(block: &[u8], uri: Option<&str>, spec: &SourceSpec) -> PageResult<'a> {
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut slots);
    let head = match resp.parse(block) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err((Reason::MalformedRecord, "the HTTP header is cut off".into()))
        }
        Err(e) => return Err((Reason::MalformedRecord, format!("bad HTTP header: {e}"))),
    };
    if !(200..300).contains(&resp.code.unwrap_or(0)) {
        return Ok(None);
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let content_type = header("content-type");
    let mut body = Cow::Borrowed(&block[head..]);
    if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body)
            .ok_or_else(|| (Reason::MalformedRecord, "bad chunked encoding".to_string()))?
            .into();
    }
    let limit = spec.max_doc_bytes;
    match header("content-encoding")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("identity") | Some("") => {}
        Some("gzip") | Some("x-gzip") => {
            body = inflate(flate2::read::GzDecoder::new(&body[..]), limit)?.into()
        }
        Some("deflate") => body = inflate(flate2::read::ZlibDecoder::new(&body[..]), limit)?.into(),
        Some(other) => {
            return Err((
                Reason::ReadError,
                format!("unsupported Content-Encoding {other:?}"),
            ))
        }
    }
    let html = match content_type {
        Some(ct) => {
            let mime = ct.split(';').next().unwrap_or("").trim();
            mime.eq_ignore_ascii_case("text/html")
                || mime.eq_ignore_ascii_case("application/xhtml+xml")
        }
        None => sniff_html(&body),
    };
    if !html {
        return Ok(None);
    }
    if body.len() as u64 > limit {
        return Err((
            Reason::TooLarge,
            format!(
                "{} bytes of HTML > reader.max_doc_bytes {limit}",
                body.len()
            ),
        ));
    }
    // Nesting is bounded before any parser sees the page (stack and time).
    super::depth::check(&body).map_err(|why| (Reason::TooDeep, why))?;
    let (html, encoding) = decode_html(&body, content_type);
    // A crawl holds pages no parser's author has seen; a panic in the
    // extractor costs that page, not the run.
    let (text, title) =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| html_to_text(&html, uri)))
            .map_err(|_| {
                (
                    Reason::ReadError,
                    "the HTML-to-text extractor failed on this page".to_string(),
                )
            })?;
    Ok(Some(Page {
        text: Cow::Owned(text),
        charset: Some(encoding.name()),
        title,
    }))
}

fn inflate(mut r: impl Read, limit: u64) -> Result<Vec<u8>, (Reason, String)> {
    let mut out = Vec::new();
    (&mut r)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| (Reason::MalformedRecord, format!("bad compressed body: {e}")))?;
    if out.len() as u64 > limit {
        return Err((
            Reason::TooLarge,
            format!("the body inflates past reader.max_doc_bytes {limit}"),
        ));
    }
    Ok(out)
}

/// Undoes HTTP/1.1 chunked transfer encoding; a missing last chunk is
/// tolerated, as crawlers often cut long transfers.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    loop {
        let nl = memchr::memchr(b'\n', data)?;
        let line = std::str::from_utf8(&data[..nl]).ok()?;
        let size = line.split(';').next()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        data = &data[nl + 1..];
        if size == 0 {
            return Some(out);
        }
        let take = size.min(data.len());
        out.extend_from_slice(&data[..take]);
        if take < size {
            return Some(out);
        }
        data = &data[take..];
        data = data.strip_prefix(b"\r\n").unwrap_or(data);
        if data.is_empty() {
            return Some(out);
        }
    }
}

fn sniff_html(body: &[u8]) -> bool {
    let head = &body[..body.len().min(1024)];
    let lower = head.to_ascii_lowercase();
    memchr::memmem::find(&lower, b"<html").is_some()
        || memchr::memmem::find(&lower, b"<!doctype html").is_some()
}

/// Decodes HTML by the HTTP charset, a byte-order mark, a `<meta>` charset
/// in the first 1024 bytes, or else UTF-8 if it is valid and Windows-1252
/// (the HTML standard's fallback for Western pages) if not.
fn decode_html(body: &[u8], content_type: Option<&str>) -> (String, &'static Encoding) {
    let declared = content_type
        .and_then(charset_param)
        .or_else(|| Encoding::for_bom(body).map(|(e, _)| e))
        .or_else(|| meta_charset(&body[..body.len().min(1024)]));
    let encoding = declared.unwrap_or_else(|| match std::str::from_utf8(body) {
        Ok(_) => encoding_rs::UTF_8,
        Err(_) => encoding_rs::WINDOWS_1252,
    });
    let (text, used, _) = encoding.decode(body);
    (text.into_owned(), used)
}

fn charset_param(content_type: &str) -> Option<&'static Encoding> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| Encoding::for_label(v.trim().trim_matches(['"', '\'']).as_bytes()))?
    })
}

fn meta_charset(head: &[u8]) -> Option<&'static Encoding> {
    let lower = head.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&lower[from..], b"<meta") {
        let tag_start = from + i;
        let tag_end =
            memchr::memchr(b'>', &lower[tag_start..]).map_or(lower.len(), |e| tag_start + e);
        let tag = &lower[tag_start..tag_end];
        if let Some(c) = memchr::memmem::find(tag, b"charset=") {
            let value: Vec<u8> = tag[c + 8..]
                .iter()
                .skip_while(|b| matches!(b, b'"' | b'\'' | b' '))
                .take_while(|b| !matches!(b, b'"' | b'\'' | b' ' | b';' | b'/' | b'>'))
                .copied()
                .collect();
            if let Some(e) = Encoding::for_label(&value) {
                // The HTML standard reads a declared UTF-16 as UTF-8 here.
                return Some(
                    if e == encoding_rs::UTF_16LE || e == encoding_rs::UTF_16BE {
                        encoding_rs::UTF_8
                    } else {
                        e
                    },
                );
            }
        }
        from = tag_end;
    }
    None
}

/// An HTTP response through the page path (for the fuzz targets): the
/// length of the text extracted, 0 when none or refused.
pub(crate) fn fuzz_page(http: &[u8]) -> usize {
    let spec = SourceSpec {
        name: "fuzz".into(),
        text_field: "text".into(),
        url_field: None,
        max_doc_bytes: 1 << 20,
    };
    match http_page(http, Some("http://example.com/"), &spec) {
        Ok(Some(p)) => p.text.len(),
        _ => 0,
    }
}

/// The page's main text (and title), by Readability, or its visible text
/// without navigation when Readability finds no article.
fn html_to_text(html: &str, uri: Option<&str>) -> (String, Option<String>) {
    let config = dom_smoothie::Config {
        text_mode: dom_smoothie::TextMode::Formatted,
        // Metadata from JSON-LD is not used; skipping it saves a parse.
        disable_json_ld: true,
        ..Default::default()
    };
    let url = uri.filter(|u| u.starts_with("http://") || u.starts_with("https://"));
    let readability =
        dom_smoothie::Readability::with_document(cleaned(html), url, Some(config.clone())).or_else(
            |_| dom_smoothie::Readability::with_document(cleaned(html), None, Some(config)),
        );
    if let Ok(mut r) = readability {
        // Not the strict first pass: it deletes every element whose class
        // looks like a menu before scoring, inline ones too, which cut words
        // out of sentences (`<span class="guimenuitem">` in Debian's
        // guides). Moderate still scores by those hints, so navigation
        // outside the article stays out.
        if let Ok(article) = r.parse_with_policy(dom_smoothie::ParsePolicy::Moderate) {
            let text = tidy(&article.text_content);
            if !text.is_empty() {
                let title = Some(article.title).filter(|t| !t.trim().is_empty());
                return (text, title);
            }
        }
    }
    let doc = cleaned(html);
    doc.select("noscript, template, nav, header, footer, aside, form")
        .remove();
    let title = doc.select("title").text().trim().to_string();
    let body = doc.select("body");
    let text = if body.exists() {
        body.formatted_text()
    } else {
        doc.formatted_text()
    };
    (tidy(&text), Some(title).filter(|t| !t.is_empty()))
}

/// The page without scripts, styles and the elements whose class or id
/// marks them as navigation (`<div class="navheader">`, `<ul id="menu">`):
/// short pages, which Readability takes whole, lose their menus too.
fn cleaned(html: &str) -> dom_query::Document {
    let doc = dom_query::Document::from(html);
    doc.select("script, style").remove();
    for node in doc.select("body [class], body [id]").nodes() {
        let marked = ["class", "id"].iter().any(|a| {
            node.attr(a).is_some_and(|v| {
                v.split(|c: char| c.is_whitespace() || c == '-' || c == '_')
                    .any(boilerplate_word)
            })
        });
        if marked {
            node.remove_from_parent();
        }
    }
    doc
}

/// A class or id word that marks navigation or page furniture.
fn boilerplate_word(word: &str) -> bool {
    let w = word.to_ascii_lowercase();
    [
        "nav",
        "menu",
        "breadcrumb",
        "sidebar",
        "footer",
        "header",
        "cookie",
    ]
    .iter()
    .any(|p| w.starts_with(p))
}

/// Trims each line and keeps at most one empty line between paragraphs.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SourceSpec {
        SourceSpec {
            name: "s".into(),
            text_field: "text".into(),
            url_field: None,
            max_doc_bytes: 1 << 20,
        }
    }

    #[test]
    fn hostile_nesting_is_rejected_and_the_deepest_allowed_page_fits_a_worker_stack() {
        // 20,000 nested elements (the tester's page): rejected, no overflow.
        let deep = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html><body>{}x",
            "<div>".repeat(20_000)
        );
        let Err((reason, detail)) = http_page(deep.as_bytes(), None, &spec()) else {
            panic!("a 20,000-deep page is rejected");
        };
        assert_eq!(reason, Reason::TooDeep, "{detail}");
        // The deepest page let through is extracted on a thread with the
        // default 2 MiB stack, as the workers have.
        let max = format!(
            "<html><body>{}<p>Deep text here.</p>{}</body></html>",
            "<div>".repeat(super::super::depth::MAX_DEPTH - 1),
            "</div>".repeat(super::super::depth::MAX_DEPTH - 1)
        );
        assert!(super::super::depth::check(max.as_bytes()).is_ok());
        let text = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || html_to_text(&max, None).0)
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert!(text.contains("Deep text here."), "{text}");
    }

    #[test]
    fn chunked_bodies_are_joined_and_a_missing_last_chunk_is_tolerated() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n").unwrap(),
            b"hello world"
        );
        assert_eq!(dechunk(b"5\r\nhello\r\n3\r\nab").unwrap(), b"helloab");
        assert!(dechunk(b"zz\r\nhello").is_none());
    }

    #[test]
    fn charsets_come_from_http_then_bom_then_meta() {
        let latin1 = b"<html><head><meta charset=\"iso-8859-1\"></head><body>caf\xe9</body></html>";
        let (text, enc) = decode_html(latin1, Some("text/html"));
        assert_eq!(enc, encoding_rs::WINDOWS_1252);
        assert!(text.contains("caf\u{e9}"));
        let (_, enc) = decode_html(latin1, Some("text/html; charset=\"KOI8-R\""));
        assert_eq!(enc, encoding_rs::KOI8_R);
        let http_equiv =
            b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=Shift_JIS\">";
        assert_eq!(meta_charset(http_equiv), Some(encoding_rs::SHIFT_JIS));
        // Undeclared: UTF-8 when valid, else the Western fallback.
        assert_eq!(decode_html("é".as_bytes(), None).1, encoding_rs::UTF_8);
        assert_eq!(decode_html(b"caf\xe9", None).1, encoding_rs::WINDOWS_1252);
        let (text, enc) = decode_html(b"\xef\xbb\xbfhi", None);
        assert_eq!((text.as_str(), enc), ("hi", encoding_rs::UTF_8));
    }

    fn page(http: &[u8]) -> PageResult<'static> {
        http_page(http, Some("https://example.org/a"), &spec())
    }

    #[test]
    fn only_successful_html_responses_are_pages() {
        let html = "<html><body><article><p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.</p></article></body></html>";
        let ok = format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n{html}");
        let text = page(ok.as_bytes()).unwrap().unwrap().text;
        assert!(text.starts_with("Lorem ipsum"), "{text}");
        for skipped in [
            format!("HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\r\n{html}"),
            "HTTP/1.1 301 Moved\r\nLocation: /b\r\n\r\n".to_string(),
            "HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4".to_string(),
        ] {
            assert!(page(skipped.as_bytes()).unwrap().is_none(), "{skipped}");
        }
        // No Content-Type: sniffed.
        let bare = format!("HTTP/1.1 200 OK\r\n\r\n{html}");
        assert!(page(bare.as_bytes()).unwrap().is_some());
        let (reason, _) = page(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\nxx")
            .err()
            .unwrap();
        assert_eq!(reason, Reason::ReadError);
        let (reason, _) = page(b"HTTP/1.1 200 OK\r\nContent-Type: text/ht")
            .err()
            .unwrap();
        assert_eq!(reason, Reason::MalformedRecord);
    }

    #[test]
    fn navigation_marked_by_tag_class_or_id_is_dropped() {
        let html = "<html><head><title>T</title><script>var x=1;</script></head><body>\
            <nav><a href=/>Home</a> <a href=/b>Blog</a></nav><p>Short note.</p>\
            <footer>Copyright</footer></body></html>";
        let (text, title) = html_to_text(html, None);
        assert_eq!(text, "Short note.");
        let html = "<html><body><div class=\"navheader\"><table><tr><td>Chapter 1</td></tr></table></div>\
            <div id=\"main-menu\">Home | Blog</div><p>Short note.</p><div class=\"page-footer x\">(c)</div>\
            <div class=\"unavailable\">Kept.</div></body></html>";
        assert_eq!(html_to_text(html, None).0, "Short note.\n\nKept.");
        assert_eq!(title.as_deref(), Some("T"));
    }

    #[test]
    fn tidy_keeps_one_blank_line_between_paragraphs() {
        assert_eq!(tidy("  a \n\n\n\n b\nc  \n\n"), "a\n\nb\nc");
    }
}
