"""The dataset card (`DIR/README.md`) and its coverage chart (`DIR/coverage.png`).

The card is the dataset's loader too: its YAML `configs` (from `features.configs_yaml`) tell
`datasets` which Parquet shards make which split, and the `alpaca` config's `columns` select
instruction/input/output. The body is rendered from `dataset_card.md.j2` through
`huggingface_hub.DatasetCard.from_template`, which also writes the YAML header from a
`DatasetCardData`. Everything is derived from the built folder (shards + stats.json), so a
rebuild or a re-publish regenerates it.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard, DatasetCardData

from taskdecomp.errors import InputError, redact
from taskdecomp.files import atomic_write_text
from taskdecomp.loader_script.chart import render_coverage_chart
from taskdecomp.loader_script.features import (
    ALPACA_COLUMNS,
    FEATURES,
    SPLITS,
    configs_yaml,
    read_rows,
    shard_features,
)
from taskdecomp.mermaid import escape_markdown, mermaid_block, pick_examples, subtasks_to_mermaid
from taskdecomp.schema import MODALITIES, STRUCTURES
from taskdecomp.stats import DatasetStats, coverage, coverage_table, style_coverage_table, tool_coverage_table

__all__ = [
    "write_dataset_card",
    "render_dataset_card",
    "check_shards",
    "require_built",
    "shard_files",
    "PLACEHOLDER_REPO_ID",
    "CHART_NAME",
]

PLACEHOLDER_REPO_ID = "<user>/task-decomposition"
TAGS = ["task-decomposition", "planning", "multimodal", "instruction-tuning", "alpaca", "synthetic"]
CHART_NAME = "coverage.png"


def shard_files(out_dir: Path) -> list[Path]:
    """The built Parquet shards, `data/{split}-*.parquet`, sorted."""
    return sorted(p for s in SPLITS for p in (out_dir / "data").glob(f"{s}-*.parquet"))


def require_built(out_dir: Path) -> DatasetStats:
    """Check `out_dir` holds a built dataset (shards + stats.json); return its stats."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise InputError(f"{out_dir} does not exist: run build-dataset (or import-dataset) first")
    if not shard_files(out_dir) or not (out_dir / "stats.json").is_file():
        raise InputError(f"{out_dir} is not a built dataset: run build-dataset first")
    return DatasetStats.read(out_dir)


def check_shards(out_dir: Path) -> None:
    """Read every shard of `out_dir` in full; a corrupt or truncated one is an `InputError`.

    Before a publish: a broken shard must stop the push before anything is uploaded, with one
    line naming the file, not an `ArrowInvalid` traceback from the card's footer reads."""
    for path in shard_files(Path(out_dir)):
        try:
            parquet = pq.ParquetFile(path)
            for i in range(parquet.metadata.num_row_groups):  # one row group at a time: bounded memory
                parquet.read_row_group(i)
        except (pa.ArrowException, OSError) as exc:
            detail = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
            raise InputError(
                f"{path} is not a readable Parquet file ({exc.__class__.__name__}: {detail}); "
                f"rebuild the dataset in {path.parent.parent} (build-dataset or import-dataset)"
            ) from None


