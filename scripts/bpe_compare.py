#!/usr/bin/env python3
"""Trains BPE tokenizers with forja, Hugging Face tokenizers (BpeTrainer)
and sentencepiece on the same corpus, times them, and compares the results.

  bench:      wall time and peak RSS of each trainer (via /usr/bin/time -v)
  crosscheck: vocabulary overlap and per-language fertility of the three

Trained models are kept under <runs>/<tool>-<vocab>/ and reused by the
other mode. Used by scripts/bench-bpe and scripts/crosscheck-bpe.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FORJA = os.path.join(HERE, "..", "target", "release", "forja")


def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time -v; returns (seconds, peak MiB)."""
    e = dict(os.environ, **(env or {}))
    t = time.time()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, env=e, capture_output=True, text=True)
    secs = time.time() - t
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    return secs, rss / 1024


HF_TRAIN = r'''
import sys, glob, os
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, decoders, trainers
corpus, vocab, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
files = sorted(glob.glob(os.path.join(corpus, "*.txt")))
tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
tok.normalizer = normalizers.NFC()
tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                             pre_tokenizers.Metaspace()])
tok.decoder = decoders.Metaspace()
specials = ["<unk>", "<s>", "</s>", "<pad>"]
trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False,
                              initial_alphabet=[])
tok.train(files, trainer)
os.makedirs(out, exist_ok=True)
tok.save(os.path.join(out, "tokenizer.json"))
'''

SPM_TRAIN = r'''
import sys, glob, os
import sentencepiece as spm
corpus, vocab, threads, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
files = sorted(glob.glob(os.path.join(corpus, "*.txt")))
os.makedirs(out, exist_ok=True)
spm.SentencePieceTrainer.train(
    input=",".join(files), model_prefix=os.path.join(out, "spm"), vocab_size=vocab,
    model_type="bpe", byte_fallback=True, split_digits=True, character_coverage=0.9999,
    normalization_rule_name="identity", remove_extra_whitespaces=False,
    allow_whitespace_only_pieces=True, input_sentence_size=0, max_sentence_length=1 << 20,
    num_threads=threads, minloglevel=2, pad_id=3, unk_id=0, bos_id=1, eos_id=2)
'''


def train(tool, corpus, vocab, threads, runs):
    out = os.path.join(runs, f"{tool}-{vocab}-{os.path.basename(corpus.rstrip('/'))}")
    if tool == "forja":
        # alpha = 1: the natural language mix, as the other two train on.
        cmd = [FORJA, "train-tokenizer", corpus, "--out", out, "--vocab-size", str(vocab),
               "--threads", str(threads), "--quiet", "--alpha", "1"]
        return out, timed(cmd)
    if tool == "hf":
        return out, timed([sys.executable, "-c", HF_TRAIN, corpus, str(vocab), out],
                          {"RAYON_NUM_THREADS": str(threads)})
    if tool == "spm":
        return out, timed([sys.executable, "-c", SPM_TRAIN, corpus, str(vocab), str(threads), out])
    raise ValueError(tool)


def bench(a):
    rows = []
    for vocab in a.vocab:
        for tool in a.tools:
            out, (s, rss) = train(tool, a.corpus, vocab, a.threads, a.runs)
            rows.append((tool, vocab, os.path.basename(a.corpus.rstrip("/")), s, rss))
            print(f"{tool:6} vocab {vocab:6} {rows[-1][2]:>14}: {s:7.1f} s  {rss:7.0f} MiB", flush=True)
    for vocab in a.vocab:
        best = {}
        for tool, v, _, secs, _ in rows:
            if v == vocab:
                best[tool] = min(best.get(tool, secs), secs)
        if "forja" in best:
            for tool in ("hf", "spm"):
                if tool in best:
                    print(f"vocab {vocab}: forja is {best[tool] / best['forja']:.1f}x {tool} "
                          f"(best of each: {best['forja']:.2f} s against {best[tool]:.2f} s)",
                          flush=True)
    for c in a.scale:
        out, (s, rss) = train("forja", c, a.vocab[0], a.threads, a.runs)
        rows.append(("forja", a.vocab[0], os.path.basename(c.rstrip("/")), s, rss))
        print(f"forja  vocab {a.vocab[0]:6} {rows[-1][2]:>14}: {s:7.1f} s  {rss:7.0f} MiB", flush=True)
    if a.json:
        json.dump([dict(zip(["tool", "vocab", "corpus", "seconds", "peak_mib"], r)) for r in rows],
                  open(a.json, "w"), indent=1)


