//! fastText supervised-model inference, for `lid.176.ftz` and its kin.
//!
//! lid.176 is the language-ID model that datatrove, ungoliant and cc_net
//! use. Its `.ftz` file stores both matrices product-quantized and predicts
//! with a hierarchical softmax; the Rust crate we tried handles only
//! one-vs-all on quantized models and gets every label wrong. This module
//! reads the file format (version 12) and predicts exactly as fastText's
//! C++ does: the same tokenization, subword hashing (FNV-1a over
//! sign-extended bytes), averaging, Huffman tree and depth-first top-k. Both
//! matrices are dequantized at load (lid.176: 16 dimensions, so small), which
//! makes prediction a few dot products.

use std::collections::HashMap;

use crate::hash::{MixState, PassThroughState};
use std::path::Path;

use super::bytes::{load_model, Bytes, ModelError};

/// Model hyper-parameters that prediction needs.
#[derive(Debug, Clone)]
struct Args {
    dim: usize,
    word_ngrams: usize,
    loss: i32,
    bucket: u32,
    minn: usize,
    maxn: usize,
}

const LOSS_HS: i32 = 1;
const LOSS_SOFTMAX: i32 = 3;
const LOSS_OVA: i32 = 4;
const EOS: &str = "</s>";

#[derive(Debug, Clone, Copy)]
struct Node {
    left: i32,
    right: i32,
    count: i64,
}

/// A loaded supervised fastText model.
pub struct FastText {
    args: Args,
    /// Word -> index, for the `nwords` words of the dictionary.
    words: HashMap<Box<str>, u32, MixState>,
    /// Subword rows of each word (the word itself, then its n-grams).
    subwords: Vec<Vec<u32>>,
    labels: Vec<String>,
    nwords: u32,
    /// Original n-gram bucket -> row offset, for pruned (quantized) models.
    prune: Option<HashMap<u32, u32, PassThroughState>>,
    /// Input embeddings, row-major, `dim` floats per row.
    input: Vec<f32>,
    /// Output rows (one per label, or per inner tree node for HS).
    output: Vec<f32>,
    tree: Vec<Node>,
}

impl std::fmt::Debug for FastText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastText")
            .field("dim", &self.args.dim)
            .field("words", &self.nwords)
            .field("labels", &self.labels.len())
            .field("loss", &self.args.loss)
            .finish()
    }
}

/// fastText's string hash: FNV-1a over bytes sign-extended to 32 bits.
fn fnv(s: &[u8]) -> u32 {
    let mut h: u32 = 2166136261;
    for &b in s {
        h ^= b as i8 as i32 as u32;
        h = h.wrapping_mul(16777619);
    }
    h
}

/// A product quantizer: 256 centroids per sub-vector.
struct Pq {
    dim: usize,
    nsubq: usize,
    dsub: usize,
    lastdsub: usize,
    centroids: Vec<f32>,
}

impl Pq {
    fn load(r: &mut Bytes) -> Result<Pq, String> {
        let dim = r.i32()? as usize;
        let nsubq = r.i32()? as usize;
        let dsub = r.i32()? as usize;
        let lastdsub = r.i32()? as usize;
        let centroids = r.f32s(dim * 256)?;
        Ok(Pq {
            dim,
            nsubq,
            dsub,
            lastdsub,
            centroids,
        })
    }

    fn centroid(&self, m: usize, code: u8) -> &[f32] {
        let i = code as usize;
        if m == self.nsubq - 1 {
            let at = m * 256 * self.dsub + i * self.lastdsub;
            &self.centroids[at..at + self.lastdsub]
        } else {
            let at = (m * 256 + i) * self.dsub;
            &self.centroids[at..at + self.dsub]
        }
    }
}

/// Reads a dense or quantized matrix and returns it dense: (rows, cols, data).
fn load_matrix(r: &mut Bytes, quantized: bool) -> Result<(usize, usize, Vec<f32>), String> {
    if !quantized {
        let m = r.i64()? as usize;
        let n = r.i64()? as usize;
        let data = r.f32s(m.checked_mul(n).ok_or("matrix too large")?)?;
        return Ok((m, n, data));
    }
    let qnorm = r.u8()? != 0;
    let m = r.i64()? as usize;
    let n = r.i64()? as usize;
    let codesize = r.i32()? as usize;
    let codes = r.take(codesize)?.to_vec();
    let pq = Pq::load(r)?;
    let norms = if qnorm {
        let codes = r.take(m)?.to_vec();
        let npq = Pq::load(r)?;
        Some((codes, npq))
    } else {
        None
    };
    if pq.dim != n || codes.len() < m * pq.nsubq {
        return Err(format!(
            "quantized matrix {m}x{n} does not match its quantizer"
        ));
    }
    let mut data = vec![0f32; m * n];
    for row in 0..m {
        let norm = match &norms {
            Some((codes, npq)) => npq.centroid(0, codes[row])[0],
            None => 1.0,
        };
        let out = &mut data[row * n..(row + 1) * n];
        for sub in 0..pq.nsubq {
            let c = pq.centroid(sub, codes[pq.nsubq * row + sub]);
            for (k, v) in c.iter().enumerate() {
                out[sub * pq.dsub + k] += norm * v;
            }
        }
    }
    Ok((m, n, data))
}

