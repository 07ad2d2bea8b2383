//! The near_dedup stage end to end: recall and precision of the whole
//! phased pipeline through the runner (it lives here, above the stages and
//! the manifest that it uses).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::dedup::lsh::tests::{real_documents, variants, Rng};
use crate::phased::sorted_jaccard;

/// Recall and precision of the whole phased pipeline (scan, reduce with
/// verification, cluster, filter) on real documents and edited copies:
/// words swapped, deleted, inserted, a header and footer added. Recall:
/// the pairs with Jaccard >= 0.8 of which the output keeps at most one;
/// precision: the dropped documents within 0.8 of the kept one named.
#[test]
fn phased_near_dedup_finds_edited_real_documents() {
    // 20 x 5 finds a pair at exactly J = 0.8 with probability 0.9997,
    // and verification removes what banding lets through.
    let (recall, precision) = measure(20, 5);
    assert!(recall >= 0.999, "recall {recall}");
    assert!(precision >= 0.999, "precision {precision}");
    // FineWeb's 14 x 8 finds such a pair with probability 0.92 alone;
    // clusters recover most of what banding misses.
    let (recall, precision) = measure(14, 8);
    assert!(recall >= 0.99, "recall {recall}");
    assert!(precision >= 0.999, "precision {precision}");
}

fn measure(bands: usize, rows: usize) -> (f64, f64) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut texts = Vec::new();
    for d in real_documents() {
        texts.push(d.clone());
        texts.extend(variants(&d, &mut rng));
    }
    let stage = format!("bands = {bands}\nrows = {rows}\nverify = 0.8\n");
    let rep = run_near_dedup(&texts, &stage);
    let (recall, precision, pairs, dropped) = score(&texts, &rep);
    println!(
        "phased near_dedup {bands}x{rows}, verify 0.8: {} documents, {pairs} pairs with Jaccard >= 0.8, \
         {dropped} dropped; pair recall {recall:.4}, precision {precision:.4}",
        texts.len(),
    );
    assert!(pairs > 1000);
    (recall, precision)
}

/// Real text in the scripts the 35 languages do not cover (see
/// `scripts/fetch-scripts-text`), by script family.
fn script_documents() -> BTreeMap<String, Vec<String>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/scripts/udhr-scripts.jsonl.zst");
    let bytes = zstd::decode_all(std::fs::File::open(path).unwrap()).unwrap();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        out.entry(v["family"].as_str().unwrap().into())
            .or_default()
            .push(v["text"].as_str().unwrap().into());
    }
    out
}

/// Edited copies made on Unicode word segments, which are single
/// characters in scripts written without spaces: 1 % and 2 % of the
/// segments swapped, deleted or duplicated, or a header and footer added.
fn segment_variants(doc: &str, rng: &mut Rng) -> Vec<String> {
    use unicode_segmentation::UnicodeSegmentation;
    let segs: Vec<&str> = doc.split_word_bounds().collect();
    let mut out = Vec::new();
    for per in [100, 50] {
        let edits = (segs.len() / per).max(1);
        let mut swapped = segs.clone();
        for _ in 0..edits {
            let i = rng.next(swapped.len() - 1);
            swapped.swap(i, i + 1);
        }
        let mut deleted = segs.clone();
        for _ in 0..edits {
            let i = rng.next(deleted.len());
            deleted.remove(i);
        }
        let mut inserted = segs.clone();
        for _ in 0..edits {
            let i = rng.next(inserted.len());
            let w = segs[rng.next(segs.len())];
            inserted.insert(i, w);
        }
        out.extend([swapped.concat(), deleted.concat(), inserted.concat()]);
    }
    out.push(format!("首页 | ข่าว | बातचीत | بحث\n{doc}\n© 2024 · Cookie"));
    out
}

/// The default near_dedup on each script family: documents and their
/// edited copies found, nothing dropped that is not within the threshold.
#[test]
fn default_near_dedup_finds_edited_documents_in_every_script_family() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for (family, docs) in script_documents() {
        let mut texts = Vec::new();
        for d in &docs {
            texts.push(d.clone());
            texts.extend(segment_variants(d, &mut rng));
        }
        let rep = run_near_dedup(&texts, "");
        let (recall, precision, pairs, dropped) = score(&texts, &rep);
        println!(
            "{family}: {} documents, {pairs} pairs with Jaccard >= 0.8, {dropped} dropped; \
             recall {recall:.4}, precision {precision:.4}",
            texts.len()
        );
        assert!(pairs >= docs.len(), "{family}: {pairs} pairs");
        assert!(recall >= 0.999, "{family}: recall {recall}");
        assert!(precision >= 0.999, "{family}: precision {precision}");
    }
}