WORD = re.compile(r"\w+")


def load_vocab(tool, out):
    if tool == "spm":
        return {l.split("\t")[0] for l in open(os.path.join(out, "spm.vocab"), encoding="utf-8")}
    v = json.load(open(os.path.join(out, "tokenizer.json")))["model"]["vocab"]
    return set(v)


def encoder(tool, out):
    if tool == "spm":
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=os.path.join(out, "spm.model"))
        return lambda texts: [len(x) for x in sp.encode(texts)]
    from tokenizers import Tokenizer
    t = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    return lambda texts: [len(e.ids) for e in t.encode_batch(texts, add_special_tokens=False)]


def crosscheck(a):
    sample = {}
    for f in sorted(glob.glob(os.path.join(a.corpus, "*.txt"))):
        lines = open(f, encoding="utf-8").read().splitlines()
        sample[os.path.basename(f)[:-4]] = lines[:: max(1, len(lines) // 2000)][:2000]
    words = {l: sum(len(WORD.findall(x)) for x in t) for l, t in sample.items()}
    worst = 0.0
    for vocab in a.vocab:
        outs = {}
        for tool in ["forja", "hf", "spm"]:
            out = os.path.join(a.runs, f"{tool}-{vocab}-{os.path.basename(a.corpus.rstrip('/'))}")
            if not os.path.exists(out):
                out, _ = train(tool, a.corpus, vocab, a.threads, a.runs)
            outs[tool] = out
        # Vocabulary overlap: pieces other than specials and bytes.
        strip = lambda v: {p for p in v if not re.fullmatch(r"<0x[0-9A-F]{2}>|<.*>", p)}
        vs = {t: strip(load_vocab(t, o)) for t, o in outs.items()}
        print(f"\n== vocab {vocab}: overlap of learned pieces ==")
        for x, y in [("forja", "spm"), ("forja", "hf"), ("hf", "spm")]:
            inter = len(vs[x] & vs[y])
            print(f"  {x:5} ∩ {y:5}: {inter:6} of {len(vs[x])}/{len(vs[y])} "
                  f"({100 * inter / min(len(vs[x]), len(vs[y])):.1f} %)")
        enc = {t: encoder(t, o) for t, o in outs.items()}
        print(f"\n== vocab {vocab}: tokens per word ==")
        print(f"  {'lang':5} {'forja':>8} {'hf':>8} {'spm':>8} {'forja/spm':>10}")
        for l, texts in sample.items():
            f = {t: sum(e(texts)) / max(1, words[l]) for t, e in enc.items()}
            rel = f["forja"] / f["spm"] - 1
            worst = max(worst, abs(rel))
            print(f"  {l:5} {f['forja']:8.3f} {f['hf']:8.3f} {f['spm']:8.3f} {100 * rel:+9.2f}%")
    print(f"\nlargest fertility difference forja vs sentencepiece: {100 * worst:.2f} %")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["bench", "crosscheck"])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--vocab", type=lambda s: [int(x) for x in s.split(",")], default=[32000, 64000])
    ap.add_argument("--tools", type=lambda s: s.split(","), default=["forja", "hf", "spm"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scale", nargs="*", default=[])
    ap.add_argument("--runs", default="bench/bpe/runs")
    ap.add_argument("--json")
    a = ap.parse_args()
    os.makedirs(a.runs, exist_ok=True)
    bench(a) if a.mode == "bench" else crosscheck(a)


if __name__ == "__main__":
    main()
