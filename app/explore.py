"""The Explore tab's logic (no gradio here): load a dataset, filter its rows, show one.

A dataset is a `build-dataset` folder (its `data/*.parquet` shards, read with pyarrow) or a Hub
dataset id (`datasets.load_dataset`, after one quick probe so a wrong id or a dead endpoint is
one line instead of a minute of retries). Rows of every split are kept, in split then shard
order, with their split name. The request `style` column is optional: a dataset without it
simply has no style filter.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskdecomp.errors import InputError
from taskdecomp.mermaid import escape_markdown, mermaid_block, subtasks_to_mermaid
from taskdecomp.schema import STRUCTURES
from taskdecomp.stats import coverage, coverage_table

__all__ = ["ALL", "ExploreData", "load_dataset_rows", "filter_rows", "row_markdown", "summary_markdown"]

ALL = "all"  # the filter value that keeps every row
_CACHE: dict[str, ExploreData] = {}
_LOCK = threading.Lock()


@dataclass
class ExploreData:
    """A loaded dataset: its rows (each with a `split` key) and what the filters offer."""

    source: str
    rows: list[dict[str, Any]]
    splits: dict[str, int] = field(default_factory=dict)
    combos: list[str] = field(default_factory=list)
    structures: list[str] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)  # empty: the rows have no `style` column
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)
    _chart: Path | None = field(default=None, repr=False)

    @classmethod
    def from_rows(cls, source: str, rows: list[dict[str, Any]]) -> ExploreData:
        cov = coverage(rows)
        present = {r["structure"] for r in rows}
        styles = sorted({str(r["style"]) for r in rows if r.get("style")})
        return cls(
            source=source,
            rows=rows,
            splits=dict(Counter(r["split"] for r in rows)),
            combos=list(cov),
            structures=[s for s in STRUCTURES if s in present] + sorted(present - set(STRUCTURES)),
            styles=styles,
            coverage=cov,
        )

    @property
    def has_style(self) -> bool:
        return bool(self.styles)

    def chart(self) -> Path:
        """The coverage chart (`loader_script.chart`), rendered once into a temporary file."""
        if self._chart is None or not self._chart.is_file():
            from taskdecomp.loader_script.chart import render_coverage_chart

            folder = Path(tempfile.mkdtemp(prefix="taskdecomp-app-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)  # one small PNG, gone with the app
            self._chart = render_coverage_chart(self.coverage, folder / "coverage.png")
        return self._chart


def _looks_like_repo(source: str) -> bool:
    return not Path(source).exists() and source.count("/") == 1 and not source.startswith((".", "/", "~"))


def _local_rows(folder: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((folder / "data").glob("*.parquet"))
    if not files:
        raise InputError(
            f"{folder} has no data/*.parquet shards: pass a folder written by build-dataset or a Hub dataset id"
        )
    rows: list[dict[str, Any]] = []
    for path in sorted(files, key=lambda p: (p.name.split("-")[0] != "train", p.name)):
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            detail = next((line for line in str(exc).splitlines() if line.strip()), exc.__class__.__name__)
            raise InputError(f"{path} is not a readable Parquet file ({detail})") from None
        split = path.name.split("-")[0]
        rows += [{**r, "split": split} for r in table.to_pylist()]
    return rows


def _hub_rows(repo_id: str) -> list[dict[str, Any]]:
    import datasets

    from taskdecomp.hub_probe import check_hub_repo

    check_hub_repo(repo_id, "dataset", "dataset")  # one quick request before datasets retries
    try:
        loaded = datasets.load_dataset(repo_id)
    except (OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise InputError(f"cannot load dataset {repo_id}: {str(exc).splitlines()[0]}") from None
    if not isinstance(loaded, datasets.DatasetDict):
        raise InputError(f"dataset {repo_id}: expected splits, got {type(loaded).__name__}")
    return [{**r, "split": split} for split, ds in loaded.items() for r in ds.to_list()]


def load_dataset_rows(source: str) -> ExploreData:
    """The dataset at `source` (a build-dataset folder or a Hub id), cached per source;
    `InputError`/`HubError` with one line when it cannot be read."""
    source = (source or "").strip()
    if not source:
        raise InputError(
            "no dataset given: type a build-dataset folder or a Hub id such as alice/task-decomposition"
        )
    with _LOCK:
        if source in _CACHE:
            return _CACHE[source]
    path = Path(source).expanduser()
    if path.is_dir():
        rows = _local_rows(path)
    elif _looks_like_repo(source):
        rows = _hub_rows(source)
    else:
        raise InputError(f"dataset {source} not found: pass a build-dataset folder or a Hub id (USER/NAME)")
    missing = [c for c in ("instruction", "subtasks", "modalities", "structure") if rows and c not in rows[0]]
    if missing:
        raise InputError(f"dataset {source} is not a task-decomposition dataset (no column {missing[0]!r})")
    if not rows:
        raise InputError(f"dataset {source} has no rows")
    data = ExploreData.from_rows(source, rows)
    with _LOCK:
        _CACHE[source] = data
    return data


def filter_rows(data: ExploreData, combo: str = ALL, structure: str = ALL, style: str = ALL) -> list[int]:
    """Indices of the rows matching every filter that is not `ALL` (the style filter only
    applies to a dataset with a `style` column)."""
    out = []
    for i, r in enumerate(data.rows):
        if combo not in (ALL, None) and "+".join(r["modalities"]) != combo:
            continue
        if structure not in (ALL, None) and r["structure"] != structure:
            continue
        if data.has_style and style not in (ALL, None) and r.get("style") != style:
            continue
        out.append(i)
    return out


def row_markdown(row: dict[str, Any], *, position: str = "") -> str:
    """One row: the request, its tags, the plan drawn as a Mermaid graph and the plan text."""
    tags = [f"split `{row.get('split', '?')}`", f"structure `{row['structure']}`"]
    tags.append("modalities " + ", ".join(f"`{m}`" for m in row["modalities"]))
    if row.get("style"):
        tags.append(f"style `{row['style']}`")
    lines = [f"**{position}**" if position else "", f"> {escape_markdown(row['instruction'])}"]
    if row.get("input"):
        lines.append(f"\n*Input:* {escape_markdown(row['input'])}")
    lines += ["", " · ".join(tags), "", mermaid_block(subtasks_to_mermaid(row["subtasks"])), ""]
    output = row.get("output") or ""
    if output:
        lines += ["```text", output.replace("```", "'''"), "```"]
    return "\n".join(lines).strip() + "\n"


def summary_markdown(data: ExploreData) -> str:
    """What was loaded: rows per split, and rows per style when the dataset has styles."""
    splits = ", ".join(f"{s}: {n}" for s, n in data.splits.items())
    text = f"Loaded **{len(data.rows)} rows** from `{data.source}` ({splits}), {len(data.combos)} modality combinations."
    if data.has_style:
        counts = Counter(str(r.get("style")) for r in data.rows if r.get("style"))
        text += "\n\nRows per request style: " + ", ".join(f"`{s}` {counts[s]}" for s in data.styles) + "."
    return text + "\n\n" + coverage_table(data.coverage)
