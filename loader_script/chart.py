"""The coverage chart committed beside the data: modality combination × plan structure.

A heatmap (rows = combinations in the coverage table's order, columns = structures) with the
count in every cell, so empty or thin cells stand out. Rendered with matplotlib's Agg backend
(no display needed) and written atomically: a temp file in the same folder, then a rename.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: CI, servers, no DISPLAY

import matplotlib.pyplot as plt  # noqa: E402

from taskdecomp.files import atomic_path  # noqa: E402
from taskdecomp.schema import STRUCTURES  # noqa: E402

__all__ = ["render_coverage_chart"]


def render_coverage_chart(cov: dict[str, dict[str, int]], path: Path, *, title: str = "") -> Path:
    """Write a PNG heatmap of `cov` ({combo: {structure: count}}) to `path`; returns `path`."""
    combos = list(cov) or ["(no rows)"]
    grid = [[cov.get(c, {}).get(s, 0) for s in STRUCTURES] for c in combos]
    peak = max((v for row in grid for v in row), default=0) or 1

    fig, ax = plt.subplots(figsize=(5.2, 0.38 * len(combos) + 1.6), dpi=110)
    try:
        im = ax.imshow(grid, cmap="Blues", vmin=0, vmax=peak, aspect="auto")
        ax.set_xticks(range(len(STRUCTURES)), labels=list(STRUCTURES))
        ax.set_yticks(range(len(combos)), labels=combos)
        ax.tick_params(axis="x", top=True, bottom=False, labeltop=True, labelbottom=False)
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                # dark text on light cells, light text on dark ones
                colour = "white" if value > peak * 0.6 else "black"
                ax.text(j, i, str(value), ha="center", va="center", color=colour, fontsize=8)
        fig.colorbar(im, ax=ax, shrink=0.8, label="rows")
        ax.set_title(title or f"Coverage: {sum(map(sum, grid))} rows", fontsize=10, pad=24)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
