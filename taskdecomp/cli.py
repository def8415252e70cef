"""The CLI edge: every console script's `main` is wrapped by `entrypoint`.

Console scripts run `sys.exit(main())`, so `main` returns the exit code. Domain errors become one line on stderr and exit code 2 (130 for Ctrl-C); nothing below this
layer calls `sys.exit` or prints tracebacks at the user.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence

from .errors import TaskDecompError, redact

__all__ = ["entrypoint"]

Main = Callable[[Sequence[str] | None], int | None]


def entrypoint(prog: str) -> Callable[[Main], Callable[[Sequence[str] | None], int]]:
    def wrap(fn: Main) -> Callable[[Sequence[str] | None], int]:
        @functools.wraps(fn)
        def main(argv: Sequence[str] | None = None) -> int:
            try:
                return int(fn(argv) or 0)
            except TaskDecompError as exc:
                print(f"{prog}: error: {redact(str(exc))}", file=sys.stderr)
                return exc.exit_code
            except KeyboardInterrupt:
                # every writer renames finished files into place, so there is no partial output
                print(
                    f"{prog}: interrupted (Ctrl-C); no partial file was kept: run the same command again",
                    file=sys.stderr,
                )
                return 130
            except BrokenPipeError:
                # `decompose ... | head`: the reader went away; that is not an error.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 0

        return main

    return wrap
