"""datasketch's MinHashLSH over the bench-dedup corpus, for scripts/bench-dedup.

112 permutations as 14 bands x 8 rows, lower-cased word 5-gram shingles;
documents in forja's input order (files sorted, then lines); a document is
dropped when the index already holds a candidate, else inserted.
"""
import glob
import json
import re
import sys

from datasketch import MinHash, MinHashLSH

bench = sys.argv[1]
lsh = MinHashLSH(num_perm=112, params=(14, 8))
word = re.compile(r"\w+")
dropped = []
for f in sorted(glob.glob(f"{bench}/corpus/*.jsonl")):
    for line in open(f, encoding="utf-8"):
        doc = json.loads(line)
        words = word.findall(doc["text"].lower())
        shingles = {" ".join(words[i : i + 5]).encode() for i in range(max(1, len(words) - 4))}
        m = MinHash(num_perm=112, seed=1)
        m.update_batch(list(shingles))
        if lsh.query(m):
            dropped.append(doc["id"])
        else:
            lsh.insert(doc["id"], m)
with open(f"{bench}/datasketch-dropped.txt", "w") as out:
    out.write("\n".join(dropped) + "\n")
