#!/usr/bin/env python3
"""datatrove's side of scripts/bench-filters.

Runs GopherRepetitionFilter -> GopherQualityFilter -> C4QualityFilter ->
FineWebQualityFilter (datatrove 0.10.1, English defaults) as a cascade on
every document of the given JSON Lines .zst files, as datatrove's pipeline
does: a document leaves at the first filter that rejects it, and C4's line
removal changes the text FineWeb sees. Writes `file<TAB>line<TAB>reason`
(empty reason: kept) and prints the seconds spent in the filters alone
(reading and decompression are not counted, which favours datatrove).

Usage: bench_filters_datatrove.py OUT.tsv BASE FILE... [--max-docs N]
"""
import json
import os
import subprocess
import sys
import time

from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)

args = sys.argv[1:]
max_docs = None
if "--max-docs" in args:
    i = args.index("--max-docs")
    max_docs = int(args[i + 1])
    del args[i : i + 2]
out_path, base, files = args[0], args[1], args[2:]
filters = [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(), FineWebQualityFilter()]

spent, n, nbytes = 0.0, 0, 0
with open(out_path, "w") as out:
    for path in files:
        rel = os.path.relpath(path, base)
        raw = subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout
        for lineno, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            if max_docs is not None and n >= max_docs:
                break
            text = json.loads(line)["text"]
            doc = Document(text=text, id=f"{rel}:{lineno}")
            n += 1
            nbytes += len(line)
            t0 = time.perf_counter()
            reason = ""
            for f in filters:
                r = f.filter(doc)
                if r is not True:
                    reason = r[1] if isinstance(r, tuple) else f.name
                    break
            spent += time.perf_counter() - t0
            out.write(f"{rel}\t{lineno}\t{reason}\n")
print(json.dumps({"seconds": spent, "documents": n, "bytes": nbytes}))
