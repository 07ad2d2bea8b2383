"""Tabulates scripts/bench-dedup: times, throughput, memory, disk, agreement."""
import glob
import gzip
import json
import sys

import pyarrow.parquet as pq

bench, docs, nbytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def forja_dropped(tool):
    ids = set()
    for f in glob.glob(f"{bench}/out-{tool}/ledger/*.parquet"):
        t = pq.read_table(f, columns=["file", "line", "reason"]).to_pylist()
        for r in t:
            if r["reason"] == "near_duplicate":
                part = int(r["file"].rsplit("part-", 1)[1][:2])
                ids.add(f"d{(r['line'] - 1) * 16 + part}")
    return ids


def datatrove_dropped():
    ids = set()
    for f in glob.glob(f"{bench}/datatrove/removed/*"):
        with gzip.open(f, "rt") as fh:
            for line in fh:
                ids.add(json.loads(line)["id"])
    return ids


drops = {
    "forja": forja_dropped("forja"),
    "forja-verify": forja_dropped("forja-verify"),
    "forja-default": forja_dropped("forja-default"),
    "forja-seed2": forja_dropped("forja-seed2"),
    "forja-datatrove": forja_dropped("forja-datatrove"),
    "datatrove": datatrove_dropped(),
    "datasketch": set(open(f"{bench}/datasketch-dropped.txt").read().split()),
}
planted = {}
source = {}
for line in open(f"{bench}/planted.tsv"):
    i, kind, j = line.rstrip("\n").split("\t")
    planted[i] = kind
    source[i] = j

rows = [l.rstrip("\n").split("\t") for l in open(f"{bench}/times.tsv")]
print(f"Corpus: {docs:,} documents, {nbytes / 1e6:.0f} MB of JSON Lines; "
      f"planted: {sum(1 for k in planted.values() if k == 'exact'):,} exact and "
      f"{sum(1 for k in planted.values() if k == 'near'):,} near copies.\n")
print("| tool | step | wall s | CPU s | docs/s per CPU s | peak RSS MB |")
print("|---|---|---:|---:|---:|---:|")
totals = {}
for tool, step, wall, cpu, rss in rows:
    wall, cpu, rss = float(wall), float(cpu), int(rss) / 1024
    t = totals.setdefault(tool, [0.0, 0.0, 0.0])
    t[0] += wall
    t[1] += cpu
    t[2] = max(t[2], rss)
    print(f"| {tool} | {step} | {wall:.1f} | {cpu:.1f} | {docs / max(cpu, 1e-9):,.0f} | {rss:.0f} |")
for tool, (wall, cpu, rss) in totals.items():
    print(f"| **{tool}** | **end to end** | **{wall:.1f}** | **{cpu:.1f}** | **{docs / max(cpu, 1e-9):,.0f}** | **{rss:.0f}** |")
print()
# A planted pair is caught when one of its two documents is dropped (which
# one depends on input order: copies are spread over the 16 files).
print("| tool | intermediate disk MB | dropped | planted pairs caught | dropped, in no planted pair |")
print("|---|---:|---:|---:|---:|")
for tool, ids in drops.items():
    try:
        disk = int(open(f"{bench}/{tool}-disk.txt").read()) / 1e6
        disk = f"{disk:.0f}"
    except OSError:
        disk = "(memory)"
    rec = sum(1 for i in planted if i in ids or source[i] in ids) / max(len(planted), 1)
    in_pair = set(planted) | set(source.values())
    extra = sum(1 for i in ids if i not in in_pair)
    print(f"| {tool} | {disk} | {len(ids):,} | {rec:.4f} | {extra:,} |")
print()
print("Agreement of drop sets (|A and B| / |A or B|):\n")
names = list(drops)
print("| | " + " | ".join(names) + " |")
print("|---|" + "---:|" * len(names))
for a in names:
    cells = []
    for b in names:
        u = len(drops[a] | drops[b])
        cells.append(f"{len(drops[a] & drops[b]) / max(u, 1):.4f}")
    print(f"| {a} | " + " | ".join(cells) + " |")
