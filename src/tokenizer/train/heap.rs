//! The merge loop's priority queue: pairs by count, ties by key.

/// A max-heap of pairs that knows where each pair sits, so a changed
/// count moves its pair in O(log n). Entries carry their own copy of the
/// count: the loop changes many counts per merge and then updates each
/// pair in turn, and every update must see a heap that is ordered by what
/// it holds.
pub(super) struct IndexedHeap {
    heap: Vec<Entry>,
    pos: Vec<u32>,
}

#[derive(Clone, Copy)]
struct Entry {
    count: u64,
    key: u64,
    pair: u32,
}

impl Entry {
    /// True if this pair is merged before `o` (see [`super::bpe`]: ties go to the smaller key).
    #[inline]
    fn before(&self, o: &Entry) -> bool {
        self.count > o.count || (self.count == o.count && self.key < o.key)
    }
}

const ABSENT: u32 = u32::MAX;

impl IndexedHeap {
    pub(super) fn new() -> Self {
        IndexedHeap {
            heap: Vec::new(),
            pos: Vec::new(),
        }
    }

    pub(super) fn top(&self) -> Option<(u32, u64)> {
        self.heap.first().map(|e| (e.pair, e.count))
    }

    /// Inserts pair `p` or moves it to its new count.
    pub(super) fn update(&mut self, p: u32, count: u64, key: u64) {
        if self.pos.len() <= p as usize {
            self.pos.resize(p as usize + 1, ABSENT);
        }
        let e = Entry {
            count,
            key,
            pair: p,
        };
        let i = match self.pos[p as usize] {
            ABSENT => {
                self.heap.push(e);
                self.heap.len() - 1
            }
            i => {
                self.heap[i as usize] = e;
                i as usize
            }
        };
        self.pos[p as usize] = i as u32;
        let i = self.up(i);
        self.down(i);
    }

    fn swap(&mut self, i: usize, j: usize) {
        self.heap.swap(i, j);
        self.pos[self.heap[i].pair as usize] = i as u32;
        self.pos[self.heap[j].pair as usize] = j as u32;
    }

    fn up(&mut self, mut i: usize) -> usize {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i].before(&self.heap[parent]) {
                self.swap(i, parent);
                i = parent;
            } else {
                break;
            }
        }
        i
    }

    fn down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut best = i;
            if l < n && self.heap[l].before(&self.heap[best]) {
                best = l;
            }
            if r < n && self.heap[r].before(&self.heap[best]) {
                best = r;
            }
            if best == i {
                return;
            }
            self.swap(i, best);
            i = best;
        }
    }
}
