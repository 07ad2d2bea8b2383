//! The BPE merge loop on an NVIDIA GPU (the `cuda` feature).
//!
//! The word table lives on the device. Each merge is three kernels:
//! `best_pair` reduces the pair-count table to the pair with the highest
//! count (ties: smaller left id, then smaller right id, as on the CPU),
//! the host reads that one pair back and derives the new symbol's info with
//! the same [`Rules`] as the CPU trainer, and `apply_merge` rewrites every
//! word holding the pair (one thread per word), adding each changed pair's
//! count delta to the table with atomics. Counts are u64 sums, which atomics
//! add exactly in any order, so the GPU learns the same merges, in the same
//! order, as [`super::bpe::merge_loop`]; both record merges through
//! [`Learner`].
//!
//! No CUDA toolkit is needed to build: cudarc loads the driver and NVRTC
//! when training starts, and NVRTC compiles the kernels below.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, LaunchArgs, LaunchConfig, PushKernelArg};

use super::bpe::{pair_key, Learner, Merges, SymInfo};
use super::weights::WordTable;
use super::{TrainConfig, TrainError};

const KERNELS: &str = r#"
typedef unsigned long long u64;
typedef unsigned int u32;
#define EMPTY 0xFFFFFFFFFFFFFFFFull

// Symbol info packed as in pack_info(): len | class << 8 | flags << 24.
__device__ __forceinline__ bool join_ok(u32 a, u32 b, u32 max_len, u32 allow_ws_only) {
    u32 la = a & 0xFF, lb = b & 0xFF;
    u32 ca = (a >> 8) & 0xFFFF, cb = (b >> 8) & 0xFFFF;
    bool a_starts = (a >> 24) & 1, a_all = (a >> 25) & 1, a_digit = (a >> 26) & 1;
    bool b_starts = (b >> 24) & 1, b_all = (b >> 25) & 1, b_digit = (b >> 26) & 1;
    if (la + lb > max_len || a_digit || b_digit) return false;
    if (b_starts) return allow_ws_only && a_all && b_all;
    if (a_all) return la == 1;
    // 0xFFFF: combining marks, ZWNJ, ZWJ (words::C_INHERITED) join any script.
    return ca == cb || ca == 0xFFFF || cb == 0xFFFF;
}

__device__ __forceinline__ u64 mix(u64 k) {
    k ^= k >> 33; k *= 0xff51afd7ed558ccdull; k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull; k ^= k >> 33;
    return k;
}

// The slot of `key`, inserting it if absent (linear probing).
__device__ u64 slot_of(u64* keys, u64 mask, u64 key, u32* overflow) {
    u64 h = mix(key) & mask;
    for (u64 probes = 0; probes <= mask; probes++) {
        u64 prev = atomicCAS(&keys[h], EMPTY, key);
        if (prev == EMPTY || prev == key) return h;
        h = (h + 1) & mask;
    }
    atomicExch(overflow, 1u);
    return 0;
}

__device__ __forceinline__ void add(u64* keys, u64* vals, u64 mask, u32 x, u32 y, u64 n,
                                    const u32* info, u32 max_len, u32 allow_ws, u32* overflow) {
    if (!join_ok(info[x], info[y], max_len, allow_ws)) return;
    u64 s = slot_of(keys, mask, ((u64)x << 32) | y, overflow);
    atomicAdd(&vals[s], n);
}

extern "C" __global__ void count_pairs(const u32* syms, const u64* start, const u32* len,
        const u64* count, u32 words, const u32* info, u32 max_len, u32 allow_ws,
        u64* keys, u64* vals, u64 mask, u32* overflow) {
    u32 w = blockIdx.x * blockDim.x + threadIdx.x;
    if (w >= words) return;
    const u32* s = syms + start[w];
    for (u32 i = 0; i + 1 < len[w]; i++)
        add(keys, vals, mask, s[i], s[i + 1], count[w], info, max_len, allow_ws, overflow);
}

extern "C" __global__ void apply_merge(u32* syms, const u64* start, u32* len,
        const u64* count, u32 words, const u32* info, u32 max_len, u32 allow_ws,
        u64* keys, u64* vals, u64 mask, u32* overflow, u32 a, u32 b, u32 nw) {
    u32 w = blockIdx.x * blockDim.x + threadIdx.x;
    if (w >= words) return;
    u32* s = syms + start[w];
    u32 l = len[w];
    u64 n = count[w], neg = (u64)0 - count[w];
    u32 o = 0;
    bool found = false;
    for (u32 r = 0; r < l;) {
        if (r + 1 < l && s[r] == a && s[r + 1] == b) {
            found = true;
            if (o > 0) add(keys, vals, mask, s[o - 1], a, neg, info, max_len, allow_ws, overflow);
            add(keys, vals, mask, a, b, neg, info, max_len, allow_ws, overflow);
            if (r + 2 < l) add(keys, vals, mask, b, s[r + 2], neg, info, max_len, allow_ws, overflow);
            s[o] = nw;
            if (o > 0) add(keys, vals, mask, s[o - 1], nw, n, info, max_len, allow_ws, overflow);
            if (r + 2 < l) add(keys, vals, mask, nw, s[r + 2], n, info, max_len, allow_ws, overflow);
            o += 1; r += 2;
        } else {
            s[o++] = s[r++];
        }
    }
    if (found) len[w] = o;
}

