//! WARC and WET files (ISO 28500), as crawlers ship them: one gzip member
//! per record (`.warc.gz`, `.warc.wet.gz`, as Common Crawl does), one zstd
//! frame per record with an optional dictionary (`.warc.zst`, the IIPC
//! WARC-zstd layout that wget and Archive Team write), a whole WARC
//! compressed as one gzip or zstd stream, or plain `.warc`. The codec is
//! taken from the file's first bytes, not its name.
//!
//! The reader only frames records: it walks the file's members itself
//! (not with a multi-member decoder) so that it always knows the byte offset
//! of the record it is in, and a damaged member costs that member only: the
//! reader rejects it into the ledger with its offset, looks for the next
//! member's magic bytes and reads on. A member that inflates past the size
//! cap is read as a stream, a window at a time, so a WARC compressed whole
//! is framed record by record in bounded memory. Turning records into
//! documents (HTTP headers, charsets, HTML to text) is pure and runs on
//! worker threads ([`decode_records`], in `page`).
//!
//! A document's `line` is the record's 1-based number in the file; a
//! damaged stretch between two good records counts as one record.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::files::guarded_map::GuardedMap as Mmap;
use flate2::bufread::GzDecoder;
use zstd::zstd_safe;

use super::{Chunk, InputFile, ReadError, Reader, SourceSpec};
use crate::ledger::{FileStatus, LedgerRow, Reason};

mod depth;
mod frame;
#[cfg(test)]
mod framing_tests;
mod page;
pub use page::decode_records;
pub(crate) use page::fuzz_page;

use frame::*;

/// The skippable frame that holds a WARC-zstd file's dictionary
/// (magic 0x184D2A5D); any other skippable frame is passed over.
const DICTIONARY_FRAME: u8 = 0x5d;
/// The largest WARC-zstd dictionary taken (inflated).
const MAX_DICTIONARY: u64 = 16 << 20;
/// Room for WARC and HTTP headers on top of `max_doc_bytes` of payload.
const HEADER_ROOM: u64 = 1 << 20;
/// A member that inflates past this (or the cap, if lower) is read as a
/// stream: inflating a 64 MiB cap's worth of a WARC compressed whole only to
/// start again would double its cost, while a single record this large is
/// rare and costs one extra inflate of 8 MiB.
const WHOLE_MEMBER: u64 = 8 << 20;

/// Framed records, still raw: one buffer for a chunk's records (one
/// allocation, and members inflate straight into it).
#[derive(Debug, Default)]
pub struct RawRecords {
    pub data: Vec<u8>,
    pub records: Vec<RawRecord>,
}

impl RawRecords {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// One record of a [`RawRecords`].
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// 1-based record number in the file.
    pub number: u64,
    pub place: Place,
    /// The WARC header block and content block: `data[start..end]`.
    pub start: usize,
    pub end: usize,
}

/// A run of bad bytes not yet reported: reported once reading is back on
/// track, so that one damaged stretch is one ledger row.
struct Damage {
    record: u64,
    place: Place,
    error: String,
}

/// A zstd file's decoding state: one context for every frame, with the
/// file's dictionary loaded once.
struct Zstd {
    dctx: zstd_safe::DCtx<'static>,
    dictionary: Vec<u8>,
}

pub struct WarcReader {
    file: InputFile,
    spec: Arc<SourceSpec>,
    chunk_bytes: usize,
    progress: Arc<AtomicU64>,
    map: Option<Arc<Mmap>>,
    codec: Codec,
    zstd: Option<Zstd>,
    /// Where the next member starts (or the end, once read).
    pos: usize,
    stream: Option<Stream>,
    reported: usize,
    /// Records numbered so far.
    record: u64,
    damage: Option<Damage>,
}

enum Member {
    /// Inflated onto the buffer; its compressed length.
    Ok(usize),
    /// Decompresses past [`WHOLE_MEMBER`] or the cap: to be read as a stream.
    Large,
    /// Damaged; `cut` when its data ends early (the file was cut short in
    /// it), so that what came before the cut can still be framed.
    Broken { error: String, cut: bool },
}

