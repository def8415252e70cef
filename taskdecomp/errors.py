"""One exception hierarchy for the whole toolkit.

The library raises these; only the CLI edge (`taskdecomp.cli.entrypoint`) turns them into a
one-line message and an exit code. Messages say what is wrong *and what to do*.
"""

from __future__ import annotations

import os
import re

__all__ = [
    "TaskDecompError",
    "ConfigError",
    "InputError",
    "BackendError",
    "AuthError",
    "HubError",
    "Interrupted",
    "redact",
]


class TaskDecompError(Exception):
    """Base class. `exit_code` is what the CLI exits with."""

    exit_code = 2


class ConfigError(TaskDecompError):
    """Bad flags, bad YAML, unknown keys, out-of-range values."""


class InputError(TaskDecompError):
    """Missing/corrupt input files, wrong dataset schema, empty input."""


class BackendError(TaskDecompError):
    """An LLM endpoint failed for good (unreachable after retries, 4xx, budget hit).

    `prompt_tokens`, `completion_tokens` and `cost_usd` are what the failed request was billed
    all the same (attempts whose replies were unusable): the build journals that spend."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def billed(self, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> BackendError:
        """Record what the failed request billed; returns self (for `raise err.billed(...)`)."""
        self.prompt_tokens, self.completion_tokens, self.cost_usd = prompt_tokens, completion_tokens, cost_usd
        return self


class AuthError(BackendError):
    """401/403 or a missing key/token."""


class HubError(TaskDecompError):
    """A Hub operation failed (repo id, permissions, upload)."""


class Interrupted(TaskDecompError):
    """Ctrl-C: work done so far is safe; the message says how to resume."""

    exit_code = 130


# --- secrets ---------------------------------------------------------------------------
# Keys never reach logs, journals, cards or error messages: every message that leaves the
# library through the reporter or the CLI edge goes through `redact`.
_SECRET_ENV = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN")
_SECRET_PATTERNS = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|hf_[A-Za-z0-9]{8,})")


def redact(text: str) -> str:
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return _SECRET_PATTERNS.sub("***", text)
