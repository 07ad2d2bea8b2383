//! The engine's scan writer and apply reader, end to end without a stage:
//! what a scan returns is written per unit, reduced, clustered, and handed
//! back batch by batch, with the documents of each unit counted.

use std::any::Any;

use super::*;

fn dir() -> (tempfile::TempDir, GlobalDir) {
    let t = tempfile::tempdir().unwrap();
    let d = GlobalDir::new(t.path().join("g"), "run-1".into(), t.path().into());
    (t, d)
}

const EXACT: ScanLayout = ScanLayout::Keys {
    wide: true,
    table: true,
    shingles: false,
    frequent: false,
};

/// One key per row, a table entry of score 0.
fn keys(rows: &[u128]) -> Scanned {
    let mut k = DocKeys::<u128>::with_rows(rows.len());
    for &r in rows {
        k.keys.push(r);
        k.end_row();
    }
    k.scores = vec![0; rows.len()];
    Scanned::Keys128(k)
}

#[test]
fn decisions_come_back_to_the_rows_of_each_batch() {
    let (_t, d) = dir();
    let parts = 4;
    let mut w = ScanWriter::new(&d, EXACT, parts, 1 << 20);
    // Unit 0 in two batches, unit 1 empty, unit 2 with a copy of unit 0's text.
    let ids = ["a", "b", "c", "d", "e", "f"];
    w.add(0, &|r| ids[r], keys(&[1, 2, 1]), None).unwrap();
    w.add(0, &|r| ids[3 + r], keys(&[3, 2]), None).unwrap();
    w.end(0, None).unwrap();
    w.end(1, None).unwrap();
    w.add(2, &|_| "z", keys(&[3]), None).unwrap();
    w.end(2, None).unwrap();

    let plan = Plan::load(&d, &[0, 1, 2], parts, 1 << 20).unwrap();
    assert_eq!(plan.units, vec![(0, 5), (1, 0), (2, 1)]);
    for p in 0..parts {
        reduce_edges::<u128>(&plan, p, None).unwrap();
    }
    cluster(&plan, Keep::First, None).unwrap();

    let mut r = ApplyReader::new(&d, EXACT, parts);
    // Rows are the batch's own: the second batch's row 1 is unit 0's 5th document.
    assert_eq!(
        r.take(0, 3).unwrap(),
        BatchInput::Decided(vec![(2, "a".into())])
    );
    assert_eq!(
        r.take(0, 2).unwrap(),
        BatchInput::Decided(vec![(1, "b".into())])
    );
    r.end(0).unwrap();
    r.end(1).unwrap();
    assert_eq!(
        r.take(2, 1).unwrap(),
        BatchInput::Decided(vec![(0, "d".into())])
    );
    r.end(2).unwrap();
}

#[test]
fn a_pass_that_sees_other_documents_than_the_scan_is_refused() {
    let (_t, d) = dir();
    let layout = ScanLayout::Keys {
        wide: false,
        table: false,
        shingles: false,
        frequent: true,
    };
    let mut w = ScanWriter::new(&d, layout, 2, 1 << 20);
    let mut k = DocKeys::<u64>::with_rows(3);
    for key in [7u64, 8, 9] {
        k.keys.push(key);
        k.end_row();
    }
    w.add(0, &|_| "", Scanned::Keys64(k), None).unwrap();
    w.end(0, None).unwrap();

    // Fewer documents than the scan saw: refused at the unit's end.
    let mut r = ApplyReader::new(&d, layout, 2);
    assert_eq!(r.take(0, 2).unwrap(), BatchInput::None);
    let e = r.end(0).unwrap_err().to_string();
    assert!(
        e.contains("the scan saw 3 documents in unit 0 and this pass 2"),
        "{e}"
    );
    assert!(e.contains("start the run over"), "{e}");
    // More: refused as soon as they come.
    let mut r = ApplyReader::new(&d, layout, 2);
    r.take(0, 2).unwrap();
    assert!(r.take(0, 2).is_err());
    // A unit the scan never wrote: an error, not an empty unit.
    assert!(ApplyReader::new(&d, layout, 2).take(5, 1).is_err());
    // The scan's rows and keys must line up.
    let mut bad = DocKeys::<u64>::with_rows(2);
    bad.end_row();
    let mut w = ScanWriter::new(&d, layout, 2, 1 << 20);
    assert!(w.add(1, &|_| "", Scanned::Keys64(bad), None).is_err());
}

/// A combiner that concatenates each batch's bytes into section 0.
struct Concat;

impl Records for Concat {
    fn combine(
        &self,
        acc: Option<Box<dyn Any + Send>>,
        next: Box<dyn Any + Send>,
    ) -> Box<dyn Any + Send> {
        let mut a = acc.map_or_else(Vec::new, |a| *a.downcast::<Vec<u8>>().unwrap());
        a.extend(*next.downcast::<Vec<u8>>().unwrap());
        Box::new(a)
    }

    fn seal(&self, acc: Option<Box<dyn Any + Send>>) -> Result<Vec<Vec<u8>>, PhasedError> {
        let a = acc.map_or_else(Vec::new, |a| *a.downcast::<Vec<u8>>().unwrap());
        Ok(vec![a, Vec::new()])
    }
}

