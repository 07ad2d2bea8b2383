//! Reading model files: a little-endian reader over their bytes (every read
//! says where the file ended early), and one error type for the model
//! formats of this module.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a {kind} ({message})")]
    Format {
        path: String,
        kind: &'static str,
        message: String,
    },
}

/// Reads a model file and parses it, naming the file in any error.
pub(super) fn load_model<T>(
    path: &Path,
    kind: &'static str,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    parse(&bytes).map_err(|message| ModelError::Format {
        path: path.display().to_string(),
        kind,
        message,
    })
}

pub(super) struct Bytes<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Bytes { b, at: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.at == self.b.len()
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self
            .b
            .get(self.at..self.at.checked_add(n).ok_or("length overflows")?)
            .ok_or_else(|| format!("ends early at byte {}", self.at))?;
        self.at += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn f32(&mut self) -> Result<f32, String> {
        Ok(f32::from_le_bytes(self.array()?))
    }
    pub fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    pub fn f32s(&mut self, n: usize) -> Result<Vec<f32>, String> {
        let raw = self.take(n.checked_mul(4).ok_or("matrix too large")?)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }

    /// A NUL-terminated string (fastText's dictionary words).
    pub fn cstr(&mut self) -> Result<String, String> {
        let rest = &self.b[self.at..];
        let end = memchr::memchr(0, rest).ok_or("unterminated word")?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.at += end + 1;
        Ok(s)
    }

    /// A u16-length-prefixed UTF-8 string.
    pub fn string(&mut self) -> Result<String, String> {
        let len = self.u16()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| "bad string".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_reports_short_input() {
        let mut b = Bytes::new(&[1, 0, 0, 0, b'a', 0, 2, 0, b'h', b'i']);
        assert_eq!(b.u32().unwrap(), 1);
        assert_eq!(b.cstr().unwrap(), "a");
        assert_eq!(b.string().unwrap(), "hi");
        assert!(b.at_end());
        assert!(b.u8().unwrap_err().contains("ends early"));
    }
}
