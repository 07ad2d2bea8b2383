//! WARC framing: where a record is (`Place`), how the file is compressed
//! (`Codec`), record lengths checked against the bytes that follow them,
//! and the stream that frames decompressed content as it arrives.

use std::fmt;
use std::io::{self, BufRead, Read};
use std::sync::Arc;

use flate2::bufread::GzDecoder;

use crate::files::guarded_map::GuardedMap as Mmap;
pub(super) use crate::files::Codec;

/// A gzip member's first bytes (deflate).
pub(super) const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];
/// A zstd frame's magic number.
pub(super) const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Decompressed bytes a stream reads at a time.
pub(super) const STREAM_READ: u64 = 1 << 20;

/// Where a record starts in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// The byte offset in the file (of the gzip member or zstd frame, when
    /// compressed): where a reader seeks to get the record again.
    pub offset: u64,
    /// The record's offset in its member's decompressed content, where it
    /// is not at the start (a member that holds several records: a WARC
    /// compressed whole).
    pub inner: Option<u64>,
}

impl Place {
    pub(super) fn at(offset: usize) -> Place {
        Place {
            offset: offset as u64,
            inner: None,
        }
    }
}

impl Place {
    pub(super) fn inside(member: usize, inner: u64) -> Place {
        Place {
            offset: member as u64,
            inner: (inner > 0).then_some(inner),
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte offset {}", self.offset)?;
        if let Some(inner) = self.inner {
            write!(f, " (byte {inner} of the member's decompressed content)")?;
        }
        Ok(())
    }
}

/// What a WARC file's unit of compression is called, and the bytes that
/// start one (to resync on after damage); the codec itself is sniffed by
/// [`Codec::sniff`], as for every other input.
impl Codec {
    pub(super) fn member(self) -> &'static str {
        match self {
            Codec::Plain => "record",
            Codec::Gzip => "gzip member",
            Codec::Zstd => "zstd frame",
        }
    }

    pub(super) fn magic(self) -> &'static [u8] {
        match self {
            Codec::Plain => b"\nWARC/",
            Codec::Gzip => &GZIP_MAGIC,
            Codec::Zstd => &ZSTD_MAGIC,
        }
    }
}

/// The length of the zstd skippable frame at the start of `data`, if one
/// starts there whole.
pub(super) fn skippable_len(data: &[u8]) -> Option<usize> {
    let head = data.get(..8)?;
    if head[0] & 0xf0 != 0x50 || head[1..4] != [0x2a, 0x4d, 0x18] {
        return None;
    }
    let size = u32::from_le_bytes(head[4..8].try_into().ok()?) as usize;
    (8 + size <= data.len()).then_some(8 + size)
}

/// The mapped file from a position on, as a reader that holds the map
/// itself (a stream lives across steps).
pub(super) struct MapReader {
    pub(super) map: Arc<Mmap>,
    pub(super) pos: usize,
}

impl Read for MapReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&self.map[self.pos..]).read(buf)?;
        self.pos += n;
        Ok(n)
    }
}

impl BufRead for MapReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        Ok(&self.map[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.map.len());
    }
}

/// A stream's source of decompressed bytes.
pub(super) enum Inflater {
    Plain(MapReader),
    Gzip(Box<GzDecoder<MapReader>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, MapReader>>),
}

impl Inflater {
    /// Bytes of the file consumed so far.
    pub(super) fn pos(&self) -> usize {
        match self {
            Inflater::Plain(r) => r.pos,
            Inflater::Gzip(d) => d.get_ref().pos,
            Inflater::Zstd(d) => d.get_ref().pos,
        }
    }
}

impl Read for Inflater {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Inflater::Plain(r) => r.read(buf),
            Inflater::Gzip(d) => d.read(buf),
            Inflater::Zstd(d) => d.read(buf),
        }
    }
}

/// Records framed from decompressed content as it arrives: a plain file,
/// or a member too large to inflate whole.
pub(super) struct Stream {
    pub(super) input: Inflater,
    /// Where the stream starts in the file.
    pub(super) start: usize,
    /// Content read and not yet framed: `window[head..]`.
    pub(super) window: Vec<u8>,
    pub(super) head: usize,
    /// The content offset of `window[0]`.
    pub(super) base: u64,
    /// Bytes of an oversized record still to pass over.
    pub(super) skip: u64,
    /// Where the record being skipped started: once skipped, a record must follow.
    pub(super) verify: Option<Place>,
    pub(super) ended: bool,
    /// Why the content ended early.
    pub(super) failed: Option<io::Error>,
}

