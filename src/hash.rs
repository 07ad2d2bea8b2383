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
    fn write_u32(&mut self, v: u32) {
        // What `write` does with four bytes, without the loop.
        self.0 = (self.0.rotate_left(29) ^ v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// A hasher for small keys that are not hashes (packed token-id pairs, short
/// byte strings): every word is mixed in, so nearby keys spread.
#[derive(Default, Clone, Copy)]
pub struct Mix(u64);

impl Mix {
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for Mix {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut tail = 0u64;
        for (i, &b) in chunks.remainder().iter().enumerate() {
            tail |= (b as u64) << (8 * i);
        }
        self.add(tail ^ bytes.len() as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }
    fn finish(&self) -> u64 {
        // A product's low bits depend only on the inputs' low bits, and hash
        // tables pick buckets by the low bits: bring the mixed high bits down.
        self.0.rotate_left(26)
    }
}

/// `BuildHasher` for [`Mix`].
pub type MixState = BuildHasherDefault<Mix>;

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
        // Mix spreads packed pairs that differ in the high half only.
        let m = MixState::default();
        assert_ne!(
            m.hash_one(1u64 << 32 | 5) & 0xff,
            m.hash_one(2u64 << 32 | 5) & 0xff
        );
    }
}
