"""Client-side limits: requests per minute, tokens per minute, requests in flight.

Two token buckets (requests, tokens) refill continuously at `limit/60` per second. Providers
enforce per-minute limits on short sub-windows (OpenAI documents 60,000 RPM being enforced as
1,000 requests per second), so a client that saves up budget and spends it at once gets a storm
of 429s. So requests are strictly paced (the bucket holds one request) and tokens hold at most
one second of budget. A request waits until its cost has accrued (pay before sending), so a
stalled event loop cannot turn into a catch-up burst; a cost above the capacity is granted once
that much has accrued. Both start EMPTY, so the first minute sends no more than its budget.
Tokens are reserved up front with an estimate and reconciled with the billed usage after the
call (refunds are never capped; a too-low estimate becomes debt that delays later requests).
`rate_safety` (default 0.97) keeps a little headroom for clock and network jitter. A 429 from the server pauses every new
request for its Retry-After and slows the buckets by 5% (`rate_limited`; successes win the rate
back slowly), so one signal slows the whole client, not one request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["TokenBucket", "RateLimiter", "Slot"]


class TokenBucket:
    """`rate` units per second, at most `capacity` stored while idle, starting at `initial`."""

    def __init__(self, rate: float, capacity: float, initial: float = 0.0) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate, self.capacity = rate, capacity
        self.level = min(initial, capacity)
        self._stamp = time.monotonic()
        self._need = 0.0
        self._lock = asyncio.Lock()  # FIFO: waiters are served in arrival order

    def _refill(self) -> None:
        now = time.monotonic()
        gained = (now - self._stamp) * self.rate
        self._stamp = now
        # store at most `capacity` (no big bursts later), or the amount a waiter needs (so a
        # request bigger than the capacity still gets through); refunds may exceed it
        cap = max(self.capacity, self._need)
        if self.level < cap:
            self.level = min(cap, self.level + gained)

    async def take(self, amount: float) -> None:
        """Wait until `amount` units have accrued, then take them: pay before sending, so the
        sent total never runs ahead of the rate by more than the capacity. An amount above the
        capacity is granted once that much has accrued."""
        async with self._lock:
            self._refill()
            self._need = amount
            try:
                while self.level < amount - 1e-9:
                    # short naps: a refund (`give_back`) arriving meanwhile is used at once
                    await asyncio.sleep(min(0.05, (amount - self.level) / self.rate))
                    self._refill()
            finally:
                self._need = 0.0
            self.level -= amount

    def give_back(self, amount: float) -> None:
        """Return (positive) or charge extra (negative) units after the fact. A refund is never
        capped: those units were reserved but the server never counted them."""
        self._refill()
        self.level += amount


class Slot:
    """One admitted request; call `used(tokens)` with the billed total to reconcile."""

    def __init__(self, limiter: RateLimiter, reserved: int) -> None:
        self._limiter, self.reserved = limiter, reserved
        self._settled = False

    def used(self, tokens: int) -> None:
        if self._settled:
            return
        self._settled = True
        if self._limiter.tokens is not None:
            self._limiter.tokens.give_back(self.reserved - tokens)


class RateLimiter:
    """`async with limiter.slot(est_tokens) as slot: ...; slot.used(actual)`.

    `rpm`/`tpm` None mean unlimited; `concurrency` bounds requests in flight."""

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        concurrency: int = 8,
        *,
        rate_safety: float = 0.97,
        burst_seconds: float = 1.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self._sem = asyncio.Semaphore(concurrency)
        # requests are strictly paced (a bucket of one); tokens may burst `burst_seconds`
        self.requests = self._bucket(rpm, rate_safety, 0.0)
        self.tokens = self._bucket(tpm, rate_safety, burst_seconds)
        self._resume_at = 0.0
        self.throttle = 1.0
        self._base_rates = tuple(b.rate if b else 0.0 for b in (self.requests, self.tokens))

    @staticmethod
    def _bucket(per_min: float | None, safety: float, burst: float) -> TokenBucket | None:
        if not per_min:
            return None
        rate = per_min * safety / 60.0
        return TokenBucket(rate, max(1.0, rate * burst), initial=0.0)  # at least one unit

    def pause(self, seconds: float) -> None:
        """Hold back new requests for `seconds` (the server said Retry-After)."""
        self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    def rate_limited(self, retry_after: float | None) -> None:
        """A 429: pause for its Retry-After and slow the buckets down 5% (AIMD, floor 70%).
        Pacing at the average rate can still overshoot a server's short window by one request
        (N+1 requests fit in a window N gaps long); backing off a little makes that rare."""
        if retry_after is not None:
            self.pause(retry_after)
        self._set_throttle(max(0.7, self.throttle * 0.95))

    def succeeded(self) -> None:
        """A success: win back the rate slowly (+0.2% per success, up to the configured rate)."""
        if self.throttle < 1.0:
            self._set_throttle(min(1.0, self.throttle + 0.002))

    def _set_throttle(self, value: float) -> None:
        self.throttle = value
        for bucket, base in ((self.requests, self._base_rates[0]), (self.tokens, self._base_rates[1])):
            if bucket is not None:
                bucket.rate = base * value

    @asynccontextmanager
    async def slot(self, est_tokens: int = 0) -> AsyncIterator[Slot]:
        async with self._sem:
            while (delay := self._resume_at - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            if self.requests is not None:
                await self.requests.take(1)
            if self.tokens is not None:
                await self.tokens.take(est_tokens)
            yield Slot(self, est_tokens)
