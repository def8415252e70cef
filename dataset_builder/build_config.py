"""`build-dataset`'s one config object: YAML (`--config FILE`) with every field a flag."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from taskdecomp.errors import ConfigError

__all__ = ["BuildConfig", "DEFAULT_MODEL"]

DEFAULT_MODEL = "gpt-4o"


def _h(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class BuildConfig:
    n: int = field(default=5000, metadata=_h("number of unique, valid rows to build"))
    out: str = field(default="./task-decomposition", metadata=_h("output folder"))
    backend: Literal["auto", "openai", "offline"] = field(
        default="auto", metadata=_h("auto: openai when OPENAI_API_KEY or --base-url is set, else offline")
    )
    model: str = field(default=DEFAULT_MODEL, metadata=_h("model name for the openai backend"))
    base_url: str | None = field(
        default=None, metadata=_h("any OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    )
    rows_per_call: int = field(
        default=10, metadata=_h("rows asked for per request (one taxonomy cell per request)")
    )
    concurrency: int = field(default=8, metadata=_h("requests in flight at once"))
    rpm: float | None = field(default=None, metadata=_h("client-side requests-per-minute limit"))
    tpm: float | None = field(default=None, metadata=_h("client-side tokens-per-minute limit"))
    timeout: float = field(default=60.0, metadata=_h("seconds per request before it is retried"))
    max_attempts: int = field(default=6, metadata=_h("attempts per request (429/5xx/timeouts/invalid JSON)"))
    max_wait: float = field(default=120.0, metadata=_h("total seconds of backoff per request"))
    batch: bool = field(default=False, metadata=_h("use the OpenAI Batch API (half price, asynchronous)"))
    batch_poll: float = field(default=30.0, metadata=_h("seconds between Batch API status polls"))
    max_cost: float | None = field(
        default=None, metadata=_h("stop cleanly before spending more than this (USD)")
    )
    prices: str | None = field(default=None, metadata=_h("YAML price table (USD per 1M tokens per model)"))
    dry_run: bool = field(
        default=False, metadata=_h("print planned calls, estimated tokens and cost; call nothing")
    )
    seed: int = field(default=0, metadata=_h("seed for quotas, sampling, the offline backend and the split"))
    quotas: str | None = field(
        default=None, metadata=_h("YAML of per-cell weights (see recipes/quotas.example.yaml)")
    )
    tools: str | None = field(
        default=None,
        metadata=_h(
            "tool catalogue (YAML, or 'default' for the built-in one): build tool-graph rows whose "
            "steps name tools, with quotas over structure x size (--quotas keys: single, chain, dag/4, *)"
        ),
    )
    test_size: float = field(
        default=0.1, metadata=_h("share of rows in the test split (stratified by modalities)")
    )
    dedup_threshold: float = field(
        default=0.7, metadata=_h("ROUGE-L at or above which two instructions are duplicates")
    )
    push: bool = field(
        default=False, metadata=_h("publish to the Hub at the end (needs --repo-id and a token)")
    )
    repo_id: str | None = field(default=None, metadata=_h("Hub dataset repo, e.g. USER/task-decomposition"))
    private: bool = field(default=False, metadata=_h("create the Hub repo private"))
    revision: str | None = field(default=None, metadata=_h("Hub branch to push to"))
    quiet: bool = field(default=False, metadata=_h("no progress output"))

    def __post_init__(self) -> None:
        positive = {"n": self.n, "rows_per_call": self.rows_per_call, "concurrency": self.concurrency}
        positive.update(max_attempts=self.max_attempts)
        for name, value in positive.items():
            if value < 1:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be at least 1, got {value}")
        for name in ("rpm", "tpm", "max_cost", "timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if not 0 <= self.test_size < 1:
            raise ConfigError(f"--test-size must be in [0, 1), got {self.test_size}")
        if not 0 < self.dedup_threshold <= 1:
            raise ConfigError(f"--dedup-threshold must be in (0, 1], got {self.dedup_threshold}")
        if self.rows_per_call > 50:
            raise ConfigError(f"--rows-per-call must be at most 50, got {self.rows_per_call}")
        if self.push and not self.repo_id:
            raise ConfigError("--push needs --repo-id USER/NAME")