impl Stream {
    pub(super) fn new(input: Inflater, start: usize) -> Stream {
        Stream {
            input,
            start,
            window: Vec::new(),
            head: 0,
            base: 0,
            skip: 0,
            verify: None,
            ended: false,
            failed: None,
        }
    }

    pub(super) fn live(&self) -> &[u8] {
        &self.window[self.head..]
    }

    /// Moves to the next record header in the window after the live
    /// content's first byte (or keeps a tail that may start one).
    pub(super) fn resync_in_window(&mut self) {
        let live = self.live();
        match next_header(live) {
            Some(i) => self.head += i,
            None if self.ended => self.head = self.window.len(),
            None => self.head += live.len().saturating_sub(6).max(1),
        }
    }

    /// Where the live content's byte `at` comes from.
    pub(super) fn place(&self, at: usize) -> Place {
        let inner = self.base + (self.head + at) as u64;
        match self.input {
            Inflater::Plain(_) => Place::at(self.start + inner as usize),
            _ => Place::inside(self.start, inner),
        }
    }

    /// Reads up to [`STREAM_READ`] more bytes of content; marks the end,
    /// and why it came early when the compressed data is damaged (what was
    /// inflated before the damage is kept, to be framed first).
    pub(super) fn fill(&mut self) {
        if self.head > 0 {
            self.window.drain(..self.head);
            self.base += self.head as u64;
            self.head = 0;
        }
        match (&mut self.input)
            .take(STREAM_READ)
            .read_to_end(&mut self.window)
        {
            Ok(n) => self.ended = n == 0,
            Err(e) => {
                self.ended = true;
                self.failed = Some(e);
            }
        }
    }
}

/// Why no record length could be read.
pub(super) enum Framing {
    /// The header is not all there yet.
    CutOff,
    NotAHeader(String),
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Framing::CutOff => f.write_str("the record's WARC header is cut off"),
            Framing::NotAHeader(line) => write!(f, "not a WARC record header ({line:?})"),
        }
    }
}

/// Whether a record of `len` bytes at the start of `data` ends where the
/// next record (or the content) starts: after the record, only line breaks
/// (or zero padding) up to `WARC/`; or, when something else follows, the
/// standard's CRLF CRLF and no record header inside the span. `None` when
/// more bytes are needed to tell. A Content-Length that does not pass this
/// is not trusted.
pub(super) fn ends_cleanly(data: &[u8], len: usize, at_end: bool) -> Option<bool> {
    let after = data.get(len..)?;
    let rest = after;
    let ws = rest
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n' | 0))
        .count();
    let rest = &rest[ws..];
    const NEXT: &[u8] = b"WARC/";
    if rest.len() < NEXT.len() && NEXT.starts_with(rest) {
        // Nothing or a prefix of `WARC/` so far.
        return if at_end {
            Some(rest.is_empty())
        } else if ws >= 4096 {
            Some(true)
        } else {
            None
        };
    }
    if rest.starts_with(NEXT) {
        return Some(true);
    }
    // Not followed by a record (the next one may be the damaged one): the
    // length is still trusted if the record ends as the standard says
    // (CRLF CRLF) and its span swallows no other record's header.
    Some(after.starts_with(b"\r\n\r\n") && next_header(&data[..len]).is_none())
}

/// Where the next record header may start in `data`, after its first byte.
pub(super) fn next_header(data: &[u8]) -> Option<usize> {
    memchr::memmem::find(data.get(1..)?, b"\nWARC/").map(|i| i + 2)
}

/// The length of the empty line that ends a header block (the parser
/// stops before it).
pub(super) fn blank_line(rest: &[u8]) -> Option<usize> {
    if rest.starts_with(b"\r\n") {
        Some(2)
    } else if rest.starts_with(b"\n") {
        Some(1)
    } else {
        None
    }
}

/// The length of the record at the start of `data` (header block, content
/// block), or why there is none.
pub(super) fn record_len(data: &[u8]) -> Result<usize, Framing> {
    match warc::parser::headers(data) {
        Ok((rest, (_, _, content_length))) => {
            let blank = blank_line(rest).ok_or(Framing::CutOff)?;
            (data.len() - rest.len() + blank)
                .checked_add(content_length)
                .filter(|&n| n < (1usize << 62))
                .ok_or_else(|| {
                    Framing::NotAHeader(format!("Content-Length {content_length} is impossible"))
                })
        }
        Err(e) if e.is_incomplete() => Err(Framing::CutOff),
        Err(_) => {
            let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
            let line = String::from_utf8_lossy(&line[..line.len().min(40)]);
            Err(Framing::NotAHeader(line.trim_end().to_string()))
        }
    }
}
