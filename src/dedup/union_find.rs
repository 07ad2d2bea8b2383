//! Union-find over compact document indices (4 bytes per document).
//!
//! The root of a set is always its smallest index, so "first seen" is the
//! representative whatever order unions arrive in: clustering is
//! deterministic across task counts.

pub struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        assert!(
            n <= u32::MAX as usize,
            "more than 4 billion documents per cluster set"
        );
        UnionFind {
            parent: (0..n as u32).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.parent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    /// The representative of `x`'s set (path halving).
    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    /// Joins two sets; returns false if they were already one.
    pub fn union(&mut self, a: u32, b: u32) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[hi as usize] = lo;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_index_represents_its_set() {
        let mut u = UnionFind::new(6);
        assert!(u.union(5, 3));
        assert!(u.union(3, 4));
        assert!(!u.union(4, 5));
        assert!(u.union(1, 5));
        assert_eq!(u.find(4), 1);
        assert_eq!(u.find(0), 0);
        assert_eq!(u.find(2), 2);
    }
}
