"""The one LLM backend interface.

The build loop plans *requests* (one taxonomy cell, `n_rows` wanted, a stable id) and hands
them to a backend; the backend returns *candidates* (dicts with instruction, input,
structure, subtasks) plus the usage it was billed. Validation, dedup, journaling and cost
accounting stay in the build loop, so every backend gets them for free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .taxonomy import Cell

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
    #: the rows' `source` field, e.g. "offline" or "openai:gpt-4o-2024-08-06"
    source: str

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Produce candidates for one request. Raises `BackendError`/`AuthError` when the
        request cannot succeed (after the backend's own bounded retries)."""
        ...

    async def aclose(self) -> None: ...
