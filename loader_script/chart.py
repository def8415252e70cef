"""The coverage chart committed beside the data: modality combination × plan structure.

A heatmap (rows = combinations in the coverage table's order, columns = structures) with the
count in every cell, so empty or thin cells stand out. A tool-graph dataset (`build-dataset
--tools`) gets a second panel below it in the same PNG: rows per catalogue tool as horizontal
bars, unused tools marked in red. Rendered with matplotlib's Agg backend (no display needed)
and written atomically: a temp file in the same folder, then a rename.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: CI, servers, no DISPLAY

import matplotlib.pyplot as plt  # noqa: E402

from taskdecomp.files import atomic_path  # noqa: E402
from taskdecomp.schema import STRUCTURES  # noqa: E402
from taskdecomp.stats import COVERAGE_COLUMNS, SINGLE  # noqa: E402

__all__ = ["render_coverage_chart"]


def render_coverage_chart(
    cov: dict[str, dict[str, int]], path: Path, *, title: str = "", tools: Mapping[str, int] | None = None
) -> Path:
    """Write a PNG heatmap of `cov` ({combo: {structure: count}}) to `path`, with a per-tool
    bar panel below it when `tools` ({tool id: rows}) is given; returns `path`."""
    combos = list(cov) or ["(no rows)"]
    # one-step plans get a column of their own when there are any ("1 step")
    cols = COVERAGE_COLUMNS if any(v.get(SINGLE) for v in cov.values()) else STRUCTURES
    grid = [[cov.get(c, {}).get(s, 0) for s in cols] for c in combos]
    peak = max((v for row in grid for v in row), default=0) or 1

    heat_h = 0.38 * len(combos) + 1.6
    if tools:
        bars_h = 0.2 * len(tools) + 1.2
        fig, (ax, tax) = plt.subplots(
            2, 1, figsize=(5.2, heat_h + bars_h), dpi=110, gridspec_kw={"height_ratios": [heat_h, bars_h]}
        )
    else:
        fig, ax = plt.subplots(figsize=(5.2, heat_h), dpi=110)
    try:
        im = ax.imshow(grid, cmap="Blues", vmin=0, vmax=peak, aspect="auto")
        ax.set_xticks(range(len(cols)), labels=["1 step" if c == SINGLE else c for c in cols])
        ax.set_yticks(range(len(combos)), labels=combos)
        ax.tick_params(axis="x", top=True, bottom=False, labeltop=True, labelbottom=False)
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                # dark text on light cells, light text on dark ones
                colour = "white" if value > peak * 0.6 else "black"
                ax.text(j, i, str(value), ha="center", va="center", color=colour, fontsize=8)
        fig.colorbar(im, ax=ax, shrink=0.8, label="rows")
        ax.set_title(title or f"Coverage: {sum(map(sum, grid))} rows", fontsize=10, pad=24)
        if tools:
            _tool_panel(tax, tools)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _tool_panel(ax: plt.Axes, tools: Mapping[str, int]) -> None:
    """Rows per tool, most used first; a tool no row uses is a red 0."""
    items = sorted(tools.items(), key=lambda kv: (-kv[1], kv[0]))
    names, counts = [k for k, _ in items], [v for _, v in items]
    ax.barh(range(len(items)), counts, color=["#2b6cb0" if v else "#c53030" for v in counts])
    ax.set_yticks(range(len(items)), labels=names, fontsize=7)
    ax.invert_yaxis()
    for i, v in enumerate(counts):
        ax.text(v, i, f" {v}", va="center", fontsize=6, color="black" if v else "#c53030")
    covered = sum(1 for v in counts if v)
    ax.set_xlabel("rows using the tool", fontsize=8)
    ax.set_title(f"Tool coverage: {covered} / {len(items)} tools", fontsize=10)