#[test]
fn own_records_are_sealed_per_unit_and_come_back_one_per_document() {
    let (_t, d) = dir();
    let layout = ScanLayout::Records {
        tag: TAG_SCORES,
        per_doc: true,
        summary: false,
    };
    let batch = |recs: &[&str], part: &str| Scanned::Records {
        rows: recs.len(),
        docs: recs.iter().map(|r| r.as_bytes().to_vec()).collect(),
        part: Box::new(part.as_bytes().to_vec()),
    };
    let mut w = ScanWriter::new(&d, layout, 2, 1 << 20);
    w.add(
        0,
        &|_| "",
        batch(&["x", "", "long record"], "ab"),
        Some(&Concat),
    )
    .unwrap();
    w.add(0, &|_| "", batch(&["y"], "cd"), Some(&Concat))
        .unwrap();
    w.end(0, Some(&Concat)).unwrap();
    // A combiner is needed, and a record for every row.
    assert!(ScanWriter::new(&d, layout, 2, 1 << 20)
        .add(1, &|_| "", batch(&["x"], ""), None)
        .is_err());
    let short = Scanned::Records {
        rows: 2,
        docs: vec![b"x".to_vec()],
        part: Box::new(Vec::<u8>::new()),
    };
    assert!(ScanWriter::new(&d, layout, 2, 1 << 20)
        .add(1, &|_| "", short, Some(&Concat))
        .is_err());

    assert_eq!(d.read_unit_section(0, TAG_SCORES, 0).unwrap(), b"abcd");
    assert_eq!(Plan::load(&d, &[0], 2, 1 << 20).unwrap().total, 4);
    let mut r = ApplyReader::new(&d, layout, 2);
    let rec = |v: &[&str]| BatchInput::Records(v.iter().map(|s| s.as_bytes().to_vec()).collect());
    assert_eq!(r.take(0, 1).unwrap(), rec(&["x"]));
    assert_eq!(r.take(0, 3).unwrap(), rec(&["", "long record", "y"]));
    r.end(0).unwrap();
}

#[test]
fn the_run_input_is_what_the_layout_asks_for() {
    let (_t, d) = dir();
    std::fs::create_dir_all(&d.root).unwrap();
    d.write_summary(b"{}\n").unwrap();
    let records = ScanLayout::Records {
        tag: TAG_SCORES,
        per_doc: true,
        summary: true,
    };
    let run = RunInput::load(&d, records).unwrap();
    assert_eq!(run.summary.as_deref(), Some(&b"{}\n"[..]));
    assert!(run.frequent.is_none());
    let run = RunInput::load(&d, EXACT).unwrap();
    assert!(run.summary.is_none() && run.frequent.is_none());
    // Repeated lines need the frequent keys; none were gathered.
    let frequent = ScanLayout::Keys {
        wide: false,
        table: false,
        shingles: false,
        frequent: true,
    };
    assert!(RunInput::load(&d, frequent).is_err());
}

#[test]
fn a_verified_cluster_drops_only_what_is_near_its_kept_document() {
    let (_t, d) = dir();
    let layout = ScanLayout::Keys {
        wide: false,
        table: true,
        shingles: true,
        frequent: false,
    };
    // A ~ B (0.87) and B ~ C (0.87), but A and C only 0.75 apart: a chain.
    // D shares the key but nothing else.
    let sets: [Vec<u32>; 4] = [
        (1..=100).collect(),
        (8..=107).collect(),
        (15..=114).collect(),
        (1000..=1100).collect(),
    ];
    let mut k = DocKeys::<u64>::with_rows(4);
    for s in &sets {
        k.keys.push(42);
        k.end_row();
        k.shingles.push(s.clone());
    }
    k.scores = vec![0; 4];
    let ids = ["A", "B", "C", "D"];
    let mut w = ScanWriter::new(&d, layout, 2, 1 << 20);
    w.add(0, &|r| ids[r], Scanned::Keys64(k), None).unwrap();
    w.end(0, None).unwrap();
    let plan = Plan::load(&d, &[0], 2, 1 << 20).unwrap();
    for p in 0..2 {
        reduce_edges::<u64>(&plan, p, Some(0.8)).unwrap();
    }
    let counts = cluster(&plan, Keep::First, Some(0.8)).unwrap();
    let mut r = ApplyReader::new(&d, layout, 2);
    // B goes for A; C is not within 0.8 of A, so it stays.
    assert_eq!(
        r.take(0, 4).unwrap(),
        BatchInput::Decided(vec![(1, "A".into())])
    );
    assert_eq!(counts["dropped"], 1);
    assert_eq!(counts["kept_not_within_verify"], 1);

    // Without the check against the kept document, the chain drops C for A.
    cluster(&plan, Keep::First, None).unwrap();
    let mut r = ApplyReader::new(&d, layout, 2);
    assert_eq!(
        r.take(0, 4).unwrap(),
        BatchInput::Decided(vec![(1, "A".into()), (2, "A".into())])
    );
}

#[test]
fn the_early_exit_jaccard_gives_the_exact_answer() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for _ in 0..3000 {
        let base: Vec<u32> = (0..next(200) as u32).map(|x| x * 3).collect();
        let mut a: Vec<u32> = base.iter().copied().filter(|_| next(10) > 0).collect();
        let mut b: Vec<u32> = base.iter().copied().filter(|_| next(10) > 1).collect();
        a.extend((0..next(20)).map(|_| next(1000) as u32 * 3 + 1));
        b.extend((0..next(20)).map(|_| next(1000) as u32 * 3 + 2));
        for v in [&mut a, &mut b] {
            v.sort_unstable();
            v.dedup();
        }
        for t in [0.0, 0.5, 0.7, 0.8, 0.9, 1.0] {
            assert_eq!(
                jaccard_at_least(&a, &b, t),
                sorted_jaccard(&a, &b) >= t,
                "{a:?} {b:?} {t}"
            );
        }
    }
    assert!(jaccard_at_least(&[], &[], 0.8));
    assert!(!jaccard_at_least(&[1], &[], 0.8));
}
