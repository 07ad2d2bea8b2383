//! Compressed inputs opened by their first bytes.
//!
//! [`Codec::sniff`] tells gzip and zstd by their magic; the file name is only
//! a hint, and a mismatch is logged. [`open_decompressed`] opens a file that
//! way, counting the bytes read from disk for the progress bar.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counts bytes read from the underlying file for the progress bar.
struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Wraps `inner`, adding every byte read to `counter`.
fn counting<R: Read>(inner: R, counter: Arc<AtomicU64>) -> Counting<R> {
    Counting { inner, counter }
}

/// A compression format, told by a stream's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// gzip (magic 1f 8b), every member read.
    Gzip,
    /// zstd (magic 28 b5 2f fd, or a skippable frame first).
    Zstd,
    /// Anything else: read as it is.
    Plain,
}

impl Codec {
    /// The codec whose magic `head` starts with (zstd's skippable frames too).
    pub fn sniff(head: &[u8]) -> Codec {
        match head {
            [0x1f, 0x8b, ..] => Codec::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Codec::Zstd,
            [b, 0x2a, 0x4d, 0x18, ..] if b & 0xf0 == 0x50 => Codec::Zstd,
            _ => Codec::Plain,
        }
    }

    /// The codec a file name suggests (any letter case).
    pub fn by_name(path: &Path) -> Codec {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.ends_with(".gz") || name.ends_with(".gzip") {
            Codec::Gzip
        } else if name.ends_with(".zst") || name.ends_with(".zstd") {
            Codec::Zstd
        } else {
            Codec::Plain
        }
    }
}

/// zstd windows up to 2 GiB (`zstd --long=31`); the window is allocated as
/// the frame asks, and output is bounded by the readers' own caps.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 31;

/// Opens `path`, counting the bytes read from disk into `progress`, and
/// decompresses it by its first bytes (gzip, all members; zstd; else
/// plain). The name is only a hint: a mismatch is logged.
pub fn open_decompressed(
    path: &Path,
    progress: Arc<AtomicU64>,
) -> io::Result<Box<dyn Read + Send>> {
    use std::io::BufRead;
    let mut raw = io::BufReader::with_capacity(1 << 20, counting(File::open(path)?, progress));
    let codec = Codec::sniff(raw.fill_buf()?);
    let named = Codec::by_name(path);
    if codec != named {
        tracing::warn!(
            "{}: the name says {named:?} but the bytes are {codec:?}; read as {codec:?}",
            path.display()
        );
    }
    Ok(match codec {
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Codec::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(raw)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(d)
        }
        Codec::Plain => Box::new(raw),
    })
}

#[cfg(test)]
mod codec_tests {
    use super::*;
    use std::io::Write;

    fn read(path: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        open_decompressed(path, Arc::default())
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn the_bytes_decide_not_the_name() {
        let t = tempfile::tempdir().unwrap();
        let text = b"{\"text\":\"hi\"}\n".repeat(100);
        let zst = zstd::encode_all(&text[..], 3).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        for (name, bytes) in [
            ("zstd-named.gz", &zst),
            ("gzip-named.zst", &gz),
            ("plain-named.jsonl.gz", &text),
            ("UPPER.JSONL.GZ", &gz),
        ] {
            let p = t.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            assert_eq!(read(&p), text, "{name}");
        }
    }

    #[test]
    fn long_window_zstd_is_read() {
        let t = tempfile::tempdir().unwrap();
        let text: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        enc.long_distance_matching(true).unwrap();
        enc.window_log(31).unwrap();
        enc.write_all(&text).unwrap();
        let z = enc.finish().unwrap();
        let p = t.path().join("long.jsonl.zst");
        std::fs::write(&p, z).unwrap();
        assert_eq!(read(&p), text);
    }
}
