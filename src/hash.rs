//! Hashing helpers shared by stages.

use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for keys that are already good hashes (xxh3 values): hashing
/// them again is wasted work.
#[derive(Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(29) ^ u64::from_le_bytes(b))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// A key for a sequence of hashes (an n-gram of word hashes): order matters,
/// and nothing is allocated.
pub fn sequence_key(hashes: &[u64]) -> u64 {
    hashes.iter().fold(0x9E37_79B9_7F4A_7C15u64, |k, &h| {
        (k.rotate_left(23) ^ h).wrapping_mul(0xFF51_AFD7_ED55_8CCD)
    })
}

/// `BuildHasher` for [`PassThrough`].
pub type PassThroughState = BuildHasherDefault<PassThrough>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn integer_keys_pass_through() {
        let s = PassThroughState::default();
        assert_eq!(s.hash_one(42u64), 42);
        assert_eq!(s.hash_one(7u128 << 64 | 9), 9);
        assert_ne!(s.hash_one("ab"), s.hash_one("ba"));
        assert_ne!(sequence_key(&[1, 2]), sequence_key(&[2, 1]));
    }
}