impl WarcReader {
    pub fn new(
        file: InputFile,
        spec: Arc<SourceSpec>,
        chunk_bytes: usize,
        progress: Arc<AtomicU64>,
    ) -> Self {
        WarcReader {
            file,
            spec,
            chunk_bytes: chunk_bytes.max(1 << 16),
            progress,
            map: None,
            codec: Codec::Plain,
            zstd: None,
            pos: 0,
            stream: None,
            reported: 0,
            record: 0,
            damage: None,
        }
    }

    fn cap(&self) -> u64 {
        self.spec.max_doc_bytes + HEADER_ROOM
    }

    fn reject(&self, record: u64, reason: Reason, detail: String) -> LedgerRow {
        self.spec.reject(&self.file.rel, record, reason, detail)
    }

    fn next_number(&mut self) -> u64 {
        self.record += 1;
        self.record
    }

    /// Sets up a zstd file: its dictionary frame, when it starts with one.
    fn open_zstd(&mut self, data: &[u8]) {
        let mut dictionary = Vec::new();
        let mut problem = None;
        if let Some(len) = skippable_len(data).filter(|_| data[0] == DICTIONARY_FRAME) {
            let payload = &data[8..len];
            // The dictionary may itself be zstd-compressed (the spec allows both).
            dictionary = if payload.starts_with(&ZSTD_MAGIC) {
                // Bounded: a dictionary is small (zstd trains 110 KB ones);
                // a frame that inflates past the cap is refused, not held.
                let mut d = Vec::new();
                let read = zstd::stream::read::Decoder::new(payload)
                    .and_then(|dec| dec.take(MAX_DICTIONARY + 1).read_to_end(&mut d));
                match read {
                    Ok(_) if d.len() as u64 > MAX_DICTIONARY => {
                        problem = Some(format!(
                            "the zstd dictionary inflates past {MAX_DICTIONARY} bytes"
                        ));
                        Vec::new()
                    }
                    Ok(_) => d,
                    Err(e) => {
                        problem = Some(format!("unreadable zstd dictionary ({e})"));
                        Vec::new()
                    }
                }
            } else {
                payload.to_vec()
            };
            self.pos = len;
        }
        let mut dctx = zstd_safe::DCtx::create();
        // Windows as large as any other input may use (`zstd --long=31`).
        let _ = dctx.set_parameter(zstd_safe::DParameter::WindowLogMax(
            crate::files::ZSTD_WINDOW_LOG_MAX,
        ));
        if !dictionary.is_empty() {
            if let Err(code) = dctx.load_dictionary(&dictionary) {
                problem = Some(format!(
                    "unreadable zstd dictionary ({})",
                    zstd_safe::get_error_name(code)
                ));
                dictionary.clear();
            }
        }
        if let Some(error) = problem {
            // Frames that need it will not decode: one damaged stretch,
            // reported with this cause.
            self.open_damage(Place::at(0), error);
        }
        self.zstd = Some(Zstd { dctx, dictionary });
    }

    /// Inflates the member at `at` onto the end of `out`, never more than
    /// [`WHOLE_MEMBER`]; on failure `out` is left as it was.
    fn member(&mut self, data: &[u8], at: usize, out: &mut Vec<u8>) -> Member {
        let limit = self.cap().min(WHOLE_MEMBER);
        let start = out.len();
        let mut rest = &data[at..];
        let read = match self.codec {
            Codec::Gzip => (&mut GzDecoder::new(&mut rest))
                .take(limit + 1)
                .read_to_end(out),
            Codec::Zstd => {
                let dctx = &mut self.zstd.as_mut().expect("opened as zstd").dctx;
                // A frame that failed before may have left the context mid-frame.
                if let Err(code) = dctx.reset(zstd_safe::ResetDirective::SessionOnly) {
                    return Member::Broken {
                        error: zstd_safe::get_error_name(code).to_string(),
                        cut: false,
                    };
                }
                zstd::stream::read::Decoder::with_context(&mut rest, dctx)
                    .single_frame()
                    .take(limit + 1)
                    .read_to_end(out)
            }
            Codec::Plain => unreachable!("plain files are read as one stream"),
        };
        match read {
            Err(e) => {
                out.truncate(start);
                Member::Broken {
                    error: format!("damaged {} ({e})", self.codec.member()),
                    cut: e.kind() == io::ErrorKind::UnexpectedEof,
                }
            }
            Ok(_) if (out.len() - start) as u64 > limit => {
                out.truncate(start);
                Member::Large
            }
            Ok(_) => Member::Ok(data.len() - at - rest.len()),
        }
    }

