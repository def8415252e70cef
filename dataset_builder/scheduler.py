"""The build's scheduler: which request to send next, and what to keep of each answer.

It is deterministic: requests are issued round-robin over the cells that still need rows,
each with a seed and an id derived from (build, cell, index), and results are *committed*
(validated, de-duplicated, accepted) strictly in issue order, whatever order they arrive in.
A re-run replays journaled results through the same scheduler, so it reaches the same state.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taskdecomp.errors import BackendError
from taskdecomp.schema import make_row
from taskdecomp.taxonomy import CELLS, Cell
from taskdecomp.validation import validate_row

from . import toolgraph
from .backend import GenerationRequest, GenerationResult
from .build_config import BuildConfig
from .dedup import Deduplicator
from .sampler import load_weights, plan_quotas

__all__ = ["Scheduler", "new_scheduler", "build_quotas", "digest"]


def digest(*parts: Any) -> str:
    """A stable hex digest of JSON-able parts: request ids, per-request seeds, build ids."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass
class Scheduler:
    quotas: dict[Cell, int]
    rows_per_call: int
    seed: int
    build_id: str
    source: str
    dedup: Deduplicator
    cells: list[Cell] = field(init=False)
    accepted: dict[Cell, list[dict[str, Any]]] = field(init=False)
    inflight: dict[Cell, int] = field(init=False)
    k_next: dict[Cell, int] = field(init=False)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    duplicates: collections.Counter[str] = field(default_factory=collections.Counter)
    surplus: int = 0
    _rr: int = 0
    # the row check: the taxonomy's by default; a tool-graph build passes its own
    validate: Callable[[dict[str, Any], Cell], list[str]] = validate_row

    def __post_init__(self) -> None:
        self.cells = [c for c in CELLS if self.quotas.get(c, 0) > 0]
        self.cells += [c for c, q in self.quotas.items() if q > 0 and c not in CELLS]  # tool cells
        self.accepted = {c: [] for c in self.cells}
        self.inflight = dict.fromkeys(self.cells, 0)
        self.k_next = dict.fromkeys(self.cells, 0)
        # a cell that keeps failing must not loop forever: allow 10x its planned requests
        self.max_k = {c: 10 * math.ceil(self.quotas[c] / self.rows_per_call) + 10 for c in self.cells}

    def deficit(self, cell: Cell) -> int:
        return self.quotas[cell] - len(self.accepted[cell]) - self.inflight[cell] * self.rows_per_call

    @property
    def n_accepted(self) -> int:
        return sum(len(v) for v in self.accepted.values())

    def rows(self) -> list[dict[str, Any]]:
        """The accepted rows, cell by cell in taxonomy order (what the build writes)."""
        return [row for cell in self.cells for row in self.accepted[cell]]

    def done(self) -> bool:
        return all(len(self.accepted[c]) >= self.quotas[c] for c in self.cells)

    def next_request(self) -> tuple[GenerationRequest, int] | None:
        for i in range(len(self.cells)):
            cell = self.cells[(self._rr + i) % len(self.cells)]
            if self.deficit(cell) <= 0:
                continue
            k = self.k_next[cell]
            if k >= self.max_k[cell]:
                raise BackendError(
                    f"cell {cell.key}: only {len(self.accepted[cell])}/{self.quotas[cell]} rows after {k} requests "
                    f"(see rejects.jsonl); the backend cannot fill it: lower its weight with --quotas"
                )
            self._rr = (self._rr + i + 1) % len(self.cells)
            self.k_next[cell] = k + 1
            self.inflight[cell] += 1
            seed = int(digest(self.seed, cell.key, k)[:8], 16)
            avoid = tuple(r["instruction"] for r in self.accepted[cell][-5:])
            rid = digest(self.build_id, cell.key, k)[:24]
            return GenerationRequest(rid, cell, self.rows_per_call, seed, avoid), k
        return None

    def release(self, request: GenerationRequest) -> None:
        """Take back a request `next_request` issued that will not be sent (over budget): its
        cell counts it as in flight no more, so the deficit is right again."""
        self.inflight[request.cell] -= 1

    def commit(self, request: GenerationRequest, result: GenerationResult) -> int:
        """Validate, de-duplicate and accept one result's candidates; returns rows accepted."""
        cell = request.cell
        self.inflight[cell] -= 1
        accepted = 0
        for cand in result.candidates:
            if not isinstance(cand, dict):
                self.rejects.append(
                    {"cell": cell.key, "request": request.request_id, "reasons": ["not-an-object"]}
                )
                continue
            row = make_row(cand, self.source)
            reasons = self.validate(row, cell)
            if reasons:
                self.rejects.append(
                    {"cell": cell.key, "request": request.request_id, "reasons": reasons, "row": row}
                )
                continue
            dup = self.dedup.check_and_add(row["id"], row["instruction"])
            if dup is not None:
                self.duplicates[dup.kind] += 1
                continue
            if len(self.accepted[cell]) < self.quotas[cell]:
                self.accepted[cell].append(row)
                accepted += 1
            else:
                self.surplus += 1  # kept in the journal: a larger --n will use it first
        return accepted


def new_scheduler(cfg: BuildConfig, quotas: dict[Cell, int], build_id: str, source: str) -> Scheduler:
    sched = Scheduler(
        quotas, cfg.rows_per_call, cfg.seed, build_id, source, Deduplicator(cfg.dedup_threshold)
    )
    if cfg.tools:
        sched.validate = toolgraph.tool_validator(cfg)
    return sched


def build_quotas(cfg: BuildConfig, kind: str) -> tuple[dict[str, float] | None, dict[Cell, int]]:
    """(the weights read from --quotas, rows per cell): taxonomy cells, or with --tools the
    tool cells (structure x size), after checking the catalogue can type every one of them."""
    if cfg.tools:
        return toolgraph.tool_plan(cfg, kind)
    weights = load_weights(cfg.quotas) if cfg.quotas else None
    return weights, plan_quotas(cfg.n, weights, cfg.seed)
