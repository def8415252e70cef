"""`build-dataset`: quotas → requests → backend → validate → de-duplicate → journal → output.

The jobs live in their own modules, in data-flow order: `backends` (which backend, made from
the config), `scheduler` (deterministic requests, results committed in issue order),
`drivers` (live or Batch API, journaling, the --max-cost budget), `estimate` (--dry-run) and
`output` (splits, shards, stats, card). This module wires them: every check that can refuse
the command runs before anything is sent or printed. On a re-run the scheduler replays
journaled results instead of calling the backend, so it reaches the same state and only
pays for what is new; a larger `--n` extends the build.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskdecomp import stats as dataset_stats
from taskdecomp.config import to_dict
from taskdecomp.errors import BackendError, ConfigError, Interrupted
from taskdecomp.reporter import Reporter
from taskdecomp.stats import DatasetStats, Dedup, Taxonomy, coverage, coverage_table, tool_coverage_table
from taskdecomp.taxonomy import CELLS, MAX_STEPS, MIN_STEPS
from taskdecomp.validation import reason_code

from . import toolgraph
from .backends import (
    AUTO_OFFLINE,
    backend_kind,
    check_options,
    make_backend,
    prompt_version,
    resolve_backend_kind,
    source_for,
)
from .build_config import BuildConfig
from .drivers import Run
from .journal import JOURNAL_DIR, Journal
from .output import check_out_location, write_dataset
from .scheduler import Scheduler, build_quotas, digest, new_scheduler

__all__ = ["build", "BuildSummary", "resolve_backend_kind"]


@dataclass
class BuildSummary:
    out: Path
    n_rows: int
    stats: DatasetStats
    stopped: str | None = None  # why the build stopped short of --n (budget), else None
    url: str | None = None  # the Hub dataset page after --push


def _fingerprint(cfg: BuildConfig, kind: str, weights: dict[str, float] | None) -> dict[str, Any]:
    """What makes two builds the same build (so a journal can be resumed or extended).
    Not `n` (a larger n extends), not limits/concurrency/output options."""
    return {
        "source": source_for(kind, cfg),
        "base_url": cfg.base_url if kind == "openai" else None,
        "seed": cfg.seed,
        "rows_per_call": cfg.rows_per_call,
        "weights": weights,
        "dedup_threshold": cfg.dedup_threshold,
        "prompt_version": prompt_version(kind, cfg),
        **({"tools": toolgraph.tool_fingerprint(cfg)} if cfg.tools else {}),
    }


# --- running ------------------------------------------------------------------------------
def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / JOURNAL_DIR).is_dir():
        raise ConfigError(
            f"--out {out} is not empty and holds no build journal; choose an empty or new folder"
        )


def build(cfg: BuildConfig, reporter: Reporter | None = None) -> BuildSummary:
    reporter = reporter or Reporter.silent()
    out = Path(cfg.out)
    check_out_location(out)
    _check_out_dir(out)
    kind = backend_kind(cfg)
    check_options(cfg, kind)
    weights, quotas = build_quotas(cfg, kind)
    fingerprint = _fingerprint(cfg, kind, weights)
    journal = Journal(out, fingerprint, fsync_every=1 if kind == "openai" else 256)
    resuming = journal.check_compatible()
    state = journal.load() if resuming else None
    cache = dict(state.results) if state else {}
    if cfg.push:
        from taskdecomp.hub import resolve_token, validate_repo_id

        validate_repo_id(cfg.repo_id or "")
        resolve_token()  # fail before spending anything

    if kind == "openai" and cfg.max_cost is not None:
        from .pricing import load_prices, price_for

        # checked before the backend exists: it warns about an unknown price, and a refused
        # command must print its one error line and nothing else
        if not price_for(cfg.model, load_prices(cfg.prices)).known:
            raise ConfigError(
                f"no price known for model {cfg.model!r}, so --max-cost cannot be enforced: pass --prices FILE"
            )
    backend = make_backend(kind, cfg, reporter)
    source = source_for(kind, cfg)
    sched = new_scheduler(cfg, quotas, digest(fingerprint)[:16], source)
    # every check that can refuse the command has passed: only now say anything
    if cfg.backend == "auto" and kind == "offline":
        reporter.info(AUTO_OFFLINE)
    if resuming:
        reporter.info(f"resuming the build in {out} ({len(cache)} journaled requests)")
    journal.open()
    run = Run(cfg, sched, journal, cache, backend, reporter)
    if state is not None:  # billed to requests that failed in earlier runs: spent all the same
        run.usage, run.cost = run.usage + state.spent_usage, run.cost + state.spent_cost

    async def drive() -> None:
        try:
            if cfg.batch and kind == "openai":
                await run.batched(state.batches if state else [])
            else:
                await run.live()
        finally:
            await backend.aclose()

    try:
        asyncio.run(drive())
    except KeyboardInterrupt:
        raise Interrupted(
            f"stopped with {sched.n_accepted}/{cfg.n} rows; everything paid for is journaled in "
            f"{journal.dir}: re-run the same command to resume"
        ) from None
    finally:
        run.progress.close()
        journal.close()

    if run.stopped and not sched.n_accepted:
        raise BackendError(run.stopped)  # the budget did not fit even one request: one line
    if run.stopped:
        reporter.warn(run.stopped)
    return _write_outputs(cfg, out, kind, source, sched, run, reporter)


def _write_outputs(
    cfg: BuildConfig, out: Path, kind: str, source: str, sched: Scheduler, run: Run, reporter: Reporter
) -> BuildSummary:
    rows = sched.rows()
    if not rows:
        raise BackendError("no valid rows were produced; see rejects.jsonl for why")
    reject_counts = collections.Counter(reason_code(r["reasons"][0]) for r in sched.rejects)
    table = coverage_table(coverage(rows))
    tools = toolgraph.tool_stats(cfg, rows) if cfg.tools else {}
    if tools:
        table += "\n\n" + tool_coverage_table(tools["tool_coverage"])
    config = to_dict(cfg)
    template = DatasetStats(
        n_rows=0,
        splits={},
        coverage={},  # filled in by write_dataset from the rows
        n_requested=cfg.n,
        rejects=dict(reject_counts.most_common()),
        rejected_rows=len(sched.rejects),
        dedup=Dedup(cfg.dedup_threshold, exact=sched.duplicates["exact"], near=sched.duplicates["near"]),
        surplus_rows=sched.surplus,
        usage=dataset_stats.Usage(run.usage.prompt_tokens, run.usage.completion_tokens),
        requests=run.sent + run.replayed,
        requests_this_run=run.sent,
        cost_usd=round(run.cost, 6),
        wall_time_s=round(time.monotonic() - run.t0, 3),
        backend=kind,
        model=cfg.model if kind == "openai" else None,
        source=source,
        seed=cfg.seed,
        prompt_version=prompt_version(kind, cfg),
        taxonomy=Taxonomy(
            combinations=len({c.modalities for c in CELLS}),
            cells=len(CELLS),
            min_steps=MIN_STEPS,
            max_steps=MAX_STEPS,
        ),
        stopped=run.stopped,
        config={k: v for k, v in config.items() if k not in ("quiet",)},
        **tools,
    )
    _, written = write_dataset(
        out,
        rows,
        sched.rejects,
        template,
        test_size=cfg.test_size,
        seed=cfg.seed,
        repo_id=cfg.repo_id,
        extra={"coverage.md": table + "\n"},
    )
    stats = written
    reporter.result(table)
    reporter.result(
        f"{len(rows)} rows ({stats.splits.get('train', 0)} train / {stats.splits.get('test', 0)} test) in {out}; "
        f"rejects {len(sched.rejects)}, duplicates {sched.duplicates['exact']} exact + {sched.duplicates['near']} near, "
        f"{stats.requests} requests ({run.sent} sent now), {run.usage.total_tokens} tokens, ${run.cost:.2f}, "
        f"{stats.wall_time_s:.1f}s"
    )
    if cfg.push and cfg.repo_id:
        from taskdecomp.hub import publish_dataset

        url = publish_dataset(out, cfg.repo_id, private=cfg.private, revision=cfg.revision, reporter=reporter)
        return BuildSummary(out, len(rows), stats, run.stopped, url)
    return BuildSummary(out, len(rows), stats, run.stopped)
