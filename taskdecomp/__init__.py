"""taskdecomp: multi-modal task decomposition, from dataset to served adapter.

The user-facing folders (`dataset_builder/`, `hub/`, `trainer/`, ...) are installed as
sub-packages of this one (`taskdecomp.dataset_builder`, `taskdecomp.hub`, ...).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "decompose"]


def decompose(task: str, **kwargs: Any) -> Any:
    """Decompose one task into a typed plan (see `taskdecomp.planner.decompose`)."""
    from taskdecomp.planner import decompose as _decompose

    return _decompose(task, **kwargs)
