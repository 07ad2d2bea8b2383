"""One step of datatrove's four-stage MinHash dedup, for scripts/bench-dedup.

Default MinhashConfig (word 5-grams, 14 buckets x 8 hashes, seed 1), one
worker; the buckets step runs its 14 tasks one after another, as the
datatrove example does with one worker.
"""
import sys

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

bench, step = sys.argv[1], sys.argv[2]
cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, seed=1)
d = f"{bench}/datatrove"


def reader():
    return JsonlReader(f"{bench}/corpus", glob_pattern="*.jsonl", text_key="text", id_key="id")


tasks = 1
if step == "signature":
    pipeline = [reader(), MinhashDedupSignature(output_folder=f"{d}/signatures", config=cfg)]
elif step == "buckets":
    pipeline = [MinhashDedupBuckets(input_folder=f"{d}/signatures", output_folder=f"{d}/buckets", config=cfg)]
    tasks = cfg.num_buckets
elif step == "cluster":
    pipeline = [MinhashDedupCluster(input_folder=f"{d}/buckets", output_folder=f"{d}/remove_ids", config=cfg)]
elif step == "filter":
    pipeline = [
        reader(),
        MinhashDedupFilter(input_folder=f"{d}/remove_ids", exclusion_writer=JsonlWriter(f"{d}/removed")),
        JsonlWriter(f"{d}/output"),
    ]
else:
    sys.exit(f"unknown step {step}")
LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=f"{d}/logs/{step}").run()
