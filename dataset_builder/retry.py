"""The one retry policy for every call to an OpenAI-compatible endpoint (tenacity).

The SDK's own retries are off (`max_retries=0`), so this is the only place that decides:

- retried: 429 (except `insufficient_quota`, which waiting does not fix), 408, 409, 5xx,
  timeouts, connection errors, and `InvalidReply` (the model answered garbage: bad JSON, no rows,
  an HTTP body cut short; or `NotAnAPI`: the URL answered something that is no chat completion);
- never retried: every other 4xx (400/401/403/404/422 ...): they fail the same way again;
- wait: the server's `retry-after-ms` / `Retry-After` (seconds or an HTTP date) when it sends one,
  otherwise exponential backoff with FULL jitter (uniform in [0, min(cap, base·2^k)]), which
  spreads a crowd of clients instead of making them retry in lock-step;
- stop: after `max_attempts` attempts, or when the next sleep would push the total time spent
  sleeping for this call past `max_wait` (a 429 asking for longer than that gives up at once).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any

import openai
import tenacity

from .backend import Usage

__all__ = ["InvalidReply", "NotAnAPI", "is_retryable", "retry_after", "retrying", "describe"]


class InvalidReply(Exception):
    """The endpoint answered 200 but the content is unusable (not JSON, no rows, refusal).
    `usage` is what that reply billed when it is known only here (a body cut short never
    reaches the caller as a parsed completion), else zero."""

    def __init__(self, message: str, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.usage = usage or Usage()


class NotAnAPI(InvalidReply):
    """A 200 whose body is no chat completion at all (an HTML page from a captive proxy, some
    other service's JSON): retried like an invalid reply, but reported as a wrong URL."""


_RETRY_STATUS = {408, 409, 429}


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, (InvalidReply, openai.APIConnectionError)):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 429 and exc.code == "insufficient_quota":
            return False
        return exc.status_code in _RETRY_STATUS or exc.status_code >= 500
    return False


def retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait, from the exception's response headers, else None."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # HTTP date, e.g. "Wed, 21 Oct 2015 07:28:00 GMT"
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Wait(tenacity.wait.wait_base):
    """The server's Retry-After when it sent one, else tenacity's full-jitter backoff."""

    def __init__(self, base: float, cap: float) -> None:
        self.backoff = tenacity.wait_random_exponential(multiplier=base, max=cap)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        asked = retry_after(exc)
        return asked if asked is not None else self.backoff(retry_state)


def retrying(
    *,
    max_attempts: int = 6,
    max_wait: float = 120.0,
    base: float = 1.0,
    cap: float = 60.0,
    before_sleep: Callable[[tenacity.RetryCallState], Any] | None = None,
) -> tenacity.AsyncRetrying:
    """An `AsyncRetrying` implementing the policy above; use as
    `async for attempt in retrying(...): with attempt: ...`. When it gives up it re-raises the
    last exception (`reraise=True`), so callers map one real error to a message."""

    def stop(rs: tenacity.RetryCallState) -> bool:
        return rs.attempt_number >= max_attempts or rs.idle_for + rs.upcoming_sleep > max_wait

    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(is_retryable),
        wait=_Wait(base, cap),
        stop=stop,
        reraise=True,
        before_sleep=before_sleep,
    )


def describe(exc: BaseException) -> str:
    """A short, key-free name for an error: 'HTTP 429', 'timeout', 'connection error', ..."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection error"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, InvalidReply):
        return f"invalid reply ({exc})"
    return exc.__class__.__name__
