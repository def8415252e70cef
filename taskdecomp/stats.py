"""What a built dataset folder says about itself: its coverage of the taxonomy (modality
combination × structure, one-step plans in a column of their own, and request styles) and its
de-duplication rule, shared by build-dataset, import-dataset and the dataset card."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskdecomp.errors import InputError
from taskdecomp.files import atomic_write_json
from taskdecomp.schema import MODALITIES, OPERATIONS, STRUCTURES
from taskdecomp.taxonomy import SINGLE, STYLES

__all__ = [
    "DatasetStats",
    "Usage",
    "Dedup",
    "Taxonomy",
    "coverage",
    "coverage_table",
    "style_coverage",
    "style_coverage_table",
    "COVERAGE_COLUMNS",
    "tool_coverage_table",
    "describe_rule",
]

STATS_FILE = "stats.json"
#: the coverage table's columns: one-step plans ('single'), then the structures of plans of 2+ steps
COVERAGE_COLUMNS: tuple[str, ...] = (SINGLE, *STRUCTURES)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Dedup:
    threshold: float
    exact: int = 0  # duplicates dropped
    near: int = 0

    @property
    def rule(self) -> str:
        return describe_rule(self.threshold)


@dataclass(frozen=True)
class Taxonomy:
    modalities: tuple[str, ...] = MODALITIES
    operations: tuple[str, ...] = OPERATIONS
    structures: tuple[str, ...] = STRUCTURES
    combinations: int = 0
    cells: int = 0
    min_steps: int = 0
    max_steps: int = 0


@dataclass(frozen=True)
class DatasetStats:
    """stats.json: what build-dataset and import-dataset say about the folder they wrote, and
    what the dataset card reads. Written last, so its presence means the folder is complete."""

    n_rows: int
    splits: dict[str, int]
    dedup: Dedup
    taxonomy: Taxonomy
    backend: str  # offline | openai | import
    source: str  # the rows' `source` field
    seed: int
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)  # older files may lack it
    style_coverage: dict[str, int] = field(default_factory=dict)  # rows per request style (ditto)
    rejects: dict[str, int] = field(default_factory=dict)  # reason code -> rows
    usage: Usage = Usage()
    requests: int = 0
    cost_usd: float = 0.0
    wall_time_s: float = 0.0
    model: str | None = None
    prompt_version: str | None = None
    n_requested: int | None = None
    requests_this_run: int = 0
    rejected_rows: int = 0
    surplus_rows: int = 0
    stopped: str | None = None  # why a build ended early (budget), else None
    config: dict[str, Any] = field(default_factory=dict)
    # tool-graph builds (`build-dataset --tools`): the catalogue (name, digest, tools, covered),
    # rows per tool (every catalogue tool, 0 when unused) and rows per tool cell ("chain/3")
    catalogue: dict[str, Any] | None = None
    tool_coverage: dict[str, int] = field(default_factory=dict)
    tool_graphs: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["dedup"]["rule"] = self.dedup.rule
        data["duplicates"] = {"exact": self.dedup.exact, "near": self.dedup.near}  # readers of v1 files
        for key in ("modalities", "operations", "structures"):
            data["taxonomy"][key] = list(data["taxonomy"][key])
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DatasetStats:
        """Parse what `to_json` wrote (derived keys are recomputed, not trusted)."""
        d = dict(data)
        dups = d.pop("duplicates", None) or {}
        dedup = dict(d.pop("dedup", None) or {})
        dedup.pop("rule", None)
        usage = dict(d.pop("usage", None) or {})
        usage.pop("total_tokens", None)
        taxonomy = dict(d.pop("taxonomy", None) or {})
        for key in ("modalities", "operations", "structures"):
            if key in taxonomy:
                taxonomy[key] = tuple(taxonomy[key])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(
            **{k: v for k, v in d.items() if k in names},
            usage=Usage(**usage),
            dedup=Dedup(threshold=float(dedup.get("threshold", 0.7)), exact=int(dedup.get("exact", dups.get("exact", 0))),
                        near=int(dedup.get("near", dups.get("near", 0)))),
            taxonomy=Taxonomy(**taxonomy),
        )  # fmt: skip

    def write(self, out_dir: Path) -> Path:
        path = Path(out_dir) / STATS_FILE
        atomic_write_json(path, self.to_json())
        return path

    @classmethod
    def read(cls, out_dir: Path) -> DatasetStats:
        path = Path(out_dir) / STATS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(
                f"{out_dir} has no {STATS_FILE}; pass a folder written by build-dataset"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(
                f"{path} is not valid JSON ({exc.__class__.__name__}); rebuild the dataset"
            ) from None
        if not isinstance(data, dict):
            raise InputError(f"{path} must hold a JSON object; rebuild the dataset")
        try:
            return cls.from_json(data)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{path} does not describe a dataset ({exc}); rebuild the dataset") from None


def describe_rule(threshold: float) -> str:
    """The rule in words, for stats.json and the dataset card."""
    return (
        f"Exact duplicates (same normalised instruction) are dropped; of two rows whose instructions "
        f"reach ROUGE-L F >= {threshold}, only the first is kept (the Alpaca rule)."
    )


def coverage(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """{ 'audio': {'single': 7, 'chain': 12, 'parallel': 9, 'dag': 11}, 'audio+text': {...}, ... }:
    rows per modality combination and structure; a one-step plan (a chain of one step) counts
    under 'single', so each column is one kind of quota cell. Only a one-modality combination
    has the 'single' key (a one-step plan has one modality)."""
    table: dict[str, dict[str, int]] = {}
    for row in rows:
        combo = "+".join(row["modalities"])
        counts = table.setdefault(
            combo, dict.fromkeys(COVERAGE_COLUMNS if "+" not in combo else STRUCTURES, 0)
        )
        counts[SINGLE if len(row["subtasks"]) == 1 else row["structure"]] += 1
    return {k: table[k] for k in sorted(table, key=lambda c: (c.count("+"), c))}


def style_coverage(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Rows per request style, every style listed (0 when unused); rows without a style (an
    older dataset) are not counted."""
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        if row.get("style"):
            counts[row["style"]] += 1
    return {
        **{s: counts.get(s, 0) for s in STYLES},
        **{s: n for s, n in sorted(counts.items()) if s not in STYLES},
    }


