"""Choosing and making the build's backend: offline (built in), OpenAI-compatible, or the
tool-graph generator of `--tools`.

Everything here answers from the config alone, before anything is sent, so a command that
must be refused is refused before it costs anything.
"""

from __future__ import annotations

import os
from typing import Any

from taskdecomp.errors import AuthError, ConfigError
from taskdecomp.reporter import Reporter

from . import toolgraph
from .backend import Backend
from .build_config import BuildConfig

__all__ = [
    "AUTO_OFFLINE",
    "backend_kind",
    "resolve_backend_kind",
    "check_options",
    "backend_class",
    "make_backend",
    "prompt_version",
    "source_for",
]

AUTO_OFFLINE = "no OPENAI_API_KEY and no --base-url: using the built-in offline backend"


def backend_kind(cfg: BuildConfig) -> str:
    """The backend `cfg` asks for, saying nothing (callers report it once all checks passed)."""
    has_key = bool(os.environ.get("OPENAI_API_KEY"))
    if cfg.backend == "auto":
        return "openai" if has_key or cfg.base_url else "offline"
    if cfg.backend == "openai" and not has_key and not cfg.base_url:
        raise AuthError(
            "--backend openai needs OPENAI_API_KEY in the environment (or --base-url for a local server)"
        )
    return cfg.backend


def resolve_backend_kind(cfg: BuildConfig, reporter: Reporter) -> str:
    kind = backend_kind(cfg)
    if cfg.backend == "auto" and kind == "offline":
        reporter.info(AUTO_OFFLINE)
    return kind


def check_options(cfg: BuildConfig, kind: str) -> None:
    """Refuse options the chosen backend cannot honour, instead of ignoring them."""
    if cfg.batch and kind == "offline":
        how = "" if cfg.backend == "offline" else " (no OPENAI_API_KEY and no --base-url were given)"
        raise ConfigError(
            f"--batch needs the openai backend, but the offline backend was chosen{how}: drop --batch "
            f"or use --backend openai with OPENAI_API_KEY or --base-url"
        )
    if cfg.prices:
        from .pricing import load_prices

        load_prices(cfg.prices)  # a missing or broken price table is an error on any backend


def backend_class(kind: str, cfg: BuildConfig) -> type[Backend]:
    """The class `make_backend` would instantiate: what the build may know of a backend
    before one exists (its `prompt_version`, a class attribute, is part of the fingerprint)."""
    if kind == "offline" and cfg.tools:
        return toolgraph.ToolGraphBackend
    if kind == "offline":
        from .offline import OfflineBackend

        return OfflineBackend
    if cfg.tools:
        from .toolgraph_llm import ToolGraphOpenAIBackend

        return ToolGraphOpenAIBackend
    from .openai_backend import OpenAIBackend

    return OpenAIBackend


def prompt_version(kind: str, cfg: BuildConfig) -> str | None:
    """The prompt version of the backend `kind` (None when it sends no prompt)."""
    return backend_class(kind, cfg).prompt_version


def make_backend(kind: str, cfg: BuildConfig, reporter: Reporter) -> Backend:
    if kind == "offline" and cfg.tools:  # tool-graph rows (dataset_builder/toolgraph.py)
        return toolgraph.tool_backend(cfg)
    if kind == "offline":
        from .offline import OfflineBackend

        return OfflineBackend(seed=cfg.seed)
    # the openai SDK costs ~0.5 s to import: only a build that talks to a server pays it
    from .pricing import load_prices

    options: dict[str, Any] = dict(
        base_url=cfg.base_url,
        prices=load_prices(cfg.prices) if cfg.prices else None,
        rows_per_call=cfg.rows_per_call,
        concurrency=cfg.concurrency,
        rpm=cfg.rpm,
        tpm=cfg.tpm,
        timeout=cfg.timeout,
        max_attempts=cfg.max_attempts,
        max_wait=cfg.max_wait,
        reporter=reporter,
    )
    if cfg.tools:  # the graphs of each request go into the prompt
        from .toolgraph_llm import ToolGraphOpenAIBackend

        return ToolGraphOpenAIBackend(toolgraph.tool_catalogue(cfg.tools), cfg.model, **options)
    from .openai_backend import OpenAIBackend

    return OpenAIBackend(cfg.model, **options)


def source_for(kind: str, cfg: BuildConfig) -> str:
    """The rows' `source` field: what a backend of `kind` would call itself."""
    return "offline" if kind == "offline" else f"openai:{cfg.model}"
