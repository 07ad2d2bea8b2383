"""lid.176 through Python fastText, with the `lid` stage's document rule.

    python3 scripts/eval_lid_python.py MODEL DATA.tsv > report.json

The anchor row of scripts/eval-lid: each text's non-blank lines are
identified by `fasttext` (the `fasttext-wheel` package) with lid.176; lines
at 0.8 confidence or more count their bytes for their label, the label with
the most bytes wins, and a text with none is unidentified. Writes the same
JSON as `forja eval-lid --json`; `seconds` is CPU time.
"""
import collections
import json
import sys
import time

import fasttext

model_path, data = sys.argv[1], sys.argv[2]
model = fasttext.load_model(model_path)
samples = []
for line in open(data, encoding="utf-8"):
    lang, _, text = line.rstrip("\n").partition("\t")
    if lang and text:
        samples.append((lang, text.replace("\\n", "\n")))

langs = collections.defaultdict(
    lambda: {"total": 0, "correct": 0, "unidentified": 0, "confused_with": collections.Counter()})
start = time.process_time()
nbytes = 0
for lang, text in samples:
    nbytes += len(text.encode("utf-8"))
    by = collections.Counter()
    for l in text.split("\n"):
        if not l.strip():
            continue
        # The low-level call: fasttext-wheel's predict() trips over NumPy 2.
        pred = model.f.predict(l, 1, 0.0, "strict")
        if pred and pred[0][0] >= 0.8:
            by[pred[0][1].replace("__label__", "")] += len(l.encode("utf-8"))
    r = langs[lang]
    r["total"] += 1
    if not by:
        r["unidentified"] += 1
        continue
    best = sorted(by.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    if best == lang:
        r["correct"] += 1
    else:
        r["confused_with"][best] += 1
seconds = time.process_time() - start
out = {"languages": {k: dict(v, confused_with=dict(v["confused_with"])) for k, v in sorted(langs.items())},
       "documents": len(samples), "bytes": nbytes, "seconds": seconds}
json.dump(out, sys.stdout)
