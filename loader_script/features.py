"""The dataset's features and configs: the single definition the writer, the card's YAML
(`dataset_info`, `configs`) and the loaders agree on.

`datasets` 4+ does not run Python loading scripts; a Hub dataset repo is Parquet shards plus
the card's YAML. So the "loader" is data: `CONFIGS` below, rendered into the card.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets

__all__ = [
    "FEATURES",
    "TOOL_FEATURES",
    "ALPACA_COLUMNS",
    "SPLITS",
    "features_for",
    "storage_rows",
    "shard_features",
    "shard_name",
    "configs_yaml",
    "read_rows",
]

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
        # the request style (taskdecomp.taxonomy.STYLES); datasets built before it lack the column
        "style": datasets.Value("string"),
    }
)

# A dataset whose steps name tools (`build-dataset --tools`) also stores each step's `tool` and
# `args`; Parquet gives every step of such a dataset both columns: a step without a tool is
# stored as tool null, args [] (`storage_rows`), and `read_rows` drops them again. A dataset
# without tools keeps exactly `FEATURES`.
TOOL_FEATURES = datasets.Features(
    {
        **FEATURES,
        "subtasks": datasets.List(
            {
                **FEATURES["subtasks"].feature,
                "tool": datasets.Value("string"),
                "args": datasets.List(datasets.Value("string")),
            }
        ),
    }
)


def _without_style(features: datasets.Features) -> datasets.Features:
    return datasets.Features({k: v for k, v in features.items() if k != "style"})


# the same without `style`: the shards of a dataset built before request styles existed
_LEGACY = {id(FEATURES): _without_style(FEATURES), id(TOOL_FEATURES): _without_style(TOOL_FEATURES)}


def features_for(rows: Iterable[dict[str, Any]]) -> datasets.Features:
    """`TOOL_FEATURES` when any step of `rows` names a tool, else `FEATURES`; without the
    `style` column when no row has one (rows of a dataset built before styles existed)."""
    tooled = styled = False
    for r in rows:
        styled = styled or bool(r.get("style"))
        tooled = tooled or any(st.get("tool") for st in r.get("subtasks") or ())
    full = TOOL_FEATURES if tooled else FEATURES
    return full if styled else _LEGACY[id(full)]


def storage_rows(rows: Iterable[dict[str, Any]], features: datasets.Features) -> list[dict[str, Any]]:
    """`rows` as the shards store them: under `TOOL_FEATURES` every step has `tool` (None
    when it has none) and `args` ([] when it has none)."""
    styled = "style" in features
    if features is not TOOL_FEATURES and features is not _LEGACY[id(TOOL_FEATURES)]:
        return [{**r, "style": r.get("style")} for r in rows] if styled else list(rows)
    return [
        {
            **r,
            **({"style": r.get("style")} if styled else {}),
            "subtasks": [
                {**st, "tool": st.get("tool"), "args": list(st.get("args") or [])} for st in r["subtasks"]
            ],
        }
        for r in rows
    ]


def shard_features(out: Path) -> datasets.Features:
    """The features of a built folder's shards: `TOOL_FEATURES` when they store tools, without
    `style` when they predate it."""
    import pyarrow.parquet as pq

    for split in SPLITS:
        for path in sorted((out / "data").glob(f"{split}-*.parquet")):
            schema = pq.read_schema(path)
            step = schema.field("subtasks").type.value_type
            full = TOOL_FEATURES if step.get_field_index("tool") >= 0 else FEATURES
            return full if "style" in schema.names else _LEGACY[id(full)]
    return FEATURES


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
            ds = datasets.Dataset.from_parquet(files, features=shard_features(out))
            result[split] = [_untyped_tools(r) for r in ds.to_list()]  # type: ignore[union-attr]
    return result


def _untyped_tools(row: dict[str, Any]) -> dict[str, Any]:
    """The row as it was written: a step's `tool` only when set, its `args` only when non-empty
    (Parquet gives every step both columns); `style` only when set."""
    if "style" in row and row["style"] is None:
        row.pop("style")
    for st in row.get("subtasks") or ():
        if st.get("tool") is None:
            st.pop("tool", None)
        if not st.get("args"):
            st.pop("args", None)
    return row