impl FastText {
    pub fn load(path: &Path) -> Result<FastText, ModelError> {
        load_model(path, "fastText model", Self::from_bytes)
    }

    pub fn from_bytes(b: &[u8]) -> Result<FastText, String> {
        let mut r = Bytes::new(b);
        if r.i32()? != 793712314 {
            return Err("bad magic number".into());
        }
        let version = r.i32()?;
        if version != 12 {
            return Err(format!("version {version}, expected 12"));
        }
        let ints: Vec<i32> = (0..12).map(|_| r.i32()).collect::<Result<_, _>>()?;
        r.f64()?; // sampling threshold, training only
        let args = Args {
            dim: ints[0] as usize,
            word_ngrams: ints[5].max(1) as usize,
            loss: ints[6],
            bucket: ints[8] as u32,
            minn: ints[9] as usize,
            maxn: ints[10] as usize,
        };
        if ints[7] != 3 {
            return Err("not a supervised model".into());
        }
        let size = r.i32()? as usize;
        let nwords = r.i32()? as u32;
        let nlabels = r.i32()? as usize;
        r.i64()?; // ntokens
        let prune_size = r.i64()?;
        // Capacities from the header are hints only: a hostile file cannot
        // make them allocate more than the entries it really holds.
        let hint = |n: usize| n.min(1 << 20);
        let mut words =
            HashMap::with_capacity_and_hasher(hint(nwords as usize), MixState::default());
        let mut word_list = Vec::with_capacity(hint(nwords as usize));
        let mut labels = Vec::with_capacity(hint(nlabels));
        let mut label_counts = Vec::with_capacity(hint(nlabels));
        for _ in 0..size {
            let w = r.cstr()?;
            let count = r.i64()?;
            match r.u8()? {
                0 => {
                    words.insert(w.clone().into_boxed_str(), word_list.len() as u32);
                    word_list.push(w);
                }
                1 => {
                    labels.push(w);
                    label_counts.push(count);
                }
                t => return Err(format!("unknown entry type {t}")),
            }
        }
        if word_list.len() != nwords as usize || labels.len() != nlabels {
            return Err("dictionary counts disagree".into());
        }
        let prune = if prune_size >= 0 {
            let mut m = HashMap::with_capacity_and_hasher(
                hint(prune_size as usize),
                PassThroughState::default(),
            );
            for _ in 0..prune_size {
                let from = r.i32()? as u32;
                let to = r.i32()? as u32;
                m.insert(from, to);
            }
            Some(m)
        } else {
            None
        };
        let quant_input = r.u8()? != 0;
        let (in_rows, in_dim, input) = load_matrix(&mut r, quant_input)?;
        let qout = r.u8()? != 0;
        let (out_rows, out_dim, output) = load_matrix(&mut r, quant_input && qout)?;
        if in_dim != args.dim || out_dim != args.dim || out_rows != nlabels {
            return Err(format!(
                "matrix shapes {in_rows}x{in_dim} / {out_rows}x{out_dim} do not fit dim {} and {nlabels} labels",
                args.dim
            ));
        }
        let mut model = FastText {
            args,
            words,
            subwords: Vec::new(),
            labels,
            nwords,
            prune,
            input,
            output,
            tree: Vec::new(),
        };
        model.subwords = word_list
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let mut ids = vec![i as u32];
                if w != EOS {
                    model.char_ngrams(&format!("<{w}>"), &mut ids);
                }
                ids
            })
            .collect();
        if model.args.loss == LOSS_HS {
            model.tree = huffman(&label_counts);
        } else if model.args.loss != LOSS_SOFTMAX && model.args.loss != LOSS_OVA {
            return Err(format!("loss {} cannot predict", model.args.loss));
        }
        if let Some(max) = model
            .subwords
            .iter()
            .flatten()
            .max()
            .filter(|&&m| m as usize >= in_rows)
        {
            return Err(format!("row {max} beyond the input matrix"));
        }
        Ok(model)
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Row of an n-gram bucket, if the (pruned) model kept it.
    fn bucket_row(&self, bucket: u32) -> Option<u32> {
        match &self.prune {
            Some(p) => p.get(&bucket).map(|&r| self.nwords + r),
            None => Some(self.nwords + bucket),
        }
    }

    fn char_ngrams(&self, word: &str, out: &mut Vec<u32>) {
        let b = word.as_bytes();
        if self.args.maxn == 0 || self.args.bucket == 0 {
            return;
        }
        for i in 0..b.len() {
            if b[i] & 0xC0 == 0x80 {
                continue;
            }
            let (mut j, mut n) = (i, 1);
            while j < b.len() && n <= self.args.maxn {
                j += 1;
                while j < b.len() && b[j] & 0xC0 == 0x80 {
                    j += 1;
                }
                if n >= self.args.minn && !(n == 1 && (i == 0 || j == b.len())) {
                    let h = fnv(&b[i..j]) % self.args.bucket;
                    if let Some(row) = self.bucket_row(h) {
                        out.push(row);
                    }
                }
                n += 1;
            }
        }
    }

    /// The input rows of one line of text, as fastText's `getLine` makes them.
    fn rows(&self, text: &str) -> Vec<u32> {
        let mut rows = Vec::new();
        let mut hashes = Vec::new();
        let tokens = text
            .split([' ', '\t', '\n', '\r', '\u{0B}', '\u{0C}', '\0'])
            .filter(|t| !t.is_empty())
            .chain(std::iter::once(EOS));
        for tok in tokens {
            hashes.push(fnv(tok.as_bytes()));
            match self.words.get(tok) {
                Some(&id) => rows.extend_from_slice(&self.subwords[id as usize]),
                None if tok != EOS => self.char_ngrams(&format!("<{tok}>"), &mut rows),
                None => {}
            }
        }
        for i in 0..hashes.len() {
            let mut h = hashes[i] as u64;
            for &next in hashes.iter().take(i + self.args.word_ngrams).skip(i + 1) {
                h = h.wrapping_mul(116049371).wrapping_add(next as u64);
                if let Some(row) = self.bucket_row((h % self.args.bucket as u64) as u32) {
                    rows.push(row);
                }
            }
        }
        rows
    }

    /// The top `k` labels of one line of text, with their probabilities.
    #[cfg(test)]
    pub fn predict(&self, text: &str, k: usize) -> Vec<(&str, f32)> {
        self.predict_indices(text, k)
            .into_iter()
            .map(|(i, p)| (self.labels[i].as_str(), p))
            .collect()
    }

    /// The top `k` labels' indices and probabilities, best first.
    pub fn predict_indices(&self, text: &str, k: usize) -> Vec<(usize, f32)> {
        let rows = self.rows(text);
        if rows.is_empty() || k == 0 {
            return Vec::new();
        }
        let d = self.args.dim;
        let mut hidden = vec![0f32; d];
        for &r in &rows {
            let row = &self.input[r as usize * d..(r as usize + 1) * d];
            for (h, v) in hidden.iter_mut().zip(row) {
                *h += v;
            }
        }
        let inv = 1.0 / rows.len() as f32;
        hidden.iter_mut().for_each(|h| *h *= inv);
        let mut top: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        match self.args.loss {
            LOSS_HS => {
                let root = self.tree.len() - 1;
                self.dfs(k, root, 0.0, &mut top, &hidden);
            }
            _ => {
                let dots: Vec<f32> = (0..self.labels.len())
                    .map(|i| self.dot(i, &hidden))
                    .collect();
                let scores: Vec<f32> = if self.args.loss == LOSS_SOFTMAX {
                    let max = dots.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let z: f32 = dots.iter().map(|x| (x - max).exp()).sum();
                    dots.iter().map(|x| (x - max).exp() / z).collect()
                } else {
                    dots.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect()
                };
                for (i, p) in scores.into_iter().enumerate() {
                    push_top(&mut top, k, (std_log(p), i));
                }
            }
        }
        top.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        top.into_iter().map(|(s, i)| (i, s.exp())).collect()
    }

    fn dot(&self, row: usize, hidden: &[f32]) -> f32 {
        let d = self.args.dim;
        self.output[row * d..(row + 1) * d]
            .iter()
            .zip(hidden)
            .map(|(a, b)| a * b)
            .sum()
    }

    fn dfs(&self, k: usize, node: usize, score: f32, top: &mut Vec<(f32, usize)>, hidden: &[f32]) {
        // fastText's default threshold of 0 still cuts below log(1e-5).
        if score < std_log(0.0) {
            return;
        }
        if top.len() == k && score < top.iter().map(|t| t.0).fold(f32::INFINITY, f32::min) {
            return;
        }
        let n = self.tree[node];
        if n.left == -1 && n.right == -1 {
            push_top(top, k, (score, node));
            return;
        }
        let f = 1.0 / (1.0 + (-self.dot(node - self.labels.len(), hidden)).exp());
        self.dfs(k, n.left as usize, score + std_log(1.0 - f), top, hidden);
        self.dfs(k, n.right as usize, score + std_log(f), top, hidden);
    }
}

