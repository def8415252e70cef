"""Writing a built dataset: stratified splits → Parquet shards, stats, coverage table.

Every final file is written to a temp file in the same folder and renamed into place, so a
crash never leaves a half-written Parquet or JSON file behind; shards a previous build left
that are not part of this one are removed after the new ones are in place.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets

from taskdecomp.files import atomic_path
from taskdecomp.loader_script.features import FEATURES, SPLITS, shard_name
from taskdecomp.schema import STRUCTURES

__all__ = [
    "split_rows",
    "write_splits",
    "coverage",
    "coverage_table",
    "read_rows",
    "MAX_SHARD_ROWS",
]

MAX_SHARD_ROWS = 100_000


def split_rows(rows: list[dict[str, Any]], test_size: float, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Stratified by modality combination: each combination puts round(test_size * k) of its
    k rows in `test` (seeded shuffle), so both splits cover every combination they can."""
    by_combo: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_combo["+".join(row["modalities"])].append(row)
    rng = random.Random(seed)
    train, test = [], []
    for combo in sorted(by_combo):
        group = sorted(by_combo[combo], key=lambda r: r["id"])
        rng.shuffle(group)
        k = round(len(group) * test_size)
        if test_size > 0 and k == 0 and len(group) >= 10:
            k = 1
        test.extend(group[:k])
        train.extend(group[k:])
    if test_size > 0 and not test and len(train) >= 2:
        # tiny datasets: no combination has enough rows for a share; still give `test` one row
        test.append(train.pop())
    # a stable, seeded order inside each split (not grouped by combination)
    rng.shuffle(train)
    rng.shuffle(test)
    return {"train": train, "test": test}


def write_splits(splits: dict[str, list[dict[str, Any]]], out: Path) -> dict[str, list[str]]:
    """Write `out/data/{split}-0000i-of-0000n.parquet`; returns the shard paths per split."""
    datasets.disable_progress_bars()  # progress goes through our Reporter, not datasets' bars
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {}
    for split in SPLITS:
        rows = splits.get(split) or []
        if not rows:
            continue
        total = max(1, -(-len(rows) // MAX_SHARD_ROWS))
        written[split] = []
        for i in range(total):
            chunk = rows[i * MAX_SHARD_ROWS : (i + 1) * MAX_SHARD_ROWS]
            rel = shard_name(split, i, total)
            with atomic_path(out / rel, suffix=".parquet.tmp") as tmp:
                datasets.Dataset.from_list(chunk, features=FEATURES).to_parquet(str(tmp))
            written[split].append(rel)
    keep = {p for paths in written.values() for p in paths}
    for stale in data.glob("*.parquet"):
        if f"data/{stale.name}" not in keep:
            stale.unlink()
    return written


def read_rows(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows per split from a built folder's shards (for re-publishing, importing, tests)."""
    result: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        files = sorted(str(p) for p in (out / "data").glob(f"{split}-*.parquet"))
        if files:
            ds = datasets.Dataset.from_parquet(files, features=FEATURES)
            result[split] = ds.to_list()  # type: ignore[union-attr]
    return result


def coverage(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """{ 'audio+text': {'chain': 12, 'parallel': 9, 'dag': 11}, ... }"""
    table: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STRUCTURES, 0))
    for row in rows:
        table["+".join(row["modalities"])][row["structure"]] += 1
    return {k: table[k] for k in sorted(table, key=lambda c: (c.count("+"), c))}


def coverage_table(cov: dict[str, dict[str, int]]) -> str:
    """A Markdown table (also readable in a terminal)."""
    head = "| modalities | " + " | ".join(STRUCTURES) + " | total |"
    sep = "|---|" + "---:|" * (len(STRUCTURES) + 1)
    lines = [head, sep]
    totals = dict.fromkeys(STRUCTURES, 0)
    for combo, counts in cov.items():
        for s in STRUCTURES:
            totals[s] += counts.get(s, 0)
        cells = " | ".join(str(counts.get(s, 0)) for s in STRUCTURES)
        lines.append(f"| {combo} | {cells} | {sum(counts.values())} |")
    lines.append(
        "| **total** | " + " | ".join(str(totals[s]) for s in STRUCTURES) + f" | {sum(totals.values())} |"
    )
    return "\n".join(lines)