    /// For a plain file, whether a record at `place` whose Content-Length
    /// says `len` bytes is not followed by a record there (or the end):
    /// checked in the file itself before skipping, so a wrong length over
    /// the cap cannot swallow the records after it.
    fn plain_length_lies(&self, place: Place, len: usize) -> bool {
        let Some(map) = self.map.as_ref().filter(|_| self.codec == Codec::Plain) else {
            return false;
        };
        let from = place.offset as usize;
        match from.checked_add(len) {
            Some(end) if end <= map.len() => ends_cleanly(&map[from..], len, true) == Some(false),
            // Past the end: truncated, or a length that lies; a record
            // starting inside the claimed span tells which.
            _ => next_header(&map[from..]).is_some(),
        }
    }

    /// A stream over the content of the member at `at` (or the whole plain file).
    fn open_stream(&self, map: &Arc<Mmap>, at: usize) -> io::Result<Stream> {
        let input = MapReader {
            map: Arc::clone(map),
            pos: at,
        };
        let input = match self.codec {
            Codec::Plain => Inflater::Plain(input),
            Codec::Gzip => Inflater::Gzip(Box::new(GzDecoder::new(input))),
            Codec::Zstd => {
                let dictionary = self.zstd.as_ref().map_or(&[][..], |z| &z.dictionary);
                let mut dec = if dictionary.is_empty() {
                    zstd::stream::read::Decoder::with_buffer(input)?
                } else {
                    zstd::stream::read::Decoder::with_dictionary(input, dictionary)?
                };
                dec.window_log_max(crate::files::ZSTD_WINDOW_LOG_MAX)?;
                Inflater::Zstd(Box::new(dec.single_frame()))
            }
        };
        Ok(Stream::new(input, at))
    }

    /// Reports the pending damage, now that reading is back on track at `to`.
    fn close_damage(&mut self, to: Place, rejects: &mut Vec<LedgerRow>) {
        if let Some(d) = self.damage.take() {
            let skipped = match (d.place.inner, to.inner) {
                (Some(a), Some(b)) if d.place.offset == to.offset => b - a,
                _ => to.offset - d.place.offset,
            };
            rejects.push(self.reject(
                d.record,
                Reason::MalformedRecord,
                format!(
                    "record {} at {}: {}; skipped {skipped} bytes to the next record at {to}",
                    d.record, d.place, d.error,
                ),
            ));
        }
    }

    fn open_damage(&mut self, place: Place, error: String) {
        if self.damage.is_none() {
            let record = self.next_number();
            self.damage = Some(Damage {
                record,
                place,
                error,
            });
        }
    }

    /// The file ends inside damage: reject it as truncation; returns the status detail.
    fn end_in_damage(&mut self, rejects: &mut Vec<LedgerRow>) -> Option<String> {
        let d = self.damage.take()?;
        let detail = format!(
            "record {} at {}: {}; the file ends before another record starts",
            d.record, d.place, d.error
        );
        rejects.push(self.reject(d.record, Reason::TruncatedFile, detail.clone()));
        Some(detail)
    }

    /// Splits a member's bytes (`out.data[from..]`) into records.
    fn frame(
        &mut self,
        out: &mut RawRecords,
        from: usize,
        offset: usize,
        rejects: &mut Vec<LedgerRow>,
    ) {
        let buf = &out.data[from..];
        // Records and damaged stretches, in the member's order.
        let mut found: Vec<Result<(usize, usize), (usize, String)>> = Vec::new();
        let mut at = 0;
        loop {
            at += buf[at..]
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            if at >= buf.len() {
                break;
            }
            let what = match record_len(&buf[at..]) {
                Ok(len) if at + len <= buf.len() => {
                    if ends_cleanly(&buf[at..], len, true) == Some(true) {
                        found.push(Ok((at, at + len)));
                        at += len;
                        continue;
                    }
                    format!("its Content-Length ends it {len} bytes on, where no record follows")
                }
                Ok(len) => format!(
                    "the record claims {len} bytes but its {} holds {}",
                    self.codec.member(),
                    buf.len() - at
                ),
                Err(e) => e.to_string(),
            };
            found.push(Err((at, what)));
            // On to the next record header in the member, if any.
            match next_header(&buf[at..]) {
                Some(i) => at += i,
                None => break,
            }
        }
        let place = |at: usize| Place::inside(offset, at as u64);
        for f in found {
            let number = self.next_number();
            match f {
                Ok((start, end)) => out.records.push(RawRecord {
                    number,
                    place: place(start),
                    start: from + start,
                    end: from + end,
                }),
                Err((at, what)) => {
                    let detail = format!("record {number} at {}: {what}", place(at));
                    rejects.push(self.reject(number, Reason::MalformedRecord, detail));
                }
            }
        }
    }

