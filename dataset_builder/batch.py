"""The OpenAI Batch API path: half the price, no request-rate ceiling, results within 24 h.

Built so that nothing is paid twice: `submit` returns the batch id as soon as the batch is
created; the caller JOURNALS it right away; `wait(batch_id)` only polls and downloads, so a
re-run after kill -9 or Ctrl-C calls `wait` on the journaled id instead of submitting again.

    runner = BatchRunner.from_backend(backend, poll_interval=30)
    batch_id = await runner.submit(requests)      # upload JSONL + create; journal batch_id now
    results = await runner.wait(batch_id)         # poll (bounded backoff), download, parse

Each JSONL line is `{"custom_id": request.request_id, "method": "POST",
"url": "/v1/chat/completions", "body": chat_body(...)}` (the same body as the live path).
`wait` returns one `GenerationResult` per answered request (cost at the batch discount);
requests the batch did not answer (error lines, or left over when it expired or was cancelled)
are absent from the list and named in `runner.last_errors` (request_id → reason), so the caller
re-plans them. A batch that `failed` (validation; nothing billed) raises `BackendError`; the
caller should forget that id before submitting again. Every API call goes through the same
tenacity policy as the live path; a retried `batches.create` first looks for a batch already
made from the same input file, so a lost response cannot create (and bill) a second batch.

One batch holds at most `max_requests` lines and `max_bytes` of JSONL (the API's limits:
50,000 requests, 200 MB per input file). `split` cuts a bigger plan into batches that fit;
`submit_all` submits them one after the other and calls `on_submitted(batch_id, requests)`
right after each is created, so the caller journals every batch before the next is uploaded:

    ids = await runner.submit_all(requests, on_submitted=journal_it)
    for batch_id in ids: results = await runner.wait(batch_id)
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import openai

from taskdecomp.errors import AuthError, BackendError
from taskdecomp.reporter import Reporter

from .backend import GenerationRequest, GenerationResult, Usage
from .pricing import Price, cost, load_prices, price_for
from .retry import InvalidReply, describe, retrying

if TYPE_CHECKING:
    from .openai_backend import OpenAIBackend

__all__ = ["BatchRunner", "MAX_BATCH_REQUESTS", "MAX_BATCH_BYTES", "TERMINAL_STATUSES"]

MAX_BATCH_REQUESTS = 50_000  # the API's per-batch limits; `split` cuts bigger plans
MAX_BATCH_BYTES = 200 * 1024 * 1024
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
_ENDPOINT: Final = "/v1/chat/completions"
T = TypeVar("T")


class BatchRunner:
    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        *,
        prices: dict[str, Price] | None = None,
        json_mode: bool = False,
        poll_interval: float = 30.0,
        max_poll_interval: float = 300.0,
        max_wait: float = 26 * 3600.0,
        max_attempts: int = 6,
        retry_max_wait: float = 120.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        reporter: Reporter | None = None,
        max_requests: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        """`poll_interval` grows ×1.5 per poll up to `max_poll_interval`; `wait` gives up
        (BackendError, resumable) after `max_wait` seconds; the retry knobs are the live path's.
        `max_requests`/`max_bytes` bound one batch (default: the module's MAX_BATCH_* limits,
        read now, so a test can lower them)."""
        self.max_requests = max_requests if max_requests is not None else MAX_BATCH_REQUESTS
        self.max_bytes = max_bytes if max_bytes is not None else MAX_BATCH_BYTES
        if self.max_requests < 1 or self.max_bytes < 1:
            raise ValueError("max_requests and max_bytes must be positive")
        self.client, self.model, self.json_mode = client, model, json_mode
        self.price = price_for(model, prices if prices is not None else load_prices())
        self.poll_interval, self.max_poll_interval, self.max_wait = poll_interval, max_poll_interval, max_wait
        self._retrying = functools.partial(
            retrying, max_attempts=max_attempts, max_wait=retry_max_wait, base=backoff_base, cap=backoff_cap
        )
        self.reporter = reporter or Reporter.silent()
        self.last_errors: dict[str, str] = {}
        # the OpenAIBackend whose bodies and parser the lines use (`from_backend`); None: the rows prompt
        self.backend: OpenAIBackend | None = None

    @classmethod
    def from_backend(cls, backend: Any, **kwargs: Any) -> BatchRunner:
        """Share an `OpenAIBackend`'s client, model, price, JSON-mode fallback and retry knobs."""
        defaults = {
            "json_mode": backend.json_mode,
            "max_attempts": backend.max_attempts,
            "retry_max_wait": backend.max_wait,
            "backoff_base": backend.backoff_base,
            "backoff_cap": backend.backoff_cap,
            "reporter": backend.reporter,
        }
        runner = cls(backend.client, backend.model, **{**defaults, **kwargs})
        runner.price = backend.price
        runner.backend = backend  # its request bodies and its reply parser
        return runner

    # --- submit ---------------------------------------------------------------------------
    def _line(self, request: GenerationRequest) -> bytes:
        from .openai_backend import chat_body

        body = (
            self.backend.body(request)
            if self.backend is not None
            else chat_body(self.model, request, json_mode=self.json_mode)
        )
        record = {"custom_id": request.request_id, "method": "POST", "url": _ENDPOINT, "body": body}
        return json.dumps(record).encode() + b"\n"

    def build_jsonl(self, requests: Sequence[GenerationRequest]) -> bytes:
        return b"".join(self._line(r) for r in requests)

    def split(self, requests: Sequence[GenerationRequest]) -> list[list[GenerationRequest]]:
        """`requests` in order, cut into batches of at most `max_requests` lines and
        `max_bytes` of JSONL each. A single line above `max_bytes` → BackendError."""
        batches: list[list[GenerationRequest]] = []
        size = 0
        for r in requests:
            n = len(self._line(r))
            if n > self.max_bytes:
                raise BackendError(
                    f"request {r.request_id} is {n} bytes as a Batch API line, above the "
                    f"{self.max_bytes}-byte input file limit: lower --rows-per-call or drop --batch"
                )
            if not batches or len(batches[-1]) >= self.max_requests or size + n > self.max_bytes:
                batches.append([])
                size = 0
            batches[-1].append(r)
            size += n
        return batches

    async def submit_all(
        self,
        requests: Sequence[GenerationRequest],
        on_submitted: Callable[[str, list[GenerationRequest]], None] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> list[str]:
        """`split` then `submit` each part; `on_submitted(batch_id, part)` runs as soon as a
        part's batch exists (journal it there: a crash before the next part then pays nothing
        twice). Returns the batch ids in order."""
        ids = []
        for part in self.split(requests):
            batch_id = await self.submit(part, metadata)
            if on_submitted is not None:
                on_submitted(batch_id, part)
            ids.append(batch_id)
        return ids

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        attempts = 0
        try:
            async for attempt in self._retrying():
                with attempt:
                    attempts += 1
                    return await fn()
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise AuthError(
                    f"Batch API {what}: key rejected (HTTP {exc.status_code}): check OPENAI_API_KEY"
                ) from None
            raise BackendError(
                f"Batch API {what} failed after {attempts} attempt(s) ({describe(exc)})"
            ) from None
        except openai.OpenAIError as exc:
            where = str(self.client.base_url).rstrip("/")
            raise BackendError(
                f"Batch API {what}: cannot reach {where} ({describe(exc)}): check --base-url"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def submit(
        self, requests: Sequence[GenerationRequest], metadata: dict[str, str] | None = None
    ) -> str:
        """Upload the requests as JSONL, create the batch, return its id (journal it now)."""
        if not requests:
            raise ValueError("submit needs at least one request")
        data = self.build_jsonl(requests)
        if len(requests) > self.max_requests or len(data) > self.max_bytes:
            raise ValueError(
                f"one batch holds at most {self.max_requests} requests and {self.max_bytes} bytes, "
                f"got {len(requests)} and {len(data)}: use submit_all (or split)"
            )
        upload = await self._call(
            "upload", lambda: self.client.files.create(file=("requests.jsonl", data), purpose="batch")
        )
        tries = 0

        async def create() -> Any:
            nonlocal tries
            tries += 1
            if tries > 1 and (existing := await self._find_by_input(upload.id)) is not None:
                return existing
            return await self.client.batches.create(
                input_file_id=upload.id,
                endpoint=_ENDPOINT,
                completion_window="24h",
                metadata=metadata or {"created_by": "taskdecomp build-dataset"},
            )

        batch = await self._call("create", create)
        return str(batch.id)

    async def _find_by_input(self, file_id: str) -> Any | None:
        page = await self.client.batches.list(limit=100)
        return next((b for b in page.data if b.input_file_id == file_id), None)

    # --- wait -----------------------------------------------------------------------------
    async def status(self, batch_id: str) -> Any:
        """One poll: the `Batch` object (status, request_counts, output/error file ids)."""
        return await self._call("poll", lambda: self.client.batches.retrieve(batch_id))

    async def wait(self, batch_id: str) -> list[GenerationResult]:
        """Poll until the batch ends, then download and parse its results (see module doc)."""
        deadline = time.monotonic() + self.max_wait
        interval, last = self.poll_interval, None
        while True:
            batch = await self.status(batch_id)
            counts = batch.request_counts
            seen = (batch.status, counts.completed if counts else None)
            if seen != last:
                done = f" {counts.completed}/{counts.total} done" if counts and counts.total else ""
                self.reporter.info(f"Batch API job {batch_id}: {batch.status}{done}")
                last = seen
            if batch.status in TERMINAL_STATUSES:
                break
            if time.monotonic() + interval > deadline:
                raise BackendError(
                    f"Batch API job {batch_id} still {batch.status} after {self.max_wait:.0f}s: "
                    "re-run the same command later to resume polling it"
                )
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, self.max_poll_interval)
        if batch.status == "failed":
            errors = (
                "; ".join(f"{e.code}: {e.message}" for e in (batch.errors.data or [])) if batch.errors else ""
            )
            raise BackendError(
                f"Batch API job {batch_id} failed ({errors or 'no details'}); nothing was billed"
            )
        if batch.status != "completed":
            self.reporter.warn(f"Batch API job {batch_id} {batch.status}: keeping the part it finished")
        self.last_errors = {}
        if batch.error_file_id:
            for rec in await self._lines(batch.error_file_id):
                err = rec.get("error") or {}
                self.last_errors[rec.get("custom_id", "?")] = f"{err.get('code')}: {err.get('message')}"
        if not batch.output_file_id:
            return []
        return [r for r in (self._result(rec) for rec in await self._lines(batch.output_file_id)) if r]

    async def _lines(self, file_id: str) -> list[dict[str, Any]]:
        content = await self._call("download", lambda: self.client.files.content(file_id))
        return [json.loads(line) for line in content.text.splitlines() if line.strip()]

    def _result(self, rec: dict[str, Any]) -> GenerationResult | None:
        from .openai_backend import parse_candidates

        cid, response = rec.get("custom_id"), rec.get("response") or {}
        if not cid:
            return None
        if response.get("status_code") != 200:
            self.last_errors[cid] = f"HTTP {response.get('status_code')}"
            return None
        body = response.get("body") or {}
        raw = body.get("usage") or {}
        usage = Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))
        try:
            content = body["choices"][0]["message"].get("content")
            candidates = (
                self.backend.parse(content) if self.backend is not None else parse_candidates(content)
            )
        except (InvalidReply, KeyError, IndexError, TypeError) as exc:
            # billed but unusable: report it with its usage, no candidates; no retry in a batch
            self.last_errors[cid] = f"invalid reply ({exc})"
            candidates = []
        return GenerationResult(cid, candidates, usage, cost(usage, self.price, batch=True), attempts=1)
