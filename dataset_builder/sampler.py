"""Split `--n` rows across the taxonomy's cells: seeded, weighted, house-monotone quotas.

The cells are the 45 of plans with 2–8 steps (combination × structure) and the 4 single-step
cells (``text/single``, ...: one-step plans). Weights (from `build-dataset --quotas FILE`) map
keys to relative weights. A key is one of

* a cell, ``"audio+text/chain"`` (modality order does not matter: ``"text+audio/chain"``),
* a combination, ``"audio+text"`` (all three structures of it; ``"audio"`` is a combination too),
* a structure, ``"dag"`` (that structure in every combination),
* ``"*"``, the default for cells no other key reaches (1 when absent).

A cell's weight is its cell key when given; otherwise, when its combination and/or structure
key is given, the product of those two (a missing factor counts 1); otherwise ``"*"``.
So ``{"*": 0, "video": 1}`` builds only video-only rows, and ``{"dag": 2, "audio+video": 3}``
makes audio+video/dag six times as frequent as an unweighted cell. Weight 0 excludes a cell.

Two more keys shape what the cells hold (a quotas file gives them as sections, see
`load_weights`):

* ``"single_step"``: the share of all rows that are single-step requests with a one-step plan
  (default 0.15; 0 builds none, 1 only those). It is split over the single-step cells like the
  ``m/chain`` cells' weights (so ``{"*": 0, "video": 1}`` keeps only video/single of the four);
  a ``"text/single"`` key sets one of them instead (0 drops it).
* ``"style:NAME"`` (or a ``"styles"`` mapping of NAME: weight): the request styles'
  weights (`taxonomy.STYLES`; a missing style weighs 1, or ``"style:*"``). Every cell carries
  them (`Cell.styles`), and a backend words the rows of each request by them
  (`taxonomy.assign_styles`), so coverage stays flat over the cells *and* the styles.

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
from taskdecomp.taxonomy import CELLS, DEFAULT_SINGLE_STEP, QUOTA_CELLS, SINGLE, STYLES, Cell

__all__ = ["plan_quotas", "cell_weights", "load_weights", "style_weights", "single_step_share"]

STYLE_PREFIX = "style:"
SINGLE_STEP = "single_step"


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


def _is_extra(key: str) -> bool:
    """A key that is no cell weight: the styles and the single-step share."""
    k = key.strip().lower().replace("-", "_")
    return k.startswith(STYLE_PREFIX) or k in (SINGLE_STEP, "styles")


def style_weights(weights: Mapping[str, Any] | None = None) -> dict[str, float] | None:
    """The styles' weights of a weights mapping (every style listed), None when it gives none
    (flat). Keys ``"style:NAME"`` or a ``"styles": {NAME: w}`` mapping; ``_`` may stand for
    ``-`` (``first_person``); ``"*"`` is the default (1 when absent)."""
    given: dict[str, Any] = {}
    for raw, value in (weights or {}).items():
        key = str(raw).strip().lower()
        if key == "styles":
            if not isinstance(value, Mapping):
                raise ConfigError(f"'styles' must be a mapping of style: weight, got {value!r}")
            given.update({str(k): v for k, v in value.items()})
        elif key.startswith(STYLE_PREFIX):
            given[key[len(STYLE_PREFIX) :]] = value
    if not given:
        return None
    default, out = 1.0, {}
    for raw, value in given.items():
        name = raw.strip().lower().replace("_", "-")
        w = _weight(value, f"style {raw}")
        if name == "*":
            default = w
        elif name in STYLES:
            out[name] = w
        else:
            raise ConfigError(
                f"unknown request style {raw!r} in the quotas' styles: use {', '.join(STYLES)} or '*'"
            )
    resolved = {s: out.get(s, default) for s in STYLES}
    if not any(resolved.values()):
        raise ConfigError("the styles weights exclude every request style; give at least one a weight > 0")
    return resolved


def single_step_share(weights: Mapping[str, Any] | None = None) -> float:
    """The share of rows that are single-step requests (`DEFAULT_SINGLE_STEP` when not given)."""
    for raw, value in (weights or {}).items():
        if str(raw).strip().lower().replace("-", "_") == SINGLE_STEP:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(
                    f"single_step is the share of single-step rows, a number from 0 to 1 (e.g. 0.15), got {value!r}"
                )
            return float(value)
    return DEFAULT_SINGLE_STEP


def cell_weights(weights: Mapping[str, Any] | None = None) -> dict[Cell, float]:
    """Resolve a weights mapping (see the module doc) to one weight per cell, the single-step
    cells included (plain cells: `plan_quotas` attaches the styles)."""
    default = 1.0
    by_cell: dict[Cell, float] = {}
    by_single: dict[str, float] = {}
    by_comb: dict[tuple[str, ...], float] = {}
    by_struct: dict[str, float] = {}
    for raw, value in (weights or {}).items():
        key = str(raw).strip().lower()
        if _is_extra(key):
            continue
        w = _weight(value, str(raw))
        if key == "*":
            default = w
        elif key in STRUCTURES:
            by_struct[key] = w
        elif "/" in key:
            mods, _, structure = key.partition("/")
            structure = structure.strip()
            if structure == SINGLE:
                combo = _combination(mods, str(raw))
                if len(combo) != 1:
                    raise ConfigError(
                        f"weights key {raw!r}: a single-step cell has one modality, e.g. 'audio/single'"
                    )
                by_single[combo[0]] = w
                continue
            if structure not in STRUCTURES:
                raise ConfigError(
                    f"unknown weights key {raw!r}: the structure after '/' must be one of "
                    f"{', '.join(STRUCTURES)} (or '{SINGLE}' after one modality)"
                )
            by_cell[Cell(_combination(mods, str(raw)), structure)] = w
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
    # the single-step cells share `single_step` of all weight, split like the m/chain cells
    share = single_step_share(weights)
    rel = {m: by_single.get(m, out[Cell((m,), "chain")]) for m in MODALITIES}
    multi, rel_total = sum(out.values()), sum(rel.values())
    for m in MODALITIES:
        single = Cell((m,), "chain", single=True)
        if share <= 0 or rel_total <= 0:
            out[single] = 0.0
        elif share >= 1:
            out[single] = rel[m]
        else:
            out[single] = share / (1 - share) * multi * rel[m] / rel_total
    if share >= 1:
        out.update(dict.fromkeys(CELLS, 0.0))
    return out


def plan_quotas(n: int, weights: Mapping[str, Any] | None = None, seed: int = 0) -> dict[Cell, int]:
    """Rows per cell for all 49 cells (45 + 4 single-step; excluded cells map to 0); the values
    sum to `n`. The cells carry the weights' request styles (`Cell.styles`; plain cells when
    the styles are flat, so then the keys are `taxonomy.QUOTA_CELLS` themselves)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"the number of rows must be a whole number >= 0, got {n!r}")
    w = cell_weights(weights)
    styles = style_weights(weights)
    live = [c for c in QUOTA_CELLS if w[c] > 0]
    quotas = dict.fromkeys(QUOTA_CELLS, 0)
    if n == 0:
        return _styled(quotas, styles)
    if not live:
        raise ConfigError("the weights exclude every taxonomy cell; give at least one cell a weight > 0")
    order = list(QUOTA_CELLS)
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
    return _styled(quotas, styles)