__device__ __forceinline__ bool better(u64 c1, u64 k1, u64 c2, u64 k2) {
    return c1 > c2 || (c1 == c2 && k1 < k2);
}

// Per-block best (count, key) over slots 0, stride, 2 stride, ... < n
// stride, written to out[2 block] (count) and out[2 block + 1] (key). A
// second launch with one block and stride 2 reduces the blocks' results,
// so the host reads back one pair.
extern "C" __global__ void best_pair(const u64* keys, const u64* vals, u64 stride, u64 n,
                                     u64* out) {
    __shared__ u64 sc[256];
    __shared__ u64 sk[256];
    u64 bc = 0, bk = EMPTY;
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n;
         i += (u64)gridDim.x * blockDim.x) {
        u64 k = keys[i * stride], v = vals[i * stride];
        if (k != EMPTY && better(v, k, bc, bk)) { bc = v; bk = k; }
    }
    sc[threadIdx.x] = bc; sk[threadIdx.x] = bk;
    __syncthreads();
    for (u32 st = blockDim.x / 2; st > 0; st >>= 1) {
        if (threadIdx.x < st && better(sc[threadIdx.x + st], sk[threadIdx.x + st],
                                       sc[threadIdx.x], sk[threadIdx.x])) {
            sc[threadIdx.x] = sc[threadIdx.x + st]; sk[threadIdx.x] = sk[threadIdx.x + st];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) { out[2 * blockIdx.x] = sc[0]; out[2 * blockIdx.x + 1] = sk[0]; }
}
"#;

const THREADS: u32 = 256;
const BLOCKS: u32 = 1024;
const EMPTY: u64 = u64::MAX;

fn pack_info(i: SymInfo) -> u32 {
    (i.len as u32).min(255)
        | (i.class as u32) << 8
        | (i.starts_ws as u32) << 24
        | (i.all_ws as u32) << 25
        | (i.digit as u32) << 26
}

fn gpu<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> TrainError {
    move |e| TrainError::Gpu(format!("{what}: {e:?}"))
}

/// Opens GPU 0, with a clear error where there is no driver or device
/// (cudarc would panic).
pub fn open() -> Result<Arc<CudaContext>, TrainError> {
    // SAFETY: only tries to load the driver library; no CUDA call is made.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(TrainError::Gpu(
            "no CUDA driver found (libcuda); train on the CPU with --device cpu".into(),
        ));
    }
    // SAFETY: as above, for NVRTC, which compiles the kernels.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(TrainError::Gpu(
            "no NVRTC library found (libnvrtc, part of the CUDA runtime); \
             install it or train on the CPU with --device cpu"
                .into(),
        ));
    }
    cudarc::driver::result::init().map_err(gpu("initialising the CUDA driver"))?;
    let n = cudarc::driver::result::device::get_count().map_err(gpu("counting GPUs"))?;
    if n == 0 {
        return Err(TrainError::Gpu("the CUDA driver sees no GPU".into()));
    }
    CudaContext::new(0).map_err(gpu("opening GPU 0"))
}

/// The word and pair tables on the device, in the order `count_pairs` and
/// `apply_merge` take them.
struct Tables {
    syms: CudaSlice<u32>,
    start: CudaSlice<u64>,
    len: CudaSlice<u32>,
    count: CudaSlice<u64>,
    words: u32,
    info: CudaSlice<u32>,
    max_len: u32,
    allow_ws: u32,
    keys: CudaSlice<u64>,
    vals: CudaSlice<u64>,
    mask: u64,
    overflow: CudaSlice<u32>,
}

impl Tables {
    fn push<'a>(&'a mut self, b: &mut LaunchArgs<'a>) {
        b.arg(&mut self.syms)
            .arg(&self.start)
            .arg(&mut self.len)
            .arg(&self.count)
            .arg(&self.words)
            .arg(&self.info)
            .arg(&self.max_len)
            .arg(&self.allow_ws)
            .arg(&mut self.keys)
            .arg(&mut self.vals)
            .arg(&self.mask)
            .arg(&mut self.overflow);
    }
}