    fn too_large(&self, number: u64, place: Place, bytes: u64) -> LedgerRow {
        self.reject(
            number,
            Reason::TooLarge,
            format!(
                "record {number} at {place}: {bytes} bytes > reader.max_doc_bytes {}",
                self.spec.max_doc_bytes
            ),
        )
    }

    /// Reads members (gzip or zstd) until about a chunk of records is
    /// collected. Returns the status detail when the file ends truncated.
    fn step_members(
        &mut self,
        map: &Arc<Mmap>,
        out: &mut RawRecords,
        rejects: &mut Vec<LedgerRow>,
    ) -> Option<String> {
        let data = &map[..];
        while out.data.len() < self.chunk_bytes {
            if self.stream.is_some() {
                self.step_stream(out, rejects);
                continue;
            }
            let at = self.pos;
            if at >= data.len() {
                break;
            }
            let broken = if data[at..].starts_with(self.codec.magic()) {
                let from = out.data.len();
                match self.member(data, at, &mut out.data) {
                    Member::Ok(len) => {
                        self.close_damage(Place::at(at), rejects);
                        self.pos = at + len;
                        self.frame(out, from, at, rejects);
                        continue;
                    }
                    // A cut member is read as a stream too: what inflated
                    // before the cut may hold whole records (a WARC
                    // compressed whole, cut short), which a stream keeps.
                    // (Not after other damage: a checksum fails only once
                    // all is inflated.)
                    Member::Large | Member::Broken { cut: true, .. } => {
                        match self.open_stream(map, at) {
                            Ok(s) => {
                                self.stream = Some(s);
                                continue;
                            }
                            Err(e) => {
                                format!("cannot start a {} stream ({e})", self.codec.member())
                            }
                        }
                    }
                    Member::Broken { error, .. } => error,
                }
            } else if let Some(len) =
                skippable_len(&data[at..]).filter(|_| self.codec == Codec::Zstd)
            {
                // Skippable frames hold no records (a dictionary read at open).
                self.pos = at + len;
                continue;
            } else if data[at..].iter().all(|&b| b == 0) {
                // Zero padding after the last member (some writers pad blocks).
                self.pos = data.len();
                break;
            } else {
                format!("not a {}", self.codec.member())
            };
            self.open_damage(Place::at(at), broken);
            self.resync(data, at + 1);
        }
        if self.pos >= data.len() && self.stream.is_none() {
            return self.end_in_damage(rejects);
        }
        None
    }

    /// Reads a plain file, one stream from its start, until about a chunk
    /// of records is collected.
    fn step_plain(
        &mut self,
        map: &Arc<Mmap>,
        out: &mut RawRecords,
        rejects: &mut Vec<LedgerRow>,
    ) -> Option<String> {
        if self.stream.is_none() && self.pos < map.len() {
            self.stream = Some(
                self.open_stream(map, self.pos)
                    .expect("a plain stream always starts"),
            );
        }
        while out.data.len() < self.chunk_bytes && self.stream.is_some() {
            if let Some(detail) = self.step_stream(out, rejects) {
                return Some(detail);
            }
        }
        if self.stream.is_none() {
            return self.end_in_damage(rejects);
        }
        None
    }

