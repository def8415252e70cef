"""The build's drivers: send the scheduler's requests to the backend, live or through the
Batch API, journal every result the moment it arrives, and hold the --max-cost budget.

A live run keeps a window of requests in flight (one until the first answer is back, so a
bad key or URL costs one request) and commits results in issue order. Each request in flight
holds its worst-case cost against the budget. A batch run journals each Batch API job before
the next one is uploaded and resumes polling journaled jobs, so nothing is paid for twice.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from taskdecomp.errors import BackendError
from taskdecomp.reporter import Progress, Reporter

from .backend import Backend, GenerationRequest, GenerationResult, Usage
from .build_config import BuildConfig
from .journal import Journal
from .scheduler import Scheduler

__all__ = ["Run"]


@dataclass
class _Issued:
    request: GenerationRequest
    k: int
    pending: Awaitable[GenerationResult] | GenerationResult
    reserved: float = 0.0  # worst-case cost held against --max-cost while in flight


class Run:
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
        if not isinstance(exc, BackendError):
            return
        usage, spent = Usage(exc.prompt_tokens, exc.completion_tokens), exc.cost_usd
        if usage.total_tokens == 0 and spent == 0:
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
                            self.sched.release(request)
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
                    self.sched.release(r)
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
