"""A small built dataset folder (shards + stats.json) for the card and Hub tests.

Rows are synthesised from the taxonomy (every modality combination, chain and parallel plans)
and go through the real `make_row`/`split_rows`/`write_splits`, so the folder looks exactly
like what build-dataset writes, without waiting for a build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskdecomp.dataset_builder.output import split_rows, write_splits
from taskdecomp.schema import classify_structure, make_row, schema_errors
from taskdecomp.stats import DatasetStats, Dedup, Taxonomy, Usage, coverage
from taskdecomp.taxonomy import COMBINATIONS

VERBS = {"text": "Write", "image": "Draw", "audio": "Record", "video": "Film"}


def fixture_rows(n: int, *, tag: str = "") -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        combo = COMBINATIONS[i % len(COMBINATIONS)]
        mods = list(combo) if len(combo) > 1 else [combo[0], combo[0]]
        parallel = i % 2 == 1
        subtasks = [
            {
                "step": s,
                "description": f"{VERBS[m]} part {s} of item {i}{tag} about topic {i * 7 % 13}",
                "modality": m,
                "operation": "generation",
                "depends_on": [] if (parallel or s == 1) else [s - 1],
            }
            for s, m in enumerate(mods, start=1)
        ]
        candidate = {
            "instruction": f"Make a {'+'.join(combo)} piece number {i}{tag} about topic {i * 7 % 13}.",
            "input": "" if i % 3 else f"context {i}",
            "subtasks": subtasks,
            "structure": classify_structure(subtasks),
        }
        row = make_row(candidate, "offline")
        assert not schema_errors(row), schema_errors(row)
        rows.append(row)
    return rows


def build_fixture(out: Path, n: int = 40, *, tag: str = "", seed: int = 1) -> dict[str, list[dict[str, Any]]]:
    """Write `out/data/*.parquet` + `out/stats.json`; returns the rows per split."""
    rows = fixture_rows(n, tag=tag)
    splits = split_rows(rows, test_size=0.2, seed=seed)
    write_splits(splits, out)
    DatasetStats(
        n_rows=len(rows),
        splits={k: len(v) for k, v in splits.items()},
        coverage=coverage(rows),
        rejects={"schema": 3, "duplicate-steps": 2},
        dedup=Dedup(0.7, exact=1, near=2),
        usage=Usage(prompt_tokens=1200, completion_tokens=3400),
        requests=12,
        wall_time_s=1.5,
        backend="offline",
        source="offline",
        seed=seed,
        prompt_version="v1",
        taxonomy=Taxonomy(combinations=15, cells=45, min_steps=2, max_steps=8),
        config={"n": n, "seed": seed},
    ).write(out)
    return splits
