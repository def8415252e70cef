"""`evaluate-adapter`: base vs base + adapter on a dataset split, as a table and a JSON file."""

from __future__ import annotations

from collections.abc import Sequence

from taskdecomp.cli import entrypoint
from taskdecomp.config import parse_config
from taskdecomp.reporter import Reporter

__all__ = ["main"]


@entrypoint("evaluate-adapter")
def main(argv: Sequence[str] | None = None) -> int:
    from taskdecomp.evaluation.evaluate_adapter import EvalConfig, evaluate_adapter

    cfg = parse_config(
        EvalConfig,
        argv,
        prog="evaluate-adapter",
        description="Generate with the base model and base + adapter (greedy, batched) and score both.",
    )
    evaluate_adapter(cfg, Reporter(quiet=cfg.quiet))
    return 0
