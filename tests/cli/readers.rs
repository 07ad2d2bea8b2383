//! Each reader format yields the same documents from the same records.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use crate::harness::*;

fn source(name: &str, paths: &str, format: &str, extra: &str) -> String {
    format!(
        "[[source]]\nname = \"{name}\"\npaths = [\"{paths}\"]\nformat = \"{format}\"\nlicence = \"test\"\n{extra}\n"
    )
}

fn write_parquet(env: &Env, rel: &str, records: &[serde_json::Value]) {
    let text: Vec<String> = records
        .iter()
        .map(|r| r["text"].as_str().unwrap().to_string())
        .collect();
    let lang: Vec<String> = records
        .iter()
        .map(|r| r["lang"].as_str().unwrap().to_string())
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("content", DataType::Utf8, false),
        Field::new("lang", DataType::Utf8, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(text)),
        Arc::new(StringArray::from(lang)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let path = env.path(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn every_format_reads_the_same_documents() {
    let env = Env::new();
    let records: Vec<_> = udhr().into_iter().take(300).collect();
    let body = jsonl(&records);
    env.write("in/plain/a.jsonl", &body);
    env.write("in/gz/a.jsonl.gz", &gzip(&body));
    env.write("in/zst/a.jsonl.zst", &zst(&body));
    write_parquet(&env, "in/pq/data/train-00000-of-00001.parquet", &records);
    for (i, r) in records.iter().enumerate() {
        env.write(
            &format!("in/txt/{i:04}.txt"),
            r["text"].as_str().unwrap().as_bytes(),
        );
    }
    let mut expected: Vec<String> = records
        .iter()
        .map(|r| r["text"].as_str().unwrap().to_string())
        .collect();
    expected.sort();
    for (name, src) in [
        ("plain", source("s", "in/plain/*.jsonl", "jsonl", "")),
        ("gz", source("s", "in/gz/*.jsonl.gz", "jsonl", "")),
        ("zst", source("s", "in/zst/*.jsonl.zst", "jsonl", "")),
        (
            "pq",
            source(
                "s",
                "in/pq/data/*.parquet",
                "parquet",
                "text_field = \"content\"",
            ),
        ),
        ("txt", source("s", "in/txt/*.txt", "text", "")),
    ] {
        let m = env.manifest(name, &src);
        env.ok(&["run", "--quiet", m.to_str().unwrap()]);
        let out = env.path(&format!("out-{name}"));
        let s = assert_accounted(&out);
        assert_eq!(s["documents_read"], 300, "{name}");
        assert_eq!(s["kept"], 300, "{name}");
        let mut got = kept_texts(&out);
        got.sort();
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn metadata_and_url_are_carried_through() {
    let env = Env::new();
    env.write(
        "in/a.jsonl",
        b"{\"text\":\"Tots els \xc3\xa9ssers humans neixen lliures\",\"url\":\"https://x.cat/1\",\"lang\":\"ca\",\"score\":0.5}\n",
    );
    let stages = "[[stage]]\ntype = \"normalize\"\n[[stage]]\ntype = \"exact_dedup\"\n[[stage]]\ntype = \"length\"\n";
    let m = env.manifest(
        "meta",
        &(source("web", "in/a.jsonl", "jsonl", "url_field = \"url\"") + stages),
    );
    env.ok(&["run", "--quiet", m.to_str().unwrap()]);
    let raw = zstd::decode_all(
        std::fs::File::open(env.path("out-meta/jsonl/web/000000-0000.jsonl.zst")).unwrap(),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(raw.trim_ascii_end()).unwrap();
    assert_eq!(v["url"], "https://x.cat/1");
    assert_eq!(v["metadata"]["lang"], "ca");
    assert_eq!(v["metadata"]["score"], 0.5);
    assert_eq!(v["file"], "in/a.jsonl");
    assert_eq!(v["line"], 1);
    assert_eq!(v["id"], forja::doc_id("web", "in/a.jsonl", 1));
    assert_eq!(v["text_hash"].as_str().unwrap().len(), 32);
    assert_eq!(v["normalize_changed"], false);
    assert_eq!(v["n_words"], 6);
}

#[test]
fn the_bundled_demo_runs_and_accounts_for_every_document() {
    let env = Env::new();
    let manifest = format!("{REPO}/manifests/demo.toml");
    let out = env.path("demo-out");
    let stdout = env.ok(&["run", &manifest, "--out", out.to_str().unwrap()]);
    assert!(stdout.contains("exact_dedup"), "{stdout}");
    let s = assert_accounted(&out);
    // 35 languages x (preamble + 30 articles), GNOME pages, install guide, licences.
    assert_eq!(s["sources"]["udhr"]["read"], 35 * 31);
    assert!(
        s["dropped"].as_u64().unwrap() > 0,
        "the demo has real duplicates"
    );
    for dir in ["parquet/udhr", "jsonl/gnome_help", "ledger"] {
        assert!(out.join(dir).is_dir(), "{dir}");
    }
    let funnel = env.ok(&["stats", out.to_str().unwrap()]);
    assert!(funnel.contains("read 1754 documents"), "{funnel}");
    // Parquet shards carry every annotation column.
    let file = std::fs::File::open(out.join("parquet/udhr/000000-0000.parquet")).unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let names: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    for col in [
        "id",
        "text",
        "normalize_changed",
        "text_hash",
        "dup_of",
        "n_words",
    ] {
        assert!(names.contains(&col.to_string()), "{col} in {names:?}");
    }
}
