"""Evaluation of adapters: batched generation, the `task_decomposition` metric, `evaluate-adapter`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["METRIC_PATH", "load_metric"]

#: The metric module's file: `evaluate.load(str(METRIC_PATH))` works offline.
METRIC_PATH = Path(__file__).with_name("task_decomposition.py")


def load_metric(**kwargs: Any) -> Any:
    """The `task_decomposition` metric through `evaluate.load` (local file, no Hub access)."""
    import evaluate

    return evaluate.load(str(METRIC_PATH), **kwargs)
