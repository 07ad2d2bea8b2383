//! Union-find over compact document indices (4 bytes per document).
//!
//! In [`UnionFind`] the root of a set is always its smallest index, so
//! "first seen" is the representative whatever order unions arrive in:
//! clustering is deterministic across task counts. [`SizedUnionFind`] links
//! by size instead, for `keep = "datatrove"`, which replays a fixed order.

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

/// Union by size, the larger set's root kept and the first argument's on a
/// tie: datatrove's `MinhashDedupCluster`, whose representative therefore
/// depends on the order edges arrive in (8 bytes per document).
pub struct SizedUnionFind {
    sets: UnionFind,
    size: Vec<u32>,
}

impl SizedUnionFind {
    pub fn new(n: usize) -> Self {
        SizedUnionFind {
            sets: UnionFind::new(n),
            size: vec![1; n],
        }
    }

    pub fn find(&mut self, x: u32) -> u32 {
        self.sets.find(x)
    }

    pub fn union(&mut self, a: u32, b: u32) -> bool {
        let (mut ra, mut rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        if self.size[ra as usize] < self.size[rb as usize] {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.sets.parent[rb as usize] = ra;
        self.size[ra as usize] += self.size[rb as usize];
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

    #[test]
    fn by_size_keeps_the_larger_set_then_the_first_argument() {
        let mut u = SizedUnionFind::new(6);
        assert!(u.union(4, 5));
        assert_eq!(u.find(5), 4);
        // {4,5} outweighs {0}: 4 stays the root although 0 comes first.
        assert!(u.union(0, 5));
        assert_eq!(u.find(0), 4);
        // A tie goes to the first argument's root.
        assert!(u.union(3, 2));
        assert_eq!(u.find(2), 3);
    }
}