def _size_category(n: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return label
    return "1M<n<10M"


def _split_sizes(out_dir: Path) -> dict[str, tuple[int, int]]:
    """{split: (num_examples, num_bytes)} read from the shards' Parquet footers (cheap, exact)."""
    sizes: dict[str, tuple[int, int]] = {}
    for split in SPLITS:
        rows = nbytes = 0
        for path in sorted((out_dir / "data").glob(f"{split}-*.parquet")):
            meta = pq.read_metadata(path)
            rows += meta.num_rows
            nbytes += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if rows:
            sizes[split] = (rows, nbytes)
    return sizes


def _dataset_info(sizes: dict[str, tuple[int, int]], full: datasets.Features = FEATURES) -> DatasetInfosDict:
    """`dataset_info` for both configs: features + split sizes (the alpaca config's 3 columns);
    `full` is what the shards store (with tool/args for a tool-graph dataset)."""
    infos = DatasetInfosDict()
    alpaca = datasets.Features({c: full[c] for c in ALPACA_COLUMNS})
    for name, features in (("default", full), ("alpaca", alpaca)):
        splits = datasets.SplitDict()
        for split, (n, nbytes) in sizes.items():
            splits.add(datasets.SplitInfo(name=split, num_examples=n, num_bytes=nbytes))
        infos[name] = datasets.DatasetInfo(features=features, splits=splits, config_name=name)
    return infos


def _example(out_dir: Path) -> dict[str, Any]:
    """The first row of the first train shard (falls back to any shard)."""
    files = sorted((out_dir / "data").glob("train-*.parquet")) or shard_files(out_dir)
    table = pq.read_table(files[0])
    return table.slice(0, 1).to_pylist()[0] if table.num_rows else {}


def _plan_examples(out_dir: Path, k: int = 3) -> list[dict[str, Any]]:
    """`k` train rows of different structures, each with its plan as a Mermaid flowchart: the
    first row of each structure in shard order (then the next rows, when fewer structures
    exist), ordered chain, parallel, dag. Reads only the `structure` column to choose."""
    files = sorted((out_dir / "data").glob("train-*.parquet")) or shard_files(out_dir)
    order = {s: i for i, s in enumerate(STRUCTURES)}
    located = (
        (structure, path, i)
        for path in files
        for i, structure in enumerate(pq.read_table(path, columns=["structure"]).column(0).to_pylist())
    )
    picked = sorted(
        pick_examples(located, key=lambda t: t[0], k=k), key=lambda t: order.get(t[0], len(order))
    )
    examples = []
    for _, path, i in picked:
        row = pq.read_table(path).slice(i, 1).to_pylist()[0]
        examples.append(
            {
                "instruction": escape_markdown(row["instruction"]),
                "input": escape_markdown(row.get("input") or ""),
                "structure": row["structure"],
                "modalities": row["modalities"],
                "mermaid": mermaid_block(subtasks_to_mermaid(row["subtasks"])),
            }
        )
    return examples


def _card_data(
    sizes: dict[str, tuple[int, int]], pretty_name: str, features: datasets.Features = FEATURES
) -> DatasetCardData:
    n_rows = sum(n for n, _ in sizes.values())
    data = DatasetCardData(
        license="mit",
        language=["en"],
        task_categories=["text-generation"],
        tags=TAGS,
        size_categories=[_size_category(n_rows)],
        pretty_name=pretty_name,
        # deep copies: shared lists would be dumped as YAML anchors (&id001), which reads badly
        configs=[copy.deepcopy(c) for c in configs_yaml({s: n for s, (n, _) in sizes.items()})],
    )
    _dataset_info(sizes, features).to_dataset_card_data(data)
    return data


def _coverage(out_dir: Path, stats: DatasetStats) -> dict[str, dict[str, int]]:
    """stats.json's coverage, or recounted from the shards if an older build lacks it."""
    return stats.coverage or coverage(r for rows in read_rows(out_dir).values() for r in rows)


def _render(out_dir: Path, stats: DatasetStats, cov: dict[str, dict[str, int]], repo_id: str | None) -> str:
    """The card's Markdown (YAML header + body) for the built dataset in `out_dir`."""
    sizes = _split_sizes(out_dir)
    taxonomy = stats.taxonomy
    pretty_name = "Multi-modal task decomposition"
    template = resources.files("taskdecomp.loader_script").joinpath("dataset_card.md.j2").read_text("utf-8")
    card = DatasetCard.from_template(
        _card_data(sizes, pretty_name, shard_features(out_dir)),
        template_str=template,
        repo_id=repo_id or PLACEHOLDER_REPO_ID,
        n_rows=sum(n for n, _ in sizes.values()),
        splits={s: n for s, (n, _) in sizes.items()},
        n_combinations=len(cov),
        modalities=MODALITIES,
        structures=list(taxonomy.structures),
        taxonomy_combinations=taxonomy.combinations,
        min_steps=taxonomy.min_steps,
        max_steps=taxonomy.max_steps,
        backend=stats.backend,
        model=stats.model,
        source=stats.source,
        prompt_version=stats.prompt_version or "n/a",
        seed=stats.seed,
        requests=stats.requests,
        prompt_tokens=stats.usage.prompt_tokens,
        completion_tokens=stats.usage.completion_tokens,
        cost_usd=f"{stats.cost_usd:.4f}",
        wall_time_s=f"{stats.wall_time_s:.1f}",
        dedup_rule=stats.dedup.rule,
        rejects=dict(sorted(stats.rejects.items(), key=lambda kv: (-kv[1], kv[0]))),
        dup_exact=stats.dedup.exact,
        dup_near=stats.dedup.near,
        example_json=json.dumps(_example(out_dir), indent=2, ensure_ascii=False),
        plan_examples=_plan_examples(out_dir),
        coverage_table=coverage_table(cov),
        # rows per request style (older builds have none)
        style_coverage_table=style_coverage_table(stats.style_coverage) if stats.style_coverage else "",
        # tool-graph datasets (build-dataset --tools): the catalogue and rows per tool / tool cell
        catalogue=stats.catalogue,
        tool_coverage_table=tool_coverage_table(stats.tool_coverage) if stats.tool_coverage else "",
        tool_graphs=stats.tool_graphs,
        license_name="MIT",
    )
    # Belt and braces: nothing secret is in stats.json, but a card is public.
    return redact(str(card))


def render_dataset_card(out_dir: Path, *, repo_id: str | None = None, chart: Path) -> str:
    """The card's text for the built dataset in `out_dir`, its coverage chart written to `chart`.

    Writes nothing else: `publish_dataset` renders into a temporary folder and only replaces the
    local card once the push succeeded."""
    out_dir = Path(out_dir)
    stats = require_built(out_dir)
    cov = _coverage(out_dir, stats)  # once: for an older build it means reading every shard
    text = _render(out_dir, stats, cov, repo_id)
    render_coverage_chart(cov, chart, tools=stats.tool_coverage or None)
    return text if text.endswith("\n") else text + "\n"


def write_dataset_card(out_dir: Path, *, repo_id: str | None = None) -> Path:
    """Render `out_dir/README.md` and `out_dir/coverage.png` (both atomically); returns the card path."""
    out_dir = Path(out_dir)
    text = render_dataset_card(out_dir, repo_id=repo_id, chart=out_dir / CHART_NAME)
    path = out_dir / "README.md"
    atomic_write_text(path, text)
    return path