/// Runs one near_dedup stage (its table's extra lines in `stage`) over
/// `texts`; returns, per document, the index of the one it was dropped
/// for, or its own.
fn run_near_dedup(texts: &[String], stage: &str) -> Vec<usize> {
    let dir = tempfile::tempdir().unwrap();
    let mut jsonl = Vec::new();
    for t in texts {
        serde_json::to_writer(&mut jsonl, &serde_json::json!({ "text": t })).unwrap();
        jsonl.push(b'\n');
    }
    std::fs::write(dir.path().join("docs.jsonl"), jsonl).unwrap();
    let manifest = format!(
        r#"
version = 1
name = "near"
[[source]]
name = "s"
paths = ["docs.jsonl"]
format = "jsonl"
licence = "UDHR, GPL and others (see data/demo/NOTICE)"
[[stage]]
type = "near_dedup"
partitions = 4
{stage}
[output]
dir = "out"
formats = ["parquet"]
"#
    );
    std::fs::write(dir.path().join("m.toml"), manifest).unwrap();
    let m = crate::manifest::load(&dir.path().join("m.toml")).unwrap();
    let opts = crate::RunOptions {
        progress: false,
        threads: 2,
        ..Default::default()
    };
    crate::run(&m, &opts).unwrap();

    // Cluster of each document: the id it was dropped for, or its own.
    let ids: Vec<String> = (0..texts.len())
        .map(|i| crate::batch::doc_id("s", "docs.jsonl", i as u64 + 1))
        .collect();
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut rep: Vec<usize> = (0..texts.len()).collect();
    let ledger =
        crate::ledger::read_parquet(&dir.path().join("out/ledger/rank-00000-of-00001.parquet"))
            .unwrap();
    for b in ledger {
        use arrow_array::cast::AsArray;
        let col = |n: &str| {
            b.column(b.schema().index_of(n).unwrap())
                .as_string::<i32>()
                .clone()
        };
        let (id, reason, detail) = (col("id"), col("reason"), col("detail"));
        for r in 0..b.num_rows() {
            assert_eq!(reason.value(r), "near_duplicate");
            rep[index[id.value(r)]] = index[detail.value(r)];
        }
    }
    rep
}

/// Recall (the pairs with Jaccard >= 0.8 of which at most one is kept),
/// precision (dropped documents within 0.8 of the kept one named), pairs
/// and drops.
fn score(texts: &[String], rep: &[usize]) -> (f64, f64, usize, usize) {
    // Ground truth: exact Jaccard of every pair sharing a shingle.
    let sets: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            let mut s: Vec<u32> = crate::dedup::shingles(t, 5)
                .iter()
                .map(|&x| (x >> 32) as u32)
                .collect();
            s.sort_unstable();
            s.dedup();
            s
        })
        .collect();
    let mut by_shingle: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, s) in sets.iter().enumerate() {
        for &x in s {
            by_shingle.entry(x).or_default().push(i);
        }
    }
    let mut truth = Vec::new();
    for (i, s) in sets.iter().enumerate() {
        let cands: HashSet<usize> = s
            .iter()
            .flat_map(|x| by_shingle[x].iter().copied())
            .filter(|&j| j > i)
            .collect();
        for j in cands {
            if sorted_jaccard(s, &sets[j]) >= 0.8 {
                truth.push((i, j));
            }
        }
    }
    // A pair is found when the output does not keep both.
    let found = truth
        .iter()
        .filter(|(a, b)| rep[*a] != *a || rep[*b] != *b)
        .count();
    let recall = found as f64 / truth.len() as f64;
    // A dropped document is right if the kept document it is attributed to
    // is a true near duplicate of it, and that one is kept.
    let right = (0..texts.len())
        .filter(|&i| rep[i] != i)
        .filter(|&i| rep[rep[i]] == rep[i] && sorted_jaccard(&sets[i], &sets[rep[i]]) >= 0.8)
        .count();
    let dropped = (0..texts.len()).filter(|&i| rep[i] != i).count();
    let precision = right as f64 / dropped.max(1) as f64;
    (recall, precision, truth.len(), dropped)
}