def _styled(quotas: dict[Cell, int], styles: dict[str, float] | None) -> dict[Cell, int]:
    return {c.with_styles(styles): q for c, q in quotas.items()} if styles else quotas


def load_weights(path: str | Path) -> dict[str, float]:
    """Read weights from YAML: ``{weights: {key: w, ...}}`` or a flat ``{key: w}`` mapping,
    optionally with a ``styles: {style: w, ...}`` section and a ``single_step: share`` value.
    Keys and values are checked (unknown key / negative weight -> ConfigError). Returns one
    flat mapping (``"style:NAME"`` keys for the styles), which is also what the build's
    fingerprint records."""
    data = load_yaml(path, what="quotas file", flag="--quotas")
    # load_yaml turns '-' into '_' in top-level keys; weight keys never contain either.
    styles = data.pop("styles", None)
    single = data.pop(SINGLE_STEP, None)
    if set(data) == {"weights"}:
        data = data["weights"] or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: 'weights' must be a mapping of key: weight")
    weights: dict[str, Any] = {str(k): v for k, v in data.items() if not _is_extra(str(k))}
    if styles is not None:
        if not isinstance(styles, dict):
            raise ConfigError(f"{path}: 'styles' must be a mapping of style: weight, e.g. question: 2")
        weights.update(
            {STYLE_PREFIX + str(k).strip().lower().replace("_", "-"): v for k, v in styles.items()}
        )
    if single is not None:
        weights[SINGLE_STEP] = single
    try:  # validate now, with the file's keys in the message
        cell_weights(weights)
        style_weights(weights)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return {k: float(v) for k, v in weights.items()}
