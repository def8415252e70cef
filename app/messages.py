"""What an error shows in the page: one line, redacted, never a traceback."""

from __future__ import annotations

from taskdecomp.errors import TaskDecompError, redact
from taskdecomp.mermaid import escape_markdown

__all__ = ["error_message", "error_markdown"]


def error_message(exc: BaseException) -> str:
    """A domain error's own message (it says what to do); anything else as `Class: first line`."""
    if isinstance(exc, TaskDecompError):
        message = str(exc)
    else:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        message = f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__
    return redact(" ".join(message.split()))


def error_markdown(exc: BaseException) -> str:
    """`error_message` as the page's Markdown."""
    return f"⚠️ {escape_markdown(error_message(exc))}"
