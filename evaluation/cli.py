"""`evaluate-adapter`: base vs base + adapter on a dataset split, as a table and a JSON file."""

from __future__ import annotations

from collections.abc import Sequence

from taskdecomp.cli import entrypoint
from taskdecomp.config import parse_config
from taskdecomp.reporter import Reporter

__all__ = ["main"]


def _quiet_library_bars() -> None:
    # Our own progress goes through the Reporter; the libraries' bars would clutter stderr.
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()


@entrypoint("evaluate-adapter")
def main(argv: Sequence[str] | None = None) -> int:
    from taskdecomp.evaluation.evaluate_adapter import EvalConfig, evaluate_adapter

    cfg = parse_config(
        EvalConfig,
        argv,
        prog="evaluate-adapter",
        description="Generate with the base model and base + adapter (greedy, batched) and score both.",
    )
    _quiet_library_bars()
    evaluate_adapter(cfg, Reporter(quiet=cfg.quiet))
    return 0