    /// Frames the stream's records until about a chunk is collected or the
    /// stream ends; at its end the stream is closed and `pos` set past it.
    /// Returns the status detail when a plain file ends inside a record.
    fn step_stream(
        &mut self,
        out: &mut RawRecords,
        rejects: &mut Vec<LedgerRow>,
    ) -> Option<String> {
        let mut s = self.stream.take().expect("a stream is open");
        let cap = self.cap();
        let plain = matches!(s.input, Inflater::Plain(_));
        while out.data.len() < self.chunk_bytes {
            if s.skip > 0 {
                let n = s.skip.min(s.live().len() as u64);
                s.head += n as usize;
                s.skip -= n;
            }
            if s.skip == 0 {
                if let Some(from) = s.verify {
                    match ends_cleanly(s.live(), 0, s.ended && s.failed.is_none()) {
                        None if !s.ended => {
                            s.fill();
                            continue;
                        }
                        Some(false) => {
                            // The skipped record's length was wrong and the
                            // records it covered are gone with it (a plain
                            // file is checked before skipping instead).
                            self.open_damage(
                                s.place(0),
                                format!("no record follows the oversized record at {from}: its Content-Length was wrong, and what it covered was skipped"),
                            );
                            s.verify = None;
                            s.resync_in_window();
                            continue;
                        }
                        _ => s.verify = None,
                    }
                }
            }
            s.head += s
                .live()
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n' | 0))
                .count();
            let need_more = if s.skip > 0 || s.live().is_empty() {
                true
            } else {
                let place = s.place(0);
                let at_end = s.ended && s.failed.is_none();
                match record_len(s.live()) {
                    Ok(len) if len as u64 > cap && !self.plain_length_lies(place, len) => {
                        self.close_damage(place, rejects);
                        let n = self.next_number();
                        rejects.push(self.too_large(n, place, len as u64));
                        s.skip = len as u64;
                        s.verify = Some(place);
                        false
                    }
                    Ok(len) if len as u64 > cap => {
                        self.open_damage(
                            place,
                            format!("its Content-Length claims {len} bytes, but a record starts before that"),
                        );
                        s.resync_in_window();
                        false
                    }
                    Ok(len) if len <= s.live().len() => match ends_cleanly(s.live(), len, at_end) {
                        None => true,
                        Some(true) => {
                            self.close_damage(place, rejects);
                            let number = self.next_number();
                            let start = out.data.len();
                            out.data.extend_from_slice(&s.live()[..len]);
                            out.records.push(RawRecord {
                                number,
                                place,
                                start,
                                end: out.data.len(),
                            });
                            s.head += len;
                            false
                        }
                        Some(false) => {
                            self.open_damage(
                                    place,
                                    format!("its Content-Length ends it {len} bytes on, where no record follows"),
                                );
                            s.resync_in_window();
                            false
                        }
                    },
                    // More content may complete it; or, if the content broke
                    // off, the damage is reported from here.
                    Err(Framing::CutOff)
                        if (!s.ended || s.failed.is_some())
                            && (s.live().len() as u64) < HEADER_ROOM =>
                    {
                        true
                    }
                    Ok(_) if !s.ended || s.failed.is_some() => true,
                    // The content ends inside a record that another record
                    // follows: its Content-Length is wrong, not the file cut.
                    Ok(len) if next_header(s.live()).is_some() => {
                        self.open_damage(
                            place,
                            format!("its Content-Length claims {len} bytes, but a record starts before that"),
                        );
                        s.resync_in_window();
                        false
                    }
                    Ok(len) => {
                        // The content ends inside this record.
                        self.close_damage(place, rejects);
                        let n = self.next_number();
                        let held = s.live().len();
                        s.head = s.window.len();
                        if plain {
                            let detail = format!(
                                "record {n} at {place}: the file ends after {held} of its {len} bytes"
                            );
                            rejects.push(self.reject(n, Reason::TruncatedFile, detail.clone()));
                            self.pos = s.input.pos();
                            return Some(detail);
                        }
                        let detail = format!(
                            "record {n} at {place}: the record claims {len} bytes but its {} holds {held}",
                            self.codec.member()
                        );
                        rejects.push(self.reject(n, Reason::MalformedRecord, detail));
                        false
                    }
                    Err(e) => {
                        self.open_damage(place, e.to_string());
                        s.resync_in_window();
                        false
                    }
                }
            };
            if !need_more {
                continue;
            }
            if !s.ended {
                s.fill();
                continue;
            }
            if let Some(e) = s.failed.take() {
                // A damaged compressed stream: what it held after the last
                // good record is one damaged stretch, up to the next member.
                self.open_damage(s.place(0), format!("damaged {} ({e})", self.codec.member()));
                let map = Arc::clone(self.map.as_ref().expect("a stream reads an open file"));
                self.resync(&map, s.input.pos().max(s.start + 1));
                return None;
            }
            // The stream is done; for a compressed member, on to the next one.
            self.pos = s.input.pos();
            return None;
        }
        self.stream = Some(s);
        None
    }