/// fastText's `std_log`: log with a floor, so a zero probability is finite.
fn std_log(x: f32) -> f32 {
    (x + 1e-5).ln()
}

/// Keeps the `k` best (score, label) pairs; on equal scores the earlier label wins.
fn push_top(top: &mut Vec<(f32, usize)>, k: usize, item: (f32, usize)) {
    top.push(item);
    if top.len() > k {
        let worst = top
            .iter()
            .enumerate()
            .min_by(|a, b| a.1 .0.total_cmp(&b.1 .0).then(b.1 .1.cmp(&a.1 .1)))
            .map(|(i, _)| i)
            .expect("non-empty");
        top.swap_remove(worst);
    }
}

/// fastText's Huffman tree over label counts (labels sorted by count, descending).
fn huffman(counts: &[i64]) -> Vec<Node> {
    let osz = counts.len();
    let mut tree = vec![
        Node {
            left: -1,
            right: -1,
            count: 1_000_000_000_000_000,
        };
        2 * osz - 1
    ];
    for (i, &c) in counts.iter().enumerate() {
        tree[i].count = c;
    }
    let mut leaf = osz as i64 - 1;
    let mut node = osz;
    for i in osz..2 * osz - 1 {
        let mut mini = [0usize; 2];
        for m in &mut mini {
            if leaf >= 0 && tree[leaf as usize].count < tree[node].count {
                *m = leaf as usize;
                leaf -= 1;
            } else {
                *m = node;
                node += 1;
            }
        }
        tree[i].left = mini[0] as i32;
        tree[i].right = mini[1] as i32;
        tree[i].count = tree[mini[0]].count + tree[mini[1]].count;
    }
    tree
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_sign_extends_bytes_like_fasttext() {
        assert_eq!(fnv(b""), 2166136261);
        // Known values of fastText's hash (ASCII, and a byte >= 0x80).
        assert_eq!(fnv(b"a"), 0xe40c292c);
        assert_ne!(fnv("é".as_bytes()), fnv(&[0xC3, 0x29]));
    }

    #[test]
    fn huffman_tree_joins_the_two_smallest() {
        let t = huffman(&[10, 5, 1]);
        assert_eq!(t.len(), 5);
        // Node 3 joins the two rarest labels (2 and 1); the root takes the
        // smaller-count node first: node 3 (6) before label 0 (10).
        assert_eq!((t[3].left, t[3].right), (2, 1));
        assert_eq!((t[4].left, t[4].right), (3, 0));
        assert_eq!(t[4].count, 16);
    }

    #[test]
    fn top_k_keeps_the_best() {
        let mut top = Vec::new();
        for (i, s) in [-3.0, -1.0, -2.0, -0.5].iter().enumerate() {
            push_top(&mut top, 2, (*s, i));
        }
        let mut labels: Vec<usize> = top.iter().map(|t| t.1).collect();
        labels.sort();
        assert_eq!(labels, vec![1, 3]);
    }

    /// Every line of the fixture made by `scripts/fetch-models --fixtures`
    /// with the Python `fasttext` package: same top-3 labels, same probabilities.
    #[test]
    fn lid176_predicts_what_python_fasttext_predicts() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let model = FastText::load(&root.join("models/lid.176.ftz")).unwrap();
        assert_eq!(model.labels().len(), 176);
        let fixture = std::fs::read_to_string(root.join("tests/data/lid176_python.tsv")).unwrap();
        let mut n = 0;
        for line in fixture.lines() {
            let (text, expected) = line.rsplit_once('\t').unwrap();
            let want: Vec<&str> = expected.split(' ').collect();
            let got = model.predict(text, 3);
            assert_eq!(got.len(), want.len() / 2, "{text:?}");
            for (i, (label, p)) in got.iter().enumerate() {
                assert_eq!(
                    *label,
                    want[2 * i],
                    "rank {i} of {text:?}: {got:?} vs {expected}"
                );
                let wp: f32 = want[2 * i + 1].parse().unwrap();
                assert!((p - wp).abs() < 1e-5, "{text:?}: {label} {p} vs {wp}");
            }
            n += 1;
        }
        assert!(n > 100);
    }

    #[test]
    fn garbage_is_a_format_error() {
        assert!(FastText::from_bytes(b"not a model").is_err());
        let mut b = 793712314i32.to_le_bytes().to_vec();
        b.extend_from_slice(&11i32.to_le_bytes());
        assert!(FastText::from_bytes(&b).unwrap_err().contains("version"));
    }
}
