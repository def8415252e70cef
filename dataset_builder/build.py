"""The build loop: quotas → requests → backend → validate → de-duplicate → journal → output.

The scheduler is deterministic: requests are issued round-robin over the cells that still
need rows, and results are *committed* (validated, de-duplicated, accepted) strictly in issue
order, whatever order they arrive in. Every result is journaled the moment it arrives. On a
re-run the same scheduler replays journaled results instead of calling the backend, so it
reaches the same state and only pays for what is new; a larger `--n` extends the build.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskdecomp import stats as dataset_stats
from taskdecomp.config import to_dict
from taskdecomp.errors import AuthError, BackendError, ConfigError, Interrupted
from taskdecomp.reporter import Progress, Reporter
from taskdecomp.schema import make_row
from taskdecomp.stats import DatasetStats, Dedup, Taxonomy, coverage, coverage_table, tool_coverage_table
from taskdecomp.taxonomy import CELLS, MAX_STEPS, MIN_STEPS, Cell
from taskdecomp.validation import reason_code, validate_row

from . import toolgraph
from .backend import Backend, GenerationRequest, GenerationResult, Usage
from .build_config import BuildConfig
from .dedup import Deduplicator
from .journal import Journal
from .output import check_out_location, write_dataset
from .sampler import load_weights, plan_quotas

__all__ = ["build", "BuildSummary", "resolve_backend_kind", "plan", "Scheduler"]


@dataclass
class BuildSummary:
    out: Path
    n_rows: int
    stats: DatasetStats
    stopped: str | None = None  # why the build stopped short of --n (budget), else None
    url: str | None = None  # the Hub dataset page after --push


# --- choosing the backend ---------------------------------------------------------------
_AUTO_OFFLINE = "no OPENAI_API_KEY and no --base-url: using the built-in offline backend"


def _backend_kind(cfg: BuildConfig) -> str:
    """The backend `cfg` asks for, saying nothing (callers report it once all checks passed)."""
    has_key = bool(os.environ.get("OPENAI_API_KEY"))
    if cfg.backend == "auto":
        return "openai" if has_key or cfg.base_url else "offline"
    if cfg.backend == "openai" and not has_key and not cfg.base_url:
        raise AuthError(
            "--backend openai needs OPENAI_API_KEY in the environment (or --base-url for a local server)"
        )
    return cfg.backend


def resolve_backend_kind(cfg: BuildConfig, reporter: Reporter) -> str:
    kind = _backend_kind(cfg)
    if cfg.backend == "auto" and kind == "offline":
        reporter.info(_AUTO_OFFLINE)
    return kind


def _check_options(cfg: BuildConfig, kind: str) -> None:
    """Refuse options the chosen backend cannot honour, instead of ignoring them."""
    if cfg.batch and kind == "offline":
        how = "" if cfg.backend == "offline" else " (no OPENAI_API_KEY and no --base-url were given)"
        raise ConfigError(
            f"--batch needs the openai backend, but the offline backend was chosen{how}: drop --batch "
            f"or use --backend openai with OPENAI_API_KEY or --base-url"
        )
    if cfg.prices:
        from .pricing import load_prices

        load_prices(cfg.prices)  # a missing or broken price table is an error on any backend


def _make_backend(kind: str, cfg: BuildConfig, reporter: Reporter) -> Backend:
    if kind == "offline" and cfg.tools:  # tool-graph rows (dataset_builder/toolgraph.py)
        return toolgraph.tool_backend(cfg)
    if kind == "offline":
        from .offline import OfflineBackend

        return OfflineBackend(seed=cfg.seed)
    from .openai_backend import OpenAIBackend
    from .pricing import load_prices

    return OpenAIBackend(
        cfg.model,
        base_url=cfg.base_url,
        prices=load_prices(cfg.prices) if cfg.prices else None,
        rows_per_call=cfg.rows_per_call,
        concurrency=cfg.concurrency,
        rpm=cfg.rpm,
        tpm=cfg.tpm,
        timeout=cfg.timeout,
        max_attempts=cfg.max_attempts,
        max_wait=cfg.max_wait,
        reporter=reporter,
    )


def _source(kind: str, cfg: BuildConfig) -> str:
    return "offline" if kind == "offline" else f"openai:{cfg.model}"


def _prompt_version(kind: str) -> str | None:
    if kind == "offline":
        return None
    from .openai_backend import PROMPT_VERSION

    return str(PROMPT_VERSION)


def _fingerprint(cfg: BuildConfig, kind: str, weights: dict[str, float] | None) -> dict[str, Any]:
    """What makes two builds the same build (so a journal can be resumed or extended).
    Not `n` (a larger n extends), not limits/concurrency/output options."""
    return {
        "source": _source(kind, cfg),
        "base_url": cfg.base_url if kind == "openai" else None,
        "seed": cfg.seed,
        "rows_per_call": cfg.rows_per_call,
        "weights": weights,
        "dedup_threshold": cfg.dedup_threshold,
        "prompt_version": _prompt_version(kind),
        **({"tools": toolgraph.tool_fingerprint(cfg)} if cfg.tools else {}),
    }


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# --- the scheduler ----------------------------------------------------------------------
@dataclass
class _Issued:
    request: GenerationRequest
    k: int
    pending: Awaitable[GenerationResult] | GenerationResult
    reserved: float = 0.0  # worst-case cost held against --max-cost while in flight


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
            seed = int(_digest(self.seed, cell.key, k)[:8], 16)
            avoid = tuple(r["instruction"] for r in self.accepted[cell][-5:])
            rid = _digest(self.build_id, cell.key, k)[:24]
            return GenerationRequest(rid, cell, self.rows_per_call, seed, avoid), k
        return None

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


def _new_scheduler(cfg: BuildConfig, quotas: dict[Cell, int], build_id: str, source: str) -> Scheduler:
    sched = Scheduler(
        quotas, cfg.rows_per_call, cfg.seed, build_id, source, Deduplicator(cfg.dedup_threshold)
    )
    if cfg.tools:
        sched.validate = toolgraph.tool_validator(cfg)
    return sched


# --- dry run ------------------------------------------------------------------------------
def plan(cfg: BuildConfig, reporter: Reporter | None = None) -> dict[str, Any]:
    """What a build would send: requests, estimated tokens and cost (assuming no rejects)."""
    reporter = reporter or Reporter.silent()
    kind = _backend_kind(cfg)
    _check_options(cfg, kind)
    if cfg.tools:  # quotas over tool cells (structure x size), the catalogue checked
        weights, quotas = toolgraph.tool_plan(cfg, kind)
    else:
        weights = load_weights(cfg.quotas) if cfg.quotas else None
        quotas = plan_quotas(cfg.n, weights, cfg.seed)
    requests = sum(math.ceil(q / cfg.rows_per_call) for q in quotas.values() if q)
    prompt_tokens = completion_tokens = 0
    cost = 0.0
    if kind == "openai":
        from .openai_backend import estimate_request_tokens
        from .pricing import cost as price_cost
        from .pricing import load_prices, price_for

        price = price_for(cfg.model, load_prices(cfg.prices))
        sched = _new_scheduler(cfg, quotas, "dry-run", _source(kind, cfg))
        while (issued := sched.next_request()) is not None:
            p, c = estimate_request_tokens(issued[0], cfg.rows_per_call)
            prompt_tokens, completion_tokens = prompt_tokens + p, completion_tokens + c
        cost = price_cost(Usage(prompt_tokens, completion_tokens), price, batch=cfg.batch)
    if cfg.backend == "auto" and kind == "offline":
        reporter.info(_AUTO_OFFLINE)  # only now: every check above could still have failed
    return {
        "backend": kind,
        "source": _source(kind, cfg),
        "rows": cfg.n,
        "cells": sum(1 for q in quotas.values() if q),
        "requests": requests,
        "rows_per_call": cfg.rows_per_call,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "estimated_cost_usd": round(cost, 4),
        "batch": cfg.batch,
    }


# --- running ------------------------------------------------------------------------------
def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / ".build").is_dir():
        raise ConfigError(
            f"--out {out} is not empty and holds no build journal; choose an empty or new folder"
        )


class _Run:
    """State of one invocation: scheduler + journal + backend + spend."""

    def __init__(
        self,
        cfg: BuildConfig,
        sched: Scheduler,
        journal: Journal,
        cache: dict[str, GenerationResult],
        backend: Backend,
        reporter: Reporter,
    ) -> None:
        self.cfg, self.sched, self.journal, self.cache = cfg, sched, journal, cache
        self.backend, self.reporter = backend, reporter
        self.usage = Usage()
        self.cost = 0.0
        self.sent = 0  # requests paid for in this invocation
        self.replayed = 0
        self.in_flight_reserved = 0.0
        self.stopped: str | None = None
        self.t0 = time.monotonic()
        self.progress = Progress(reporter, cfg.n, "rows")

    # bookkeeping for every result, journaled or new
    def _account(self, result: GenerationResult) -> None:
        self.usage = self.usage + result.usage
        self.cost += result.cost_usd

    def _journal(self, request: GenerationRequest, k: int, result: GenerationResult) -> None:
        self.journal.add_result(result, request.cell.key, k)
        self.cache[request.request_id] = result

    def _journal_failure(self, request: GenerationRequest, exc: BaseException) -> None:
        """A request that failed for good may still have been billed (unusable replies,
        retries): journal and count that spend, so stats.json and a resumed budget see it."""
        usage = getattr(exc, "usage", None)
        spent = float(getattr(exc, "cost_usd", 0.0) or 0.0)
        if not isinstance(usage, Usage) or (usage.total_tokens == 0 and spent == 0):
            return
        self.journal.add_spend(request.request_id, usage, spent)
        self.usage = self.usage + usage
        self.cost += spent

    def _commit(self, request: GenerationRequest, result: GenerationResult) -> None:
        self._account(result)
        before = self.sched.n_accepted
        self.sched.commit(request, result)
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        self.progress.update(
            self.sched.n_accepted - before,
            rejects=len(self.sched.rejects),
            dups=sum(self.sched.duplicates.values()),
            req_s=f"{self.sent / elapsed:.1f}",
            tokens=self.usage.total_tokens,
            cost=f"${self.cost:.2f}",
        )

    def worst_case_cost(self, request: GenerationRequest, *, batch: bool = False) -> float:
        """An upper bound on what one request can bill: its prompt (estimated from the rendered
        text, +25 %) and a completion of `max_tokens`, which the backend sets on every call,
        for every attempt it may make: a live request is retried up to --max-attempts times
        and each unusable reply is billed. A Batch API line is sent once."""
        if self.cfg.max_cost is None:
            return 0.0
        return self.backend.worst_case_cost(request, batch=batch)

    def _over_budget(self, reserved: float) -> bool:
        """True (and say so) when committed spend + what is in flight + `reserved` could pass
        --max-cost. In-flight requests count at their worst case, so the budget holds."""
        if self.cfg.max_cost is None:
            return False
        if self.cost + self.in_flight_reserved + reserved > self.cfg.max_cost:
            if self.in_flight_reserved > 0:
                return True  # not yet: what is in flight may come back cheaper than reserved
            self.stopped = (
                f"stopped at the --max-cost budget (${self.cost:.2f} of ${self.cfg.max_cost:.2f}; the next "
                f"request may bill up to ${reserved:.4f} over its --max-attempts attempts); "
                f"raise --max-cost and re-run the same command to continue"
            )
            return True
        return False

    async def live(self) -> None:
        window = max(1, self.cfg.concurrency * 2)
        queue: collections.deque[_Issued] = collections.deque()

        def on_done(issued: _Issued, task: asyncio.Future[GenerationResult]) -> None:
            # journal the moment it arrives, even if it waits for its turn to be committed
            if task.cancelled():
                return
            exc = task.exception()
            if exc is None:
                self._journal(issued.request, issued.k, task.result())
            else:
                self._journal_failure(issued.request, exc)

        def watch(issued: _Issued) -> Callable[[asyncio.Future[GenerationResult]], None]:
            return lambda task: on_done(issued, task)

        committed = 0
        held: tuple[GenerationRequest, int] | None = None  # issued, waiting for budget to free up
        try:
            while True:
                # Until one request has come back, send one at a time: a bad key, a wrong model
                # or an unreachable endpoint then costs one request, not a burst of them.
                limit = window if committed else 1
                while not self.stopped and len(queue) < limit:
                    nxt, held = (held, None) if held is not None else (self.sched.next_request(), None)
                    if nxt is None:
                        break
                    request, k = nxt
                    cached = self.cache.get(request.request_id)
                    if cached is not None:
                        self.replayed += 1
                        queue.append(_Issued(request, k, cached))
                        continue
                    reserve = self.worst_case_cost(request)
                    if self._over_budget(reserve):
                        if self.stopped:
                            self.sched.inflight[request.cell] -= 1
                        else:  # wait for in-flight requests to settle, then try it again
                            held = nxt
                        break
                    task = asyncio.ensure_future(self.backend.generate(request))
                    issued = _Issued(request, k, task, reserve)
                    self.in_flight_reserved += reserve
                    task.add_done_callback(watch(issued))
                    self.sent += 1
                    queue.append(issued)
                if not queue:
                    if held is not None and not self.stopped:
                        self.in_flight_reserved = 0.0  # nothing is in flight: drop float residue
                        continue  # nothing in flight any more: the held request is judged again
                    break
                issued = queue.popleft()
                result = (
                    issued.pending if isinstance(issued.pending, GenerationResult) else await issued.pending
                )
                self.in_flight_reserved -= issued.reserved
                self._commit(issued.request, result)
                committed += 1
        finally:
            for q in queue:
                if isinstance(q.pending, asyncio.Future) and not q.pending.done():
                    q.pending.cancel()
            await asyncio.gather(
                *(q.pending for q in queue if isinstance(q.pending, asyncio.Future)), return_exceptions=True
            )

    def _affordable(self, todo: list[GenerationRequest]) -> list[GenerationRequest]:
        """The head of `todo` whose worst-case batch cost fits under --max-cost."""
        if self.cfg.max_cost is None or not todo:
            return todo
        spend, fit = self.cost, []
        for r in todo:
            spend += self.worst_case_cost(r, batch=True)
            if spend > self.cfg.max_cost:
                self.stopped = (
                    f"stopped at the --max-cost budget (${self.cost:.2f} spent, next batch would exceed "
                    f"${self.cfg.max_cost:.2f}); raise --max-cost and re-run the same command to continue"
                )
                break
            fit.append(r)
        return fit

    async def batched(self, journaled_batches: list[dict[str, Any]]) -> None:
        from .batch import BatchRunner

        runner = BatchRunner.from_backend(self.backend, poll_interval=self.cfg.batch_poll)
        for rec in journaled_batches:  # resume polling: a created batch is never paid for twice
            self.reporter.info(f"resuming Batch API job {rec['batch_id']} ({len(rec['requests'])} requests)")
            where = {rid: (cell, k) for rid, cell, k in rec["requests"]}
            try:
                for res in await runner.wait(rec["batch_id"]):
                    cell, k = where[res.request_id]
                    self.journal.add_result(res, cell, k)
                    self.cache[res.request_id] = res
            except BackendError as exc:  # a failed batch bills nothing: its requests go again
                self.reporter.warn(
                    f"Batch API job {rec['batch_id']} failed ({exc}); submitting its requests again"
                )
            self.journal.batch_done(rec["batch_id"])
        while True:
            round_: list[tuple[GenerationRequest, int]] = []
            while (nxt := self.sched.next_request()) is not None:
                round_.append(nxt)
            if not round_:
                break
            uncached = [r for r, _ in round_ if r.request_id not in self.cache]
            todo = self._affordable(uncached)  # a head of `uncached`: the rest is over budget
            todo_ids = {r.request_id for r in todo}
            dropped = {r.request_id for r in uncached[len(todo) :]}
            for r, _ in round_:
                if r.request_id in dropped:
                    self.sched.inflight[r.cell] -= 1
            round_ = [(r, k) for r, k in round_ if r.request_id not in dropped]
            if todo:
                ks = {r.request_id: k for r, k in round_}

                def journal_batch(
                    batch_id: str, part: list[GenerationRequest], ks: dict[str, int] = ks
                ) -> None:
                    # journaled before the next part is uploaded: a crash pays nothing twice
                    self.journal.add_batch(
                        batch_id, [(r.request_id, r.cell.key, ks[r.request_id]) for r in part]
                    )
                    self.reporter.info(f"submitted Batch API job {batch_id} ({len(part)} requests)")
                    self.sent += len(part)

                for batch_id in await runner.submit_all(todo, on_submitted=journal_batch):
                    got = {res.request_id: res for res in await runner.wait(batch_id)}
                    for r, k in round_:
                        if r.request_id in got:
                            self._journal(r, k, got[r.request_id])
                    self.journal.batch_done(batch_id)
            if dropped and not round_:
                break
            for r, _ in round_:
                # a request the batch failed to answer commits as empty: the cell asks again
                res = self.cache.get(r.request_id) or GenerationResult(r.request_id, [])
                self.replayed += r.request_id not in todo_ids
                self._commit(r, res)


def build(cfg: BuildConfig, reporter: Reporter | None = None) -> BuildSummary:
    reporter = reporter or Reporter.silent()
    out = Path(cfg.out)
    check_out_location(out)
    _check_out_dir(out)
    kind = _backend_kind(cfg)
    _check_options(cfg, kind)
    if cfg.tools:  # quotas over tool cells (structure x size), the catalogue checked
        weights, quotas = toolgraph.tool_plan(cfg, kind)
    else:
        weights = load_weights(cfg.quotas) if cfg.quotas else None
        quotas = plan_quotas(cfg.n, weights, cfg.seed)
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
    backend = _make_backend(kind, cfg, reporter)
    source = _source(kind, cfg)
    sched = _new_scheduler(cfg, quotas, _digest(fingerprint)[:16], source)
    # every check that can refuse the command has passed: only now say anything
    if cfg.backend == "auto" and kind == "offline":
        reporter.info(_AUTO_OFFLINE)
    if resuming:
        reporter.info(f"resuming the build in {out} ({len(cache)} journaled requests)")
    journal.open()
    run = _Run(cfg, sched, journal, cache, backend, reporter)
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
    cfg: BuildConfig, out: Path, kind: str, source: str, sched: Scheduler, run: _Run, reporter: Reporter
) -> BuildSummary:
    rows = [row for cell in sched.cells for row in sched.accepted[cell]]
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
        prompt_version=_prompt_version(kind),
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
