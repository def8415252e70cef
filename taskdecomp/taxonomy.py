"""The taxonomy the dataset covers: modality combinations × plan structures, request styles.

A *cell* is one (combination of modalities, structure) pair: 15 non-empty combinations of
text/image/audio/video × chain/parallel/dag = 45 cells of plans with 2–8 steps. Beside them
sit 4 *single-step* cells, one per modality (`text/single`, ...): a request a single step
answers, whose plan is a one-step chain, so that simple requests get simple plans. Operations
(generation, analysis, transformation) and step counts vary inside a cell.

A *request style* is how the request is worded, a second axis that every row carries in its
`style` field: the plain imperative, a first-person request naming the user's files or a URL
(the names reappear in the steps that use them), a question, a terse command, a brief of
several sentences with constraints, or a request whose modality must be inferred ("make my
vlog quieter"). `assign_styles` spreads the styles over the rows of a request by their
weights; `infer_style` reads the style of a request that was written without one (imported
rows, tool-graph rows).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from taskdecomp.schema import FILE_OR_URL, MODALITIES, OPERATIONS, STRUCTURES, STYLES, infer_style

__all__ = [
    "Cell",
    "COMBINATIONS",
    "COMBINATION_KEYS",
    "CELLS",
    "SINGLE",
    "SINGLE_CELLS",
    "QUOTA_CELLS",
    "MIN_STEPS",
    "MAX_STEPS",
    "OPERATIONS",
    "STRUCTURES",
    "STYLES",
    "STYLE_DESCRIPTIONS",
    "DEFAULT_SINGLE_STEP",
    "assign_styles",
    "infer_style",
    "FILE_OR_URL",
]

# A taxonomy plan has 1 step (a single-step cell) to 8; a cell of the 45 needs at least 2.
MIN_STEPS, MAX_STEPS = 1, 8
_MULTI_MIN_STEPS = 2
SINGLE = "single"  # the key suffix of a single-step cell: "text/single"
#: the share of rows a build gives the single-step cells unless the quotas file says otherwise
DEFAULT_SINGLE_STEP = 0.15

# Sorted like a row's `modalities` field.
COMBINATIONS: tuple[tuple[str, ...], ...] = tuple(
    tuple(sorted(c)) for r in range(1, len(MODALITIES) + 1) for c in itertools.combinations(MODALITIES, r)
)

# "audio+text": how a combination is written in weights files and the coverage table.
COMBINATION_KEYS: tuple[str, ...] = tuple("+".join(c) for c in COMBINATIONS)

STYLE_DESCRIPTIONS: dict[str, str] = {
    "imperative": "a plain imperative request: 'Create a poster and a short podcast episode about ...'",
    "first-person": "the user talks about their own files or a URL, named in the request and again in the "
    "steps that use them: 'I have interview.wav and cover.jpg ...'",
    "question": "the request is a question ending with '?': 'Can you tell me what is said in this clip and ...?'",
    "terse": "a short command without frills, often lower-case: 'bake sale: poster + 30s reel'",
    "brief": "several sentences: who asks, what they need and the constraints it must meet",
    "implicit": "the modality of at least one deliverable is not named and must be inferred: "
    "'make my vlog quieter', 'something people can listen to on the bus'",
}


@dataclass(frozen=True, order=True)
class Cell:
    """A quota cell. `single`: a single-step cell (a one-step chain of its one modality).
    `styles`: the build's request-style weights as (style, weight) pairs, empty for flat;
    they travel with the cell so a backend can word each row of a request by them."""

    modalities: tuple[str, ...]
    structure: str
    single: bool = False
    styles: tuple[tuple[str, float], ...] = ()

    @property
    def key(self) -> str:
        """'audio+text/chain', 'text/single': used in quotas, journals and the coverage table."""
        return "+".join(self.modalities) + "/" + (SINGLE if self.single else self.structure)

    @classmethod
    def from_key(cls, key: str) -> Cell:
        mods, structure = key.split("/")
        if structure == SINGLE:
            return cls(tuple(sorted(mods.split("+"))), "chain", single=True)
        return cls(tuple(sorted(mods.split("+"))), structure)

    @property
    def min_steps(self) -> int:
        # every modality needs a step; parallel needs two branches (+ optional join); a dag
        # that is neither chain nor parallel needs at least 4 steps; a single-step cell one.
        if self.single:
            return 1
        need = len(self.modalities)
        if self.structure == "parallel":
            need = max(need, 2)
        if self.structure == "dag":
            need = max(need, 4)
        return max(_MULTI_MIN_STEPS, need)

    @property
    def max_steps(self) -> int:
        return 1 if self.single else MAX_STEPS

    @property
    def style_weights(self) -> dict[str, float]:
        """Weight per style (every style listed; flat when the build gave none)."""
        given = dict(self.styles)
        return {s: float(given.get(s, 1.0 if not given else 0.0)) for s in STYLES}

    def with_styles(self, weights: Mapping[str, float] | None) -> Cell:
        """This cell carrying `weights` (None or flat: none, so it equals the plain cell)."""
        if not weights or len({float(weights.get(s, 1.0)) for s in STYLES}) == 1:
            return Cell(self.modalities, self.structure, self.single)
        return Cell(
            self.modalities,
            self.structure,
            self.single,
            tuple((s, float(weights.get(s, 0.0))) for s in STYLES),
        )


CELLS: tuple[Cell, ...] = tuple(Cell(c, s) for c in COMBINATIONS for s in STRUCTURES)
SINGLE_CELLS: tuple[Cell, ...] = tuple(Cell((m,), "chain", single=True) for m in MODALITIES)
#: every cell a taxonomy build splits `--n` over
QUOTA_CELLS: tuple[Cell, ...] = CELLS + SINGLE_CELLS


def assign_styles(n: int, seed: int, weights: Mapping[str, float] | None = None) -> list[str]:
    """The styles of the `n` rows of one request: a stretch of the Sainte-Laguë sequence over
    the styles' weights (flat: a plain rotation), starting at a place set by `seed`. Every
    request sees the styles in proportion, and over many requests each style gets its share
    to within a row or two per request; deterministic for (n, seed, weights)."""
    w = {s: float((weights or {}).get(s, 1.0)) for s in STYLES}  # a missing style weighs 1
    live = [s for s in STYLES if w[s] > 0]
    if not live:
        raise ValueError("the style weights exclude every style")
    given = dict.fromkeys(live, 0)
    out: list[str] = []
    start = seed % (7 * len(live))
    for i in range(start + n):
        best = max(live, key=lambda s: (w[s] / (given[s] + 0.5), -STYLES.index(s)))
        given[best] += 1
        if i >= start:
            out.append(best)
    return out
