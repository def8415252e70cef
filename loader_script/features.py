"""The dataset's features and configs: the single definition the writer, the card's YAML
(`dataset_info`, `configs`) and the loaders agree on.

`datasets` 4+ does not run Python loading scripts; a Hub dataset repo is Parquet shards plus
the card's YAML. So the "loader" is data: `CONFIGS` below, rendered into the card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

__all__ = ["FEATURES", "ALPACA_COLUMNS", "SPLITS", "shard_name", "configs_yaml", "read_rows"]

SPLITS = ("train", "test")
ALPACA_COLUMNS = ("instruction", "input", "output")

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "instruction": datasets.Value("string"),
        "input": datasets.Value("string"),
        "output": datasets.Value("string"),
        "subtasks": datasets.List(
            {
                "step": datasets.Value("int32"),
                "description": datasets.Value("string"),
                "modality": datasets.Value("string"),
                "operation": datasets.Value("string"),
                "depends_on": datasets.List(datasets.Value("int32")),
            }
        ),
        "modalities": datasets.List(datasets.Value("string")),
        "structure": datasets.Value("string"),
        "source": datasets.Value("string"),
    }
)


def shard_name(split: str, index: int = 0, total: int = 1) -> str:
    return f"data/{split}-{index:05d}-of-{total:05d}.parquet"


def configs_yaml(splits: dict[str, int]) -> list[dict[str, Any]]:
    """The card's `configs:` list: `default` (all fields) and `alpaca` (instruction/input/output)."""
    data_files = [{"split": s, "path": f"data/{s}-*.parquet"} for s in SPLITS if splits.get(s)]
    return [
        {"config_name": "default", "data_files": data_files, "default": True},
        {"config_name": "alpaca", "data_files": data_files, "columns": list(ALPACA_COLUMNS)},
    ]


def read_rows(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows per split from a built folder's shards (for re-publishing, importing, tests)."""
    result: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        files = sorted(str(p) for p in (out / "data").glob(f"{split}-*.parquet"))
        if files:
            ds = datasets.Dataset.from_parquet(files, features=FEATURES)
            result[split] = ds.to_list()  # type: ignore[union-attr]
    return result
