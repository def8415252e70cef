"""Split `--n` rows across the 45 taxonomy cells: seeded, weighted, house-monotone quotas.

Weights (from `build-dataset --quotas FILE`) map keys to relative weights. A key is one of

* a cell, ``"audio+text/chain"`` (modality order does not matter: ``"text+audio/chain"``),
* a combination, ``"audio+text"`` (all three structures of it; ``"audio"`` is a combination too),
* a structure, ``"dag"`` (that structure in every combination),
* ``"*"``, the default for cells no other key reaches (1 when absent).

A cell's weight is its cell key when given; otherwise, when its combination and/or structure
key is given, the product of those two (a missing factor counts 1); otherwise ``"*"``.
So ``{"*": 0, "video": 1}`` builds only video-only rows, and ``{"dag": 2, "audio+video": 3}``
makes audio+video/dag six times as frequent as an unweighted cell. Weight 0 excludes a cell.

Apportionment is the Sainte-Laguë/Webster divisor method run as sequential allocation:
row after row goes to the cell with the highest priority ``weight / (quota + 0.5)``, ties to
the cell that comes first in an order shuffled by ``seed``. With equal weights that is a
seeded round-robin (quotas differ by at most one, and the remainders land on different cells
for different seeds). Unlike largest-remainder (Hamilton) it is *house-monotone*: quotas for a
larger n are cell-wise ≥ those for a smaller one, so a larger ``--n`` only extends a build.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taskdecomp.config import load_yaml
from taskdecomp.errors import ConfigError
from taskdecomp.schema import MODALITIES, STRUCTURES
from taskdecomp.taxonomy import CELLS, Cell

__all__ = ["plan_quotas", "cell_weights", "load_weights"]


def _combination(key: str, raw: str) -> tuple[str, ...]:
    parts = [p.strip() for p in key.split("+")]
    if not all(p in MODALITIES for p in parts) or len(set(parts)) != len(parts):
        raise ConfigError(
            f"unknown weights key {raw!r}: modalities are {', '.join(MODALITIES)} joined by '+', "
            f"structures are {', '.join(STRUCTURES)}, e.g. 'audio+text/chain', 'audio+text', 'dag' or '*'"
        )
    return tuple(sorted(parts))


def _weight(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"weight for {key!r} must be a number >= 0, got {value!r}")
    w = float(value)
    if not math.isfinite(w) or w < 0:
        raise ConfigError(f"weight for {key!r} must be a finite number >= 0, got {value!r}")
    return w


def cell_weights(weights: Mapping[str, Any] | None = None) -> dict[Cell, float]:
    """Resolve a weights mapping (see the module doc) to one weight per cell."""
    default = 1.0
    by_cell: dict[Cell, float] = {}
    by_comb: dict[tuple[str, ...], float] = {}
    by_struct: dict[str, float] = {}
    for raw, value in (weights or {}).items():
        key = str(raw).strip().lower()
        w = _weight(value, str(raw))
        if key == "*":
            default = w
        elif key in STRUCTURES:
            by_struct[key] = w
        elif "/" in key:
            mods, _, structure = key.partition("/")
            if structure.strip() not in STRUCTURES:
                raise ConfigError(
                    f"unknown weights key {raw!r}: the structure after '/' must be one of {', '.join(STRUCTURES)}"
                )
            by_cell[Cell(_combination(mods, str(raw)), structure.strip())] = w
        else:
            by_comb[_combination(key, str(raw))] = w
    out = {}
    for cell in CELLS:
        if cell in by_cell:
            out[cell] = by_cell[cell]
        elif cell.modalities in by_comb or cell.structure in by_struct:
            out[cell] = by_comb.get(cell.modalities, 1.0) * by_struct.get(cell.structure, 1.0)
        else:
            out[cell] = default
    return out


def plan_quotas(n: int, weights: Mapping[str, Any] | None = None, seed: int = 0) -> dict[Cell, int]:
    """Rows per cell for all 45 cells (excluded cells map to 0); the values sum to `n`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"the number of rows must be a whole number >= 0, got {n!r}")
    w = cell_weights(weights)
    live = [c for c in CELLS if w[c] > 0]
    quotas = dict.fromkeys(CELLS, 0)
    if n == 0:
        return quotas
    if not live:
        raise ConfigError("the weights exclude every taxonomy cell; give at least one cell a weight > 0")
    order = list(CELLS)
    random.Random(seed).shuffle(order)
    rank = {c: i for i, c in enumerate(order)}

    def priority(c: Cell, q: int) -> float:
        return w[c] / (q + 0.5)

    # Jump start: every seat with priority strictly above `div` is among the first n seats
    # handed out (there are at most n of them), so grant those at once and hand out the few
    # remaining seats one by one. Same result as the plain sequential loop, O(cells) + O(45 log 45).
    total = sum(w[c] for c in live)
    div = total / max(n - len(live) / 2, 1e-9)
    for c in live:
        q = max(0, math.ceil(w[c] / div - 0.5) - 1)
        while priority(c, q) > div:  # count seats q' < q+1 with priority > div, exactly
            q += 1
        while q > 0 and not priority(c, q - 1) > div:
            q -= 1
        quotas[c] = q
    given = sum(quotas.values())
    if given > n:  # cannot happen with the bound above; keep the invariant explicit
        raise AssertionError("quota jump start overshot")
    heap = [(-priority(c, quotas[c]), rank[c], c) for c in live]
    heapq.heapify(heap)
    for _ in range(n - given):
        _, r, c = heapq.heappop(heap)
        quotas[c] += 1
        heapq.heappush(heap, (-priority(c, quotas[c]), r, c))
    return quotas


def load_weights(path: str | Path) -> dict[str, float]:
    """Read weights from YAML: ``{weights: {key: w, ...}}`` or a flat ``{key: w}`` mapping.
    Keys and values are checked (unknown key / negative weight -> ConfigError)."""
    data = load_yaml(path, what="quotas file", flag="--quotas")
    # load_yaml turns '-' into '_' in top-level keys; weight keys never contain either.
    if set(data) == {"weights"}:
        data = data["weights"] or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: 'weights' must be a mapping of key: weight")
    weights = {str(k): v for k, v in data.items()}
    cell_weights(weights)  # validate now, with the file's keys in the message
    return {k: float(v) for k, v in weights.items()}
