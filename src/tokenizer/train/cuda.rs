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
//! order, as [`super::bpe::merge_loop`].
//!
//! No CUDA toolkit is needed to build: cudarc loads the driver and NVRTC
//! when training starts, and NVRTC compiles the kernels below.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, LaunchConfig, PushKernelArg};

use super::bpe::{
    alphabet, merges_wanted, pair_key, required_chars, symbol_table, Merges, Rules, SymInfo,
};
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
    return ca == cb;
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

// Per-block best (count, key) over a strided range; a second launch with
// one block reduces the blocks' results.
extern "C" __global__ void best_pair(const u64* keys, const u64* vals, u64 n,
                                     u64* out_count, u64* out_key) {
    __shared__ u64 sc[256];
    __shared__ u64 sk[256];
    u64 bc = 0, bk = EMPTY;
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n;
         i += (u64)gridDim.x * blockDim.x) {
        u64 k = keys[i];
        if (k != EMPTY && better(vals[i], k, bc, bk)) { bc = vals[i]; bk = k; }
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
    if (threadIdx.x == 0) { out_count[blockIdx.x] = sc[0]; out_key[blockIdx.x] = sk[0]; }
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

/// [`super::bpe::train_bpe`] with the merge loop on the GPU.
pub fn train_bpe_cuda(table: &WordTable, cfg: &TrainConfig) -> Result<Merges, TrainError> {
    let ctx = open()?;
    let stream = ctx.default_stream();
    let alpha = alphabet(table, cfg.character_coverage, &required_chars(cfg));
    let t = symbol_table(table, &alpha);
    let want = merges_wanted(cfg, alpha.len());
    let rules = Rules::new(cfg);
    let mut info: Vec<SymInfo> = alpha.iter().map(|&c| rules.char_info(c)).collect();
    let mut pieces: Vec<String> = alpha.iter().map(|c| c.to_string()).collect();
    let alphabet_len = alpha.len();
    if rules.max_len > 255 {
        return Err(TrainError::Config(
            "the GPU trainer takes pieces of at most 255 characters".into(),
        ));
    }

    let ptx = cudarc::nvrtc::compile_ptx(KERNELS).map_err(gpu("compiling the kernels"))?;
    let module = ctx.load_module(ptx).map_err(gpu("loading the kernels"))?;
    let f_count = module
        .load_function("count_pairs")
        .map_err(gpu("count_pairs"))?;
    let f_apply = module
        .load_function("apply_merge")
        .map_err(gpu("apply_merge"))?;
    let f_best = module
        .load_function("best_pair")
        .map_err(gpu("best_pair"))?;

    let words = t.len.len() as u32;
    let start: Vec<u64> = t.start.iter().map(|&s| s as u64).collect();
    // Every distinct pair ever counted occupied an adjacent position once,
    // and each merge application adds at most two: 4 slots per symbol keep
    // the table under 75 % full.
    let cap = (4 * t.syms.len().max(16)).next_power_of_two();
    let mask = (cap - 1) as u64;
    let up = |what: &'static str| gpu::<cudarc::driver::DriverError>(what);
    let mut d_syms = stream.clone_htod(&t.syms).map_err(up("copying words"))?;
    let d_start = stream.clone_htod(&start).map_err(up("copying words"))?;
    let mut d_len = stream.clone_htod(&t.len).map_err(up("copying words"))?;
    let d_count = stream.clone_htod(&t.count).map_err(up("copying words"))?;
    let mut d_keys = stream
        .clone_htod(&vec![EMPTY; cap])
        .map_err(up("allocating the pair table"))?;
    let mut d_vals: CudaSlice<u64> = stream
        .alloc_zeros(cap)
        .map_err(up("allocating the pair table"))?;
    let mut d_overflow: CudaSlice<u32> = stream.alloc_zeros(1).map_err(up("allocating"))?;
    let mut d_bc: CudaSlice<u64> = stream
        .alloc_zeros(BLOCKS as usize)
        .map_err(up("allocating"))?;
    let mut d_bk: CudaSlice<u64> = stream
        .alloc_zeros(BLOCKS as usize)
        .map_err(up("allocating"))?;
    let mut d_c: CudaSlice<u64> = stream.alloc_zeros(1).map_err(up("allocating"))?;
    let mut d_k: CudaSlice<u64> = stream.alloc_zeros(1).map_err(up("allocating"))?;
    let max_info = alphabet_len + want;
    let mut packed: Vec<u32> = info.iter().map(|&i| pack_info(i)).collect();
    packed.resize(max_info.max(1), 0);
    let mut d_info = stream.clone_htod(&packed).map_err(up("copying symbols"))?;
    let (max_len, allow_ws) = (rules.max_len as u32, rules.allow_ws_only as u32);
    let per_word = LaunchConfig {
        grid_dim: (words.div_ceil(THREADS).max(1), 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };

    let mut b = stream.launch_builder(&f_count);
    b.arg(&d_syms)
        .arg(&d_start)
        .arg(&d_len)
        .arg(&d_count)
        .arg(&words)
        .arg(&d_info)
        .arg(&max_len)
        .arg(&allow_ws)
        .arg(&mut d_keys)
        .arg(&mut d_vals)
        .arg(&mask)
        .arg(&mut d_overflow);
    // SAFETY: the arguments match the kernel's signature, and every buffer
    // has the length the kernel indexes (words, symbols, cap).
    unsafe { b.launch(per_word) }.map_err(up("count_pairs"))?;

    let min = cfg.min_frequency.max(1);
    let mut merges = Vec::with_capacity(want);
    let mut counts = Vec::with_capacity(want);
    let n_slots = cap as u64;
    while merges.len() < want {
        let mut b = stream.launch_builder(&f_best);
        b.arg(&d_keys)
            .arg(&d_vals)
            .arg(&n_slots)
            .arg(&mut d_bc)
            .arg(&mut d_bk);
        let grid = LaunchConfig {
            grid_dim: (BLOCKS, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: as above; the out arrays hold BLOCKS entries.
        unsafe { b.launch(grid) }.map_err(up("best_pair"))?;
        let mut b = stream.launch_builder(&f_best);
        let blocks = BLOCKS as u64;
        b.arg(&d_bk)
            .arg(&d_bc)
            .arg(&blocks)
            .arg(&mut d_c)
            .arg(&mut d_k);
        let one = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the blocks' results are read as (key, count) slots.
        unsafe { b.launch(one) }.map_err(up("best_pair"))?;
        let c = stream
            .clone_dtoh(&d_c)
            .map_err(up("reading the best pair"))?[0];
        let key = stream
            .clone_dtoh(&d_k)
            .map_err(up("reading the best pair"))?[0];
        if c < min || key == EMPTY {
            break;
        }
        let (a, bb) = ((key >> 32) as u32, key as u32);
        debug_assert_eq!(key, pair_key(a, bb));
        let new = info.len() as u32;
        let joined = rules
            .join(info[a as usize], info[bb as usize])
            .ok_or_else(|| TrainError::Gpu(format!("the GPU chose an invalid pair {a} {bb}")))?;
        info.push(joined);
        stream
            .memcpy_htod(
                &[pack_info(joined)],
                &mut d_info.slice_mut(new as usize..new as usize + 1),
            )
            .map_err(up("copying a symbol"))?;
        pieces.push(format!("{}{}", pieces[a as usize], pieces[bb as usize]));
        merges.push((a, bb));
        counts.push(c);
        let mut b = stream.launch_builder(&f_apply);
        b.arg(&mut d_syms)
            .arg(&d_start)
            .arg(&mut d_len)
            .arg(&d_count)
            .arg(&words)
            .arg(&d_info)
            .arg(&max_len)
            .arg(&allow_ws)
            .arg(&mut d_keys)
            .arg(&mut d_vals)
            .arg(&mask)
            .arg(&mut d_overflow)
            .arg(&a)
            .arg(&bb)
            .arg(&new);
        // SAFETY: as for count_pairs; `new` < the info buffer's length.
        unsafe { b.launch(per_word) }.map_err(up("apply_merge"))?;
    }
    let overflow = stream
        .clone_dtoh(&d_overflow)
        .map_err(up("reading flags"))?[0];
    if overflow != 0 {
        return Err(TrainError::Gpu("the pair table overflowed".into()));
    }
    Ok(Merges {
        pieces,
        alphabet_len,
        merges,
        counts,
    })
}
