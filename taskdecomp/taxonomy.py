"""The taxonomy the dataset covers: modality combinations × plan structures.

A *cell* is one (combination of modalities, structure) pair: 15 non-empty combinations of
text/image/audio/video × chain/parallel/dag = 45 cells. Operations (generation, analysis,
transformation) and step counts (2–8) vary inside a cell.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from taskdecomp.schema import MODALITIES, OPERATIONS, STRUCTURES

__all__ = [
    "Cell",
    "COMBINATIONS",
    "COMBINATION_KEYS",
    "CELLS",
    "MIN_STEPS",
    "MAX_STEPS",
    "OPERATIONS",
    "STRUCTURES",
]

MIN_STEPS, MAX_STEPS = 2, 8

# Sorted like a row's `modalities` field.
COMBINATIONS: tuple[tuple[str, ...], ...] = tuple(
    tuple(sorted(c)) for r in range(1, len(MODALITIES) + 1) for c in itertools.combinations(MODALITIES, r)
)

# "audio+text": how a combination is written in weights files and the coverage table.
COMBINATION_KEYS: tuple[str, ...] = tuple("+".join(c) for c in COMBINATIONS)


@dataclass(frozen=True, order=True)
class Cell:
    modalities: tuple[str, ...]
    structure: str

    @property
    def key(self) -> str:
        """'audio+text/chain': used in quotas, journals and the coverage table."""
        return "+".join(self.modalities) + "/" + self.structure

    @classmethod
    def from_key(cls, key: str) -> Cell:
        mods, structure = key.split("/")
        return cls(tuple(sorted(mods.split("+"))), structure)

    @property
    def min_steps(self) -> int:
        # every modality needs a step; parallel needs two branches (+ optional join); a dag
        # that is neither chain nor parallel needs at least 3 steps.
        need = len(self.modalities)
        if self.structure == "parallel":
            need = max(need, 2)
        if self.structure == "dag":
            need = max(need, 4)
        return max(MIN_STEPS, need)


CELLS: tuple[Cell, ...] = tuple(Cell(c, s) for c in COMBINATIONS for s in STRUCTURES)
