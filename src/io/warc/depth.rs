//! A linear pre-scan of HTML nesting, before any parser sees the page.
//!
//! HTML parsers and Readability walk the tree recursively and check scopes
//! along the stack of open elements, so a page nested 20,000 elements deep
//! overflows the stack and a deeply nested page costs time quadratic in its
//! depth. This scan counts what the tree builder will nest, without building
//! anything and without recursion: start tags of elements that stay open
//! (not void, not self-closed, not the ones HTML closes implicitly such as
//! `p`, `li`, `td`), minus end tags. It gives the deepest nesting and the
//! sum of the depths at each start tag, which bounds the parser's scope
//! walks; a page over either limit is rejected as `too_deep`, so the time
//! any one page takes is bounded by its size and these limits, the same on
//! every machine (no wall clock, so output stays deterministic).

/// Deepest nesting the extractor takes.
pub const MAX_DEPTH: usize = 512;

/// Most open elements summed over every start tag (the parser's scope walks).
pub const MAX_WORK: u64 = 25_000_000;

/// Elements that never hold children or that the parser closes by itself
/// when a sibling starts; they do not add to the depth. (`name` in lower case.)
fn flat(name: &[u8]) -> bool {
    matches!(
        name,
        b"area"
            | b"base"
            | b"br"
            | b"col"
            | b"embed"
            | b"hr"
            | b"img"
            | b"input"
            | b"link"
            | b"meta"
            | b"param"
            | b"source"
            | b"track"
            | b"wbr"
            | b"keygen"
            | b"basefont"
            | b"bgsound"
            | b"frame"
            | b"p"
            | b"li"
            | b"dt"
            | b"dd"
            | b"tr"
            | b"td"
            | b"th"
            | b"option"
            | b"optgroup"
            | b"rb"
            | b"rp"
            | b"rt"
            | b"rtc"
            | b"thead"
            | b"tbody"
            | b"tfoot"
            | b"colgroup"
            | b"caption"
            | b"html"
            | b"head"
            | b"body"
    )
}

/// Elements whose content is text up to their own end tag. (`name` in lower case.)
fn raw_text(name: &[u8]) -> bool {
    matches!(
        name,
        b"script"
            | b"style"
            | b"textarea"
            | b"title"
            | b"xmp"
            | b"iframe"
            | b"noembed"
            | b"noframes"
            | b"plaintext"
    )
}

/// The longest name [`flat`] and [`raw_text`] know.
const LONGEST: usize = 9;

/// The nesting of a page, as [`scan`] measures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nesting {
    /// The deepest nesting met (the scan stops once past the limits).
    pub max_depth: usize,
    /// Open elements summed over every start tag.
    pub work: u64,
}

/// Why a page is too deep to extract, if it is.
pub fn check(html: &[u8]) -> Result<(), String> {
    let n = scan(html);
    if n.max_depth > MAX_DEPTH {
        Err(format!(
            "HTML nested deeper than {MAX_DEPTH} elements (at least {})",
            n.max_depth
        ))
    } else if n.work > MAX_WORK {
        Err(format!(
            "HTML nesting too costly to parse ({} open elements summed over its tags > {MAX_WORK})",
            n.work
        ))
    } else {
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// Measures the page's nesting in one pass; stops early past the limits.
pub fn scan(html: &[u8]) -> Nesting {
    let mut depth = 0usize;
    let mut out = Nesting {
        max_depth: 0,
        work: 0,
    };
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'<', &html[i..]) {
        i += off + 1;
        let rest = &html[i..];
        if rest.starts_with(b"!--") {
            i += find(&rest[3..], b"-->").map_or(rest.len(), |e| e + 6);
            continue;
        }
        if rest.starts_with(b"!") || rest.starts_with(b"?") {
            i += memchr::memchr(b'>', rest).map_or(rest.len(), |e| e + 1);
            continue;
        }
        let end_tag = rest.first() == Some(&b'/');
        let name_start = usize::from(end_tag);
        let name_len = rest[name_start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b':')
            .count();
        if name_len == 0 || !rest[name_start].is_ascii_alphabetic() {
            continue;
        }
        // Lower-cased into a small buffer; longer names are none of the
        // special ones (they nest like any element).
        let mut lower = [0u8; LONGEST];
        let name = &rest[name_start..name_start + name_len];
        let known = if name_len <= LONGEST {
            for (d, s) in lower.iter_mut().zip(name) {
                *d = s.to_ascii_lowercase();
            }
            &lower[..name_len]
        } else {
            &[][..]
        };
        let close = memchr::memchr(b'>', rest).unwrap_or(rest.len());
        let self_closed = close > 0 && rest.get(close - 1) == Some(&b'/');
        i += close.min(rest.len());
        if end_tag {
            if !flat(known) {
                depth = depth.saturating_sub(1);
            }
            continue;
        }
        if raw_text(known) {
            // Skip to `</name`, case-insensitively.
            let body = &html[i..];
            let mut j = 0;
            loop {
                match find(&body[j..], b"</") {
                    Some(k) => {
                        let at = j + k + 2;
                        let candidate = &body[at..(at + name.len()).min(body.len())];
                        if candidate.eq_ignore_ascii_case(name) {
                            i += at;
                            break;
                        }
                        j = at;
                    }
                    None => {
                        i = html.len();
                        break;
                    }
                }
            }
            continue;
        }
        if self_closed || flat(known) {
            continue;
        }
        out.work += depth as u64;
        depth += 1;
        out.max_depth = out.max_depth.max(depth);
        if out.max_depth > MAX_DEPTH || out.work > MAX_WORK {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_pages_are_shallow() {
        let page = b"<!DOCTYPE html><html><head><title>a<b</title><script>if (a<b) {}</script></head>\
            <body><div class=x><p>one<p>two<br><img src=a /><ul><li>a<li>b</ul></div></body></html>";
        let n = scan(page);
        assert_eq!(n.max_depth, 2, "{n:?}");
        assert!(check(page).is_ok());
    }

    #[test]
    fn deep_nesting_is_caught_early() {
        let page = "<div>".repeat(20_000);
        let n = scan(page.as_bytes());
        assert_eq!(n.max_depth, MAX_DEPTH + 1);
        assert!(check(page.as_bytes()).unwrap_err().contains("deeper"));
        // Closed as it goes: shallow, however long.
        let flat = "<div>x</div>".repeat(50_000);
        assert_eq!(scan(flat.as_bytes()).max_depth, 1);
    }

    #[test]
    fn costly_but_shallow_nesting_is_caught() {
        // 500 deep, then many siblings at that depth: each start tag walks 500.
        let page = format!(
            "{}{}",
            "<div>".repeat(500),
            "<span>x</span>".repeat(250_000)
        );
        let err = check(page.as_bytes()).unwrap_err();
        assert!(err.contains("costly"), "{err}");
    }
}
