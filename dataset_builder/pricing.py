"""Cost accounting: a per-model price table (a YAML file) and the arithmetic.

Decision for models the table does not list (a local vLLM/Ollama model, a new snapshot):
the cost is unknown, counted as 0, and `Price.known` is False so that callers can warn once
(the OpenAI backend does) and refuse `--max-cost` (the build loop should: a budget cannot be
enforced on an unknown price). Passing `--prices FILE` with the model's line fixes both.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from taskdecomp.errors import ConfigError

from .backend import Usage

__all__ = ["Price", "load_prices", "price_for", "cost"]


@dataclass(frozen=True)
class Price:
    input_per_m: float  # USD per 1M prompt tokens
    output_per_m: float  # USD per 1M completion tokens
    batch_discount: float = 0.5  # multiplier for Batch API requests
    known: bool = True  # False: the model is not in the table, cost counted as 0


def _read(path: str | None) -> tuple[str, str]:
    if path is None:
        text = resources.files(__package__).joinpath("prices.yaml").read_text(encoding="utf-8")
        return text, "the shipped prices.yaml"
    try:
        return Path(path).read_text(encoding="utf-8"), path
    except OSError as exc:
        raise ConfigError(
            f"cannot read price file {path}: {exc.strerror}: pass a readable --prices FILE"
        ) from None


def load_prices(path: str | None = None) -> dict[str, Price]:
    """Model name → Price, from `path` or the shipped table. A malformed file → ConfigError."""
    text, where = _read(path)
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML ({exc.__class__.__name__}): fix it") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ConfigError(
            f"{where} needs a `models:` mapping of name → {{input: USD, output: USD}} per 1M tokens"
        )
    discount = data.get("batch_discount", 0.5)
    if not isinstance(discount, (int, float)) or not 0 < discount <= 1:
        raise ConfigError(f"{where}: batch_discount must be a number in (0, 1], got {discount!r}")
    prices = {}
    for name, entry in data["models"].items():
        ok = isinstance(entry, dict) and all(
            isinstance(entry.get(k), (int, float)) and entry[k] >= 0 for k in ("input", "output")
        )
        if not ok:
            raise ConfigError(f"{where}: model {name!r} needs non-negative numbers `input` and `output`")
        prices[str(name)] = Price(float(entry["input"]), float(entry["output"]), float(discount))
    return prices


def price_for(model: str, prices: dict[str, Price]) -> Price:
    """The model's price; a dated snapshot falls back to the longest listed prefix
    (gpt-4o-2024-08-06 → gpt-4o); unknown → a zero Price with `known=False`."""
    if model in prices:
        return prices[model]
    prefixes = [name for name in prices if model.startswith(name + "-")]
    if prefixes:
        return prices[max(prefixes, key=len)]
    discount = next(iter(prices.values())).batch_discount if prices else 0.5
    return Price(0.0, 0.0, discount, known=False)


def cost(usage: Usage, price: Price, batch: bool = False) -> float:
    """USD billed for `usage` at `price` (Batch API requests at the discounted rate)."""
    usd = (usage.prompt_tokens * price.input_per_m + usage.completion_tokens * price.output_per_m) / 1e6
    return usd * price.batch_discount if batch else usd
