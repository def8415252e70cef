"""Offline backend benchmark: speed, and variety next to the original GPT-4 rows.

    .venv/bin/python benchmarks/offline_backend.py [--rows 5000] [--sample 1000] [--seed 0]

Prints
* time and rows/s to compose `--rows` candidates spread over all 45 cells (target: 5,000 < 10 s);
* distinct-2 / distinct-3 of `--sample` offline instructions next to the original 1,000 rows'
  (read from ../shared/reference/decompose_net/data), as ratios (target: distinct-3 >= 0.70);
* the share of those instructions with a near-duplicate (ROUGE-L F >= 0.7, rouge_score's own
  tokenizer and LCS, all pairs) among the other rows of the sample, and the same figure for
  the original rows.

Sampling mirrors a build: `plan_quotas` splits the sample across the cells (single-step cells
included, rows in every request style), each cell is generated
in requests of 10 rows with their own seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from rouge_score import rouge_scorer, tokenize

from taskdecomp.dataset_builder.offline import generate_rows
from taskdecomp.dataset_builder.sampler import plan_quotas

REFERENCE_DATA = (
    Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "decompose_net" / "data"
)
ROWS_PER_CALL = 10


def distinct_n(texts: list[str], n: int) -> float:
    """Unique n-grams / total n-grams over whitespace tokens of the lower-cased texts."""
    total, seen = 0, set()
    for text in texts:
        toks = text.lower().split()
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / max(total, 1)


def near_duplicate_share(texts: list[str], threshold: float = 0.7) -> float:
    """Share of texts whose ROUGE-L F (rouge_score's tokenizer and LCS, no stemming) with some
    other text is >= threshold, over all pairs. A pair is scored only when its token-multiset
    overlap could reach the threshold (F <= 2 * overlap / (m + n)), which is exact."""
    toks = [tokenize.tokenize(t, None) for t in texts]
    bags = [Counter(t) for t in toks]
    dup = [False] * len(texts)
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if dup[i] and dup[j]:
                continue
            m, n = len(toks[i]), len(toks[j])
            if not m or not n:
                continue
            overlap = sum((bags[i] & bags[j]).values())
            if 2 * overlap / (m + n) < threshold:
                continue
            if rouge_scorer._score_lcs(toks[i], toks[j]).fmeasure >= threshold:
                dup[i] = dup[j] = True
    return sum(dup) / max(len(texts), 1)


def offline_sample(n: int, seed: int) -> list[dict]:
    rows = []
    for c_index, (cell, quota) in enumerate(plan_quotas(n, seed=seed).items()):
        for r, start in enumerate(range(0, quota, ROWS_PER_CALL)):
            req_seed = seed * 1_000_003 + c_index * 10_007 + r
            rows.extend(generate_rows(cell, min(ROWS_PER_CALL, quota - start), req_seed))
    return rows


def reference_instructions() -> list[str]:
    files = sorted(REFERENCE_DATA.glob("*.json"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return [row["instruction"] for f in files for row in json.loads(f.read_text())]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--sample", type=int, default=1000)
    ap.add_argument("--dup-sample", type=int, default=1000, help="rows for the all-pairs ROUGE-L check")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    offline_sample(45, args.seed + 1)  # warm-up: vocabulary load, imports
    t0 = time.perf_counter()
    rows = offline_sample(args.rows, args.seed)
    secs = time.perf_counter() - t0
    print(
        f"offline backend: {len(rows)} rows in {secs:.2f} s = {len(rows) / secs:,.0f} rows/s "
        f"(target < 10 s: {secs / 10:.2f} of the budget)"
    )

    ours = [r["instruction"] for r in offline_sample(args.sample, args.seed)]
    unique = len({t.lower() for t in ours})
    print(
        f"sample: {len(ours)} offline instructions, {unique} distinct, "
        f"mean {sum(len(t.split()) for t in ours) / len(ours):.1f} words"
    )
    ref = reference_instructions() if REFERENCE_DATA.is_dir() else []
    for n in (2, 3):
        d_ours = distinct_n(ours, n)
        if ref:
            d_ref = distinct_n(ref, n)
            print(f"distinct-{n}: offline {d_ours:.3f}  original {d_ref:.3f}  ratio {d_ours / d_ref:.2f}")
        else:
            print(f"distinct-{n}: offline {d_ours:.3f}  (original rows not found at {REFERENCE_DATA})")
    k = args.dup_sample
    t0 = time.perf_counter()
    share = near_duplicate_share(ours[:: max(1, len(ours) // k)][:k])
    line = f"near-duplicates (ROUGE-L >= 0.7, all pairs of {k} rows): offline {share:.1%}"
    if ref:
        line += f"  original {near_duplicate_share(ref[:: max(1, len(ref) // k)][:k]):.1%}"
    print(line + f"  [{time.perf_counter() - t0:.1f} s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
