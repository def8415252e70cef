"""`build-dataset --dry-run`: what a build would send and cost, with nothing sent.

The requests are the ones the scheduler would issue (assuming no rejects); their tokens are
what the backend itself estimates for one attempt (`Backend.estimate`), priced with the
price table the build would use.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

from taskdecomp.reporter import Reporter
from taskdecomp.taxonomy import Cell

from .backend import GenerationRequest, Usage
from .backends import AUTO_OFFLINE, backend_kind, check_options, make_backend, source_for
from .build_config import BuildConfig
from .scheduler import build_quotas, new_scheduler

__all__ = ["BuildEstimate", "estimate"]


@dataclass(frozen=True)
class BuildEstimate:
    backend: str
    source: str
    rows: int
    cells: int
    requests: int
    rows_per_call: int
    prompt_tokens: int
    completion_tokens: int
    estimated_cost_usd: float
    batch: bool
    price_known: bool  # False: the model is not in the price table, so the cost reads 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate(cfg: BuildConfig, reporter: Reporter | None = None) -> BuildEstimate:
    """The dry run of `cfg`: every check a real build makes first, then the estimate."""
    reporter = reporter or Reporter.silent()
    kind = backend_kind(cfg)
    check_options(cfg, kind)
    _, quotas = build_quotas(cfg, kind)
    requests = [r for r, _ in _issued(cfg, kind, quotas)]
    usage, cost, known = Usage(), 0.0, True
    if kind == "openai":
        from .pricing import cost as price_cost
        from .pricing import load_prices, price_for

        price = price_for(cfg.model, load_prices(cfg.prices))
        known = price.known
        # the backend warns (once, through the reporter) when the model has no price
        backend = make_backend(kind, cfg, reporter)
        try:
            for request in requests:
                usage = usage + backend.estimate(request)
        finally:
            asyncio.run(backend.aclose())
        cost = price_cost(usage, price, batch=cfg.batch)
    if cfg.backend == "auto" and kind == "offline":
        reporter.info(AUTO_OFFLINE)  # only now: every check above could still have failed
    return BuildEstimate(
        backend=kind,
        source=source_for(kind, cfg),
        rows=cfg.n,
        cells=sum(1 for q in quotas.values() if q),
        requests=len(requests),
        rows_per_call=cfg.rows_per_call,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        estimated_cost_usd=round(cost, 4),
        batch=cfg.batch,
        price_known=known,
    )


def _issued(cfg: BuildConfig, kind: str, quotas: dict[Cell, int]) -> list[tuple[GenerationRequest, int]]:
    """The requests a build would issue, in order, if every row came back valid."""
    sched = new_scheduler(cfg, quotas, "dry-run", source_for(kind, cfg))
    out = []
    while (issued := sched.next_request()) is not None:
        out.append(issued)
    return out