def style_coverage_table(cov: Mapping[str, int]) -> str:
    """Rows per request style as a Markdown table, in the taxonomy's order, with shares."""
    total = sum(cov.values()) or 1
    lines = ["| style | rows | share |", "|---|---:|---:|"]
    lines += [f"| {s} | {n} | {n / total:.1%} |" for s, n in cov.items()]
    lines.append(f"| **total** | {sum(cov.values())} | |")
    return "\n".join(lines)


def tool_coverage_table(cov: Mapping[str, int]) -> str:
    """Rows per tool as a Markdown table, most used first (unused tools show 0)."""
    lines = ["| tool | rows |", "|---|---:|"]
    lines += [f"| `{t}` | {n} |" for t, n in sorted(cov.items(), key=lambda kv: (-kv[1], kv[0]))]
    covered = sum(1 for n in cov.values() if n)
    lines.append(f"| **tools covered** | {covered} / {len(cov)} |")
    return "\n".join(lines)


def coverage_table(cov: dict[str, dict[str, int]]) -> str:
    """A Markdown table (also readable in a terminal). The '1 step' column (one-step plans)
    shows only when some row has one; a combination of several modalities has no one-step
    plans ('–')."""
    cols = COVERAGE_COLUMNS if any(counts.get(SINGLE) for counts in cov.values()) else STRUCTURES
    names = {SINGLE: "1 step"}
    head = "| modalities | " + " | ".join(names.get(c, c) for c in cols) + " | total |"
    sep = "|---|" + "---:|" * (len(cols) + 1)
    lines = [head, sep]
    totals = dict.fromkeys(cols, 0)
    for combo, counts in cov.items():
        for c in cols:
            totals[c] += counts.get(c, 0)
        cells = " | ".join("–" if c == SINGLE and "+" in combo else str(counts.get(c, 0)) for c in cols)
        lines.append(f"| {combo} | {cells} | {sum(counts.values())} |")
    lines.append("| **total** | " + " | ".join(str(totals[c]) for c in cols) + f" | {sum(totals.values())} |")
    return "\n".join(lines)