    /// Moves on to the next member's magic bytes at or after `from`, or to
    /// the end of the file when there is none.
    fn resync(&mut self, data: &[u8], from: usize) {
        let from = from.min(data.len());
        self.pos = memchr::memmem::find(&data[from..], self.codec.magic())
            .map_or(data.len(), |i| from + i);
    }

    /// How far into the file reading has got.
    fn position(&self) -> usize {
        self.stream.as_ref().map_or(self.pos, |s| s.input.pos())
    }

    fn report_progress(&mut self) {
        let pos = self.position();
        self.progress
            .fetch_add(pos.saturating_sub(self.reported) as u64, Ordering::Relaxed);
        self.reported = self.reported.max(pos);
    }
}

impl Reader for WarcReader {
    fn step(&mut self, out: &mut VecDeque<Chunk>) -> Result<bool, ReadError> {
        if self.map.is_none() {
            let open = |path: &std::path::Path| -> io::Result<Option<Mmap>> {
                let f = File::open(path)?;
                if f.metadata()?.len() == 0 {
                    return Ok(None);
                }
                // Guarded: if the file shrinks while it is read, the pages
                // past its end read as zeros and the map says so (below).
                Ok(Some(Mmap::new(&f)?))
            };
            match open(&self.file.path).map_err(|e| ReadError::Open {
                path: self.file.path.display().to_string(),
                source: e,
            })? {
                Some(m) => {
                    self.codec = Codec::sniff(&m);
                    if self.codec == Codec::Zstd {
                        self.open_zstd(&m);
                    }
                    self.map = Some(Arc::new(m));
                }
                None => {
                    out.push_back(Chunk::FileEnd {
                        file: self.file.rel.clone(),
                        status: FileStatus::Complete,
                        detail: None,
                    });
                    return Ok(false);
                }
            }
        }
        let map = Arc::clone(self.map.as_ref().expect("opened above"));
        // Room for a chunk and the member that crosses its end, so the
        // buffer rarely grows.
        let mut records = RawRecords {
            data: Vec::with_capacity(self.chunk_bytes + (1 << 20)),
            records: Vec::new(),
        };
        let mut rejects = Vec::new();
        let truncated = match self.codec {
            Codec::Plain => self.step_plain(&map, &mut records, &mut rejects),
            Codec::Gzip | Codec::Zstd => self.step_members(&map, &mut records, &mut rejects),
        };
        if map.faulted() {
            // The file shrank under the reader: what this step framed may
            // hold zeros read in place of the lost bytes, so none of it is
            // kept; each record is rejected, and the file ends here.
            let detail = format!(
                "the file shrank while it was read (it was {} bytes); what was framed after byte offset {} is not kept",
                map.len(),
                records.records.first().map_or(self.pos as u64, |r| r.place.offset)
            );
            for r in &records.records {
                rejects.push(self.reject(r.number, Reason::TruncatedFile, detail.clone()));
            }
            let _ = self.end_in_damage(&mut rejects);
            rejects.sort_by_key(|r| r.line);
            out.push_back(Chunk::Rejects(rejects));
            self.stream = None;
            self.map = None;
            out.push_back(Chunk::FileEnd {
                file: self.file.rel.clone(),
                status: FileStatus::Truncated,
                detail: Some(detail),
            });
            return Ok(false);
        }
        let done = self.pos >= map.len() && self.stream.is_none();
        self.report_progress();
        if !records.is_empty() {
            out.push_back(Chunk::Records {
                file: self.file.rel.clone(),
                records,
            });
        }
        if !rejects.is_empty() {
            out.push_back(Chunk::Rejects(rejects));
        }
        if !done {
            return Ok(true);
        }
        self.map = None;
        out.push_back(Chunk::FileEnd {
            file: self.file.rel.clone(),
            status: if truncated.is_some() {
                FileStatus::Truncated
            } else {
                FileStatus::Complete
            },
            detail: truncated,
        });
        Ok(false)
    }
}

#[cfg(test)]
mod tests;