fn config(blocks: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks.max(1), 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// [`super::bpe::train_bpe`] with the merge loop on the GPU.
pub fn train_bpe_cuda(table: &WordTable, cfg: &TrainConfig) -> Result<Merges, TrainError> {
    let ctx = open()?;
    let stream = ctx.default_stream();
    let mut l = Learner::new(table, cfg);
    if l.rules.max_len > 255 {
        return Err(TrainError::Config(
            "the GPU trainer takes pieces of at most 255 characters".into(),
        ));
    }

    let ptx = cudarc::nvrtc::compile_ptx(KERNELS).map_err(gpu("compiling the kernels"))?;
    let module = ctx.load_module(ptx).map_err(gpu("loading the kernels"))?;
    let load = |name: &'static str| module.load_function(name).map_err(gpu(name));
    let (f_count, f_apply, f_best) = (
        load("count_pairs")?,
        load("apply_merge")?,
        load("best_pair")?,
    );

    let up = |what: &'static str| gpu::<cudarc::driver::DriverError>(what);
    let t = &l.words;
    let start: Vec<u64> = t.start.iter().map(|&s| s as u64).collect();
    // Every distinct pair ever counted occupied an adjacent position once,
    // and each merge application adds at most two: 4 slots per symbol keep
    // the table under 75 % full.
    let cap = (4 * t.syms.len().max(16)).next_power_of_two();
    let mut packed: Vec<u32> = l.info.iter().map(|&i| pack_info(i)).collect();
    packed.resize((l.info.len() + l.want).max(1), 0);
    let mut d = Tables {
        syms: stream.clone_htod(&t.syms).map_err(up("copying words"))?,
        start: stream.clone_htod(&start).map_err(up("copying words"))?,
        len: stream.clone_htod(&t.len).map_err(up("copying words"))?,
        count: stream.clone_htod(&t.count).map_err(up("copying words"))?,
        words: t.len.len() as u32,
        info: stream.clone_htod(&packed).map_err(up("copying symbols"))?,
        max_len: l.rules.max_len as u32,
        allow_ws: l.rules.allow_ws_only as u32,
        keys: stream
            .clone_htod(&vec![EMPTY; cap])
            .map_err(up("allocating the pair table"))?,
        vals: stream
            .alloc_zeros(cap)
            .map_err(up("allocating the pair table"))?,
        mask: (cap - 1) as u64,
        overflow: stream.alloc_zeros(1).map_err(up("allocating"))?,
    };
    let mut d_blocks: CudaSlice<u64> = stream
        .alloc_zeros(2 * BLOCKS as usize)
        .map_err(up("allocating"))?;
    let mut d_best: CudaSlice<u64> = stream.alloc_zeros(2).map_err(up("allocating"))?;
    let per_word = config(d.words.div_ceil(THREADS));

    let mut b = stream.launch_builder(&f_count);
    d.push(&mut b);
    // SAFETY: the arguments match the kernel's signature, and every buffer
    // has the length the kernel indexes (words, symbols, cap).
    unsafe { b.launch(per_word) }.map_err(up("count_pairs"))?;

    let (n_slots, blocks, one, two) = (cap as u64, BLOCKS as u64, 1u64, 2u64);
    while !l.full() {
        let mut b = stream.launch_builder(&f_best);
        b.arg(&d.keys)
            .arg(&d.vals)
            .arg(&one)
            .arg(&n_slots)
            .arg(&mut d_blocks);
        // SAFETY: as above; `d_blocks` holds two slots per block.
        unsafe { b.launch(config(BLOCKS)) }.map_err(up("best_pair"))?;
        let mut b = stream.launch_builder(&f_best);
        let (counts, keys) = (d_blocks.slice(0..), d_blocks.slice(1..));
        b.arg(&keys)
            .arg(&counts)
            .arg(&two)
            .arg(&blocks)
            .arg(&mut d_best);
        // SAFETY: reads the blocks' (count, key) slots with stride 2.
        unsafe { b.launch(config(1)) }.map_err(up("best_pair"))?;
        let best = stream
            .clone_dtoh(&d_best)
            .map_err(up("reading the best pair"))?;
        let (c, key) = (best[0], best[1]);
        if c < l.min || key == EMPTY {
            break;
        }
        let (a, bb) = ((key >> 32) as u32, key as u32);
        debug_assert_eq!(key, pair_key(a, bb));
        let (new, joined) = l
            .record(a, bb, c)
            .ok_or_else(|| TrainError::Gpu(format!("the GPU chose an invalid pair {a} {bb}")))?;
        stream
            .memcpy_htod(
                &[pack_info(joined)],
                &mut d.info.slice_mut(new as usize..new as usize + 1),
            )
            .map_err(up("copying a symbol"))?;
        let mut b = stream.launch_builder(&f_apply);
        d.push(&mut b);
        b.arg(&a).arg(&bb).arg(&new);
        // SAFETY: as for count_pairs; `new` < the info buffer's length.
        unsafe { b.launch(per_word) }.map_err(up("apply_merge"))?;
    }
    let overflow = stream
        .clone_dtoh(&d.overflow)
        .map_err(up("reading flags"))?[0];
    if overflow != 0 {
        return Err(TrainError::Gpu("the pair table overflowed".into()));
    }
    Ok(l.learned)
}
