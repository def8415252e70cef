"""The one LLM backend interface.

The build loop plans *requests* (one taxonomy cell, `n_rows` wanted, a stable id) and hands
them to a backend; the backend returns *candidates* (dicts with instruction, input,
structure, subtasks) plus the usage it was billed. Validation, dedup, journaling and cost
accounting stay in the build loop, so every backend gets them for free.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from taskdecomp.taxonomy import Cell

__all__ = ["GenerationRequest", "GenerationResult", "Usage", "Backend"]


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str  # stable: hash of (build fingerprint, cell, index); journal key
    cell: Cell
    n_rows: int
    seed: int  # per-request seed derived from --seed; offline backend is a pure function of it
    avoid: tuple[str, ...] = ()  # a few recent instructions of this cell, to steer away from dupes


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class GenerationResult:
    request_id: str
    candidates: list[dict[str, Any]]
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    attempts: int = 1


@runtime_checkable
class Backend(Protocol):
    """What the build loop may use of a backend: nothing else (no private attributes)."""

    #: the rows' `source` field, e.g. "offline" or "openai:gpt-4o-2024-08-06"
    source: str
    #: the prompt version (part of the build fingerprint); None when no prompt is sent
    prompt_version: ClassVar[str | None]
    #: counters for the summary: requests, retries, invalid_reply, http_429, ...
    stats: Counter[str]

    def estimate(self, request: GenerationRequest) -> Usage:
        """Estimated tokens one attempt of `request` bills (for --dry-run and budgets)."""
        ...

    def worst_case_cost(self, request: GenerationRequest, *, batch: bool = False) -> float:
        """USD one request can bill at most: every attempt the backend may make (its
        max_attempts; one for a Batch API line), each with a full-length completion."""
        ...

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Produce candidates for one request. Raises `BackendError`/`AuthError` when the
        request cannot succeed (after the backend's own bounded retries)."""
        ...

    async def aclose(self) -> None: ...
