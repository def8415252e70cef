"""The one channel through which the library talks to the user.

Library code takes a `Reporter` (default: silent) and calls `info`/`warn`/`progress`; it never
prints. On a TTY the progress is a tqdm bar; elsewhere (CI, log files) it is a plain log line at
most every `log_every` seconds, so logs stay readable. Everything passes through `redact`.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from .errors import redact

__all__ = ["Reporter", "Progress"]


class Progress:
    def __init__(self, reporter: Reporter, total: int, desc: str, initial: int = 0) -> None:
        self.reporter, self.total, self.desc, self.n = reporter, total, desc, initial
        self.postfix: dict[str, Any] = {}
        self._bar = None
        # no line before `log_every` has passed: a short job (or one that fails fast) prints no
        # progress at all, so an error stays the only line
        self._last = time.monotonic()
        self._printed = False
        self._warm: tuple[float, int] | None = None  # (time, n) at the first update: the rate's origin
        if reporter.enabled and reporter.is_tty:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, desc=desc, file=reporter.stream, dynamic_ncols=True
            )

    WARMUP_S = 5.0  # the ETA shows once this much of the rate has been seen

    def update(self, n: int = 0, **postfix: Any) -> None:
        if self._warm is None:  # start-up and a slow first request are not the rate
            self._warm = (time.monotonic(), self.n + n)
        self.n += n
        self.postfix.update(postfix)
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix({k: v for k, v in self.postfix.items()}, refresh=False)
            return
        now = time.monotonic()
        due = now - self._last >= self.reporter.log_every or (self.n >= self.total and self._printed)
        if self.reporter.enabled and due:
            self._last, self._printed = now, True
            self.reporter.info(self.line())

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.postfix.items())
        eta = ""
        if self._warm is not None and self.n < self.total:
            t_warm, n_warm = self._warm
            elapsed, done = time.monotonic() - t_warm, self.n - n_warm
            if elapsed >= self.WARMUP_S and done > 0:
                eta = f" eta={(self.total - self.n) * elapsed / done:.0f}s"
        return f"{self.desc}: {self.n}/{self.total} {extra}{eta}".rstrip()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Reporter:
    def __init__(self, quiet: bool = False, stream: TextIO | None = None, log_every: float = 5.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet
        self.log_every = log_every
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)())

    @classmethod
    def silent(cls) -> Reporter:
        return cls(quiet=True)

    def info(self, message: str) -> None:
        if self.enabled:
            print(redact(message), file=self.stream, flush=True)

    def warn(self, message: str) -> None:
        # Warnings are shown even with --quiet: they change what the user gets.
        print("warning: " + redact(message), file=self.stream, flush=True)

    def result(self, text: str) -> None:
        """Final summaries/tables: printed unless quiet."""
        self.info(text)

    def progress(self, total: int, desc: str, initial: int = 0) -> Progress:
        return Progress(self, total, desc, initial)
