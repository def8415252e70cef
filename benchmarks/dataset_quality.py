"""Dataset quality benchmark: a built offline dataset next to the original project's rows.

    .venv/bin/python benchmarks/dataset_quality.py [--n 1000] [--seed 0] [--quotas FILE]

Builds `--n` rows with the offline backend through the library API (`build`, in a temporary
folder: quotas, validation, de-duplication, journal, Parquet, exactly as `build-dataset`), reads
the rows back, and measures in the same run the same figures on the baseline, the 1,000
published reference rows in ../shared/reference/decompose_net/data (read there, never copied):

* distinct-1/2/3 of the instructions (distinct word n-grams / all n-grams, lower-cased,
  whitespace tokens; target distinct-3 >= 0.70);
* the largest ROUGE-L F of any pair of instructions and the number of pairs at >= 0.7
  (rouge_score's tokens and F, all pairs: a pair is scored exactly unless its token-multiset
  bound rules it out; target 0 pairs);
* coverage flatness: min / max rows per taxonomy cell (the 45 cells of 2+ step plans, and
  the 4 single-step cells) and per request style (the reference rows' cells are read from
  their plans, their styles inferred with `taxonomy.infer_style`, as import-dataset does);
* the share of single-step rows (one-step plans; target about 15 %).

Each figure is printed for both and as a ratio (ours / reference).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

# the same n-gram count and reference rows as the offline-backend benchmark (run as a script,
# this folder is on sys.path)
from offline_backend import REFERENCE_DATA, distinct_n  # noqa: E402

from taskdecomp.dataset_builder.build import build
from taskdecomp.dataset_builder.build_config import BuildConfig
from taskdecomp.loader_script.features import read_rows
from taskdecomp.rouge import lcs_length, rouge_tokens
from taskdecomp.schema import classify_structure, parse_output
from taskdecomp.stats import SINGLE
from taskdecomp.taxonomy import CELLS, SINGLE_CELLS, STYLES, infer_style

THRESHOLD = 0.7


def _f(lcs: int, m: int, n: int) -> float:
    if lcs == 0:
        return 0.0
    p, r = lcs / n, lcs / m
    return 2 * p * r / (p + r)


def rouge_pairs(texts: list[str], threshold: float = THRESHOLD) -> tuple[float, int]:
    """(largest ROUGE-L F over all pairs, pairs at >= threshold), exactly: the LCS of two texts
    is at most their token-multiset overlap, so F <= 2 * overlap / (m + n); pairs are scored
    in decreasing order of that bound until it falls below both the threshold and the best F
    found."""
    toks = [rouge_tokens(t) for t in texts]
    vocab = {w: i for i, w in enumerate(sorted({w for t in toks for w in t}))}
    counts = np.zeros((len(toks), len(vocab)), np.int16)
    for i, t in enumerate(toks):
        for w in t:
            counts[i, vocab[w]] += 1
    lengths = counts.sum(axis=1).astype(np.float64)
    bound_parts, left_parts, right_parts = [], [], []
    for i in range(len(toks) - 1):
        overlap = np.minimum(counts[i], counts[i + 1 :]).sum(axis=1)
        bound_parts.append(2 * overlap / np.maximum(lengths[i] + lengths[i + 1 :], 1))
        left_parts.append(np.full(len(toks) - 1 - i, i))
        right_parts.append(np.arange(i + 1, len(toks)))
    if not bound_parts:
        return 0.0, 0
    bounds, left, right = (np.concatenate(x) for x in (bound_parts, left_parts, right_parts))
    best, over = 0.0, 0
    for k in np.argsort(-bounds, kind="stable"):
        if bounds[k] < threshold and bounds[k] <= best:
            break  # no pair left can pass the threshold or beat the best
        i, j = int(left[k]), int(right[k])
        score = _f(lcs_length(toks[i], toks[j]), len(toks[i]), len(toks[j]))
        best = max(best, score)
        over += score >= threshold
    return best, over


def cell_key(row: dict[str, Any]) -> str:
    combo = "+".join(row["modalities"])
    return f"{combo}/{SINGLE}" if len(row["subtasks"]) == 1 else f"{combo}/{row['structure']}"


def profile(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ins = [r["instruction"] for r in rows]
    cells = Counter(cell_key(r) for r in rows)
    styles = Counter(r.get("style") or infer_style(r["instruction"]) for r in rows)
    multi = [cells.get(c.key, 0) for c in CELLS]
    single = [cells.get(c.key, 0) for c in SINGLE_CELLS]
    per_style = [styles.get(s, 0) for s in STYLES]
    t0 = time.perf_counter()
    best, over = rouge_pairs(ins)
    return {
        "rows": len(rows),
        "words": sum(len(t.split()) for t in ins) / max(len(ins), 1),
        **{f"distinct-{n}": distinct_n(ins, n) for n in (1, 2, 3)},
        "max ROUGE-L": best,
        "pairs >= 0.7": over,
        "rouge_s": time.perf_counter() - t0,
        "cells (2+ steps) min/max": (min(multi), max(multi)),
        "single-step cells min/max": (min(single), max(single)),
        "styles min/max": (min(per_style), max(per_style)),
        "styles": dict(styles),
        "single-step share": sum(1 for r in rows if len(r["subtasks"]) == 1) / max(len(rows), 1),
    }


def reference_rows() -> list[dict[str, Any]]:
    """The original rows with what their plans say: steps typed by the lexicon (as
    import-dataset parses them), modalities and structure from the parsed steps."""
    files = sorted(REFERENCE_DATA.glob("*.json"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    rows = []
    for f in files:
        for rec in json.loads(f.read_text(encoding="utf-8")):
            steps = parse_output(rec["output"]) or [
                {
                    "step": 1,
                    "description": rec["output"],
                    "modality": "text",
                    "operation": "generation",
                    "depends_on": [],
                }
            ]
            rows.append(
                {
                    "instruction": rec["instruction"],
                    "subtasks": steps,
                    "modalities": sorted({s["modality"] for s in steps}),
                    "structure": classify_structure(steps),
                }
            )
    return rows


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, tuple):
        return f"{v[0]} / {v[1]}"
    return str(v)


def _ratio(a: Any, b: Any) -> str:
    if isinstance(a, tuple):
        fa, fb = (a[0] / a[1] if a[1] else 0.0), (b[0] / b[1] if b[1] else 0.0)  # min/max: 1.0 is flat
        return f"flatness {fa:.2f} vs {fb:.2f}"
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return f"{a / b:.2f}x"
    return "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--quotas", default=None, help="a quotas file (default: flat cells and styles, 15 %% single-step)"
    )
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = build(
            BuildConfig(
                n=args.n, out=str(Path(tmp) / "ds"), backend="offline", seed=args.seed, quotas=args.quotas
            )
        )
        secs = time.perf_counter() - t0
        rows = [r for split in read_rows(summary.out).values() for r in split]
        stats = summary.stats
    print(
        f"built {len(rows)} rows offline in {secs:.1f} s (rejects {stats.rejected_rows}, "
        f"duplicates {stats.dedup.exact} exact + {stats.dedup.near} near)"
    )
    ours = profile(rows)
    ref = profile(reference_rows()) if REFERENCE_DATA.is_dir() else None
    if ref is None:
        print(f"(reference rows not found at {REFERENCE_DATA}: no baseline)")
    print(f"{'figure':<28} {'ours':>14} {'reference':>14}  ratio")
    for key in ours:
        if key in ("styles", "rouge_s"):
            continue
        b = ref[key] if ref else None
        print(
            f"{key:<28} {_fmt(ours[key]):>14} {_fmt(b) if ref else '-':>14}  {_ratio(ours[key], b) if ref else ''}"
        )
    print("styles (ours):      " + ", ".join(f"{s} {ours['styles'].get(s, 0)}" for s in STYLES))
    if ref:
        print("styles (reference): " + ", ".join(f"{s} {ref['styles'].get(s, 0)}" for s in STYLES))
    targets = [
        ("distinct-3 >= 0.70", ours["distinct-3"] >= 0.70),
        ("no pair at ROUGE-L >= 0.7", ours["pairs >= 0.7"] == 0),
        ("single-step share 15 % +- 3", abs(ours["single-step share"] - 0.15) <= 0.03),
    ]
    print("targets: " + ", ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
