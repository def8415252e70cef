"""Writing a built dataset: stratified splits → Parquet shards, stats, coverage table.

Every final file is written to a temp file in the same folder and renamed into place, so a
crash never leaves a half-written Parquet or JSON file behind; shards a previous build left
that are not part of this one are removed after the new ones are in place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from taskdecomp.errors import ConfigError
from taskdecomp.files import atomic_path, atomic_write_text
from taskdecomp.stats import DatasetStats, coverage, style_coverage

__all__ = [
    "check_out_location",
    "split_rows",
    "write_splits",
    "write_dataset",
    "MAX_SHARD_ROWS",
]

MAX_SHARD_ROWS = 100_000


_VIRTUAL_FS = (Path("/proc"), Path("/sys"))  # kernel views: writes fail late or do odd things


def check_out_location(out: Path, flag: str = "--out") -> None:
    """Fail before any work when `out` cannot hold a dataset folder: a file on its path, a
    virtual file system, or a folder we cannot write to. Creates nothing (a probe file in the
    nearest existing folder is made and removed at once)."""
    resolved = Path(os.path.abspath(out))
    for root in _VIRTUAL_FS:
        if resolved == root or root in resolved.parents:
            raise ConfigError(f"{flag} {out} is under {root}, which cannot hold files; choose another folder")
    probe = resolved
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        what = "is a file" if probe == resolved else f"is below the file {probe}"
        raise ConfigError(f"{flag} {out} {what}; give a folder (it is created if missing)")
    try:  # os.access says yes to root even on read-only mounts: really try
        fd, name = tempfile.mkstemp(prefix=".taskdecomp-probe-", dir=probe)
    except OSError as exc:
        raise ConfigError(
            f"{flag} {out}: cannot write in {probe} ({exc.strerror or exc.__class__.__name__}); "
            f"choose a writable folder"
        ) from None
    os.close(fd)
    os.unlink(name)


def _test_counts(sizes: dict[str, int], test_size: float) -> dict[str, int]:
    """How many rows of each stratum go to `test`: round(n * test_size) in all, shared by the
    largest-remainder method, so small strata do not each round their share down to zero.
    Strata of one row are used last, so `train` keeps every combination it can."""
    n = sum(sizes.values())
    total = round(n * test_size)
    if test_size > 0 and total == 0 and n >= 2:
        total = 1  # tiny datasets: still give `test` one row
    total = min(total, max(0, n - 1))
    exact = {c: k * test_size for c, k in sizes.items()}
    counts = {c: min(int(exact[c]), sizes[c] - 1) if sizes[c] > 1 else 0 for c in sizes}
    left = total - sum(counts.values())
    order = sorted(sizes, key=lambda c: (sizes[c] - counts[c] > 1, exact[c] - counts[c], c), reverse=True)
    while left > 0:
        room = [c for c in order if sizes[c] - counts[c] > 1] or [c for c in order if counts[c] < sizes[c]]
        if not room:
            break
        for c in room[:left]:
            counts[c] += 1
        left -= min(left, len(room))
    return counts


def split_rows(rows: list[dict[str, Any]], test_size: float, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Stratified by modality combination: round(test_size * n) rows in `test` in all, each
    combination giving its share (largest remainder; seeded shuffle inside each), so both
    splits cover every combination they can."""
    by_combo: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_combo["+".join(row["modalities"])].append(row)
    rng = random.Random(seed)
    counts = _test_counts({c: len(g) for c, g in by_combo.items()}, test_size)
    train, test = [], []
    for combo in sorted(by_combo):
        group = sorted(by_combo[combo], key=lambda r: r["id"])
        rng.shuffle(group)
        k = counts[combo]
        test.extend(group[:k])
        train.extend(group[k:])
    # a stable, seeded order inside each split (not grouped by combination)
    rng.shuffle(train)
    rng.shuffle(test)
    return {"train": train, "test": test}


def write_splits(splits: dict[str, list[dict[str, Any]]], out: Path) -> dict[str, list[str]]:
    """Write `out/data/{split}-0000i-of-0000n.parquet`; returns the shard paths per split."""
    # datasets (+ pyarrow) cost ~1.4 s to import: only a command that writes shards pays it
    import datasets

    from taskdecomp.loader_script.features import SPLITS, features_for, shard_name, storage_rows

    datasets.disable_progress_bars()  # progress goes through our Reporter, not datasets' bars
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {}
    features = features_for(r for rows in splits.values() for r in rows)  # + tool/args when steps name tools
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
                stored = storage_rows(chunk, features)
                datasets.Dataset.from_list(stored, features=features).to_parquet(str(tmp))
            written[split].append(rel)
    keep = {p for paths in written.values() for p in paths}
    for stale in data.glob("*.parquet"):
        if f"data/{stale.name}" not in keep:
            stale.unlink()
    return written


def write_dataset(
    out: Path,
    rows: list[dict[str, Any]],
    rejects: Iterable[dict[str, Any]],
    stats: DatasetStats,
    *,
    test_size: float,
    seed: int,
    repo_id: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], DatasetStats]:
    """The one writer of the dataset layout, for build-dataset and import-dataset alike:
    split → shards → rejects.jsonl (and `extra` files) → stats.json → README.md + chart.

    `stats` carries what the caller knows (backend, usage, dedup, ...); the row counts, splits and
    coverage (cells and request styles) are filled in here from `rows`. stats.json is written after the shards, so its
    presence means the shards are complete; the card is rendered from both."""
    splits = split_rows(rows, test_size, seed)
    write_splits(splits, out)
    atomic_write_text(
        out / "rejects.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects)
    )
    for name, text in (extra or {}).items():
        atomic_write_text(out / name, text)
    stats = dataclasses.replace(
        stats,
        n_rows=len(rows),
        splits={k: len(v) for k, v in splits.items() if v},
        coverage=coverage(rows),
        style_coverage=style_coverage(rows),
    )
    stats.write(out)
    from taskdecomp.loader_script.dataset_card import write_dataset_card  # datasets + matplotlib

    write_dataset_card(out, repo_id=repo_id)
    return splits, stats
