"""The backend interface carries what the build loop needs (issue 11): prompt version, stats,
token estimate and the worst-case cost of a request over all its attempts, on both backends,
so the build loop needs no backend internals (`getattr(backend, "price")` and the like)."""

from __future__ import annotations

import asyncio

import pytest

from taskdecomp.dataset_builder.backend import Backend, GenerationRequest, Usage
from taskdecomp.dataset_builder.offline import OfflineBackend
from taskdecomp.dataset_builder.openai_backend import (
    PROMPT_VERSION,
    OpenAIBackend,
    estimate_request_tokens,
    max_tokens,
)
from taskdecomp.dataset_builder.pricing import cost, load_prices, price_for
from taskdecomp.taxonomy import CELLS

REQ = GenerationRequest("req-0", CELLS[5], 4, seed=3)
URL = "http://127.0.0.1:9/v1"  # never called: these members compute locally


@pytest.mark.parametrize(
    "backend", [OfflineBackend(seed=1), OpenAIBackend("gpt-4o", base_url=URL, api_key="k")]
)
def test_both_backends_carry_the_whole_interface(backend):
    assert isinstance(backend, Backend)
    for name in ("source", "prompt_version", "stats", "estimate", "worst_case_cost"):
        assert hasattr(backend, name), name
    assert isinstance(backend.estimate(REQ), Usage)
    assert backend.worst_case_cost(REQ) >= backend.worst_case_cost(REQ, batch=True) >= 0


def test_offline_sends_no_prompt_and_costs_nothing():
    backend = OfflineBackend(seed=1)
    assert backend.prompt_version is None and backend.worst_case_cost(REQ) == 0.0
    asyncio.run(backend.generate(REQ))
    assert backend.stats["requests"] == 1


def test_openai_worst_case_covers_every_attempt():
    backend = OpenAIBackend("gpt-4o", base_url=URL, api_key="k", max_attempts=4)
    assert backend.prompt_version == PROMPT_VERSION
    prompt, completion = estimate_request_tokens(REQ, REQ.n_rows)
    assert backend.estimate(REQ) == Usage(prompt, completion)
    one = cost(Usage(int(prompt * 1.25), max_tokens(REQ.n_rows)), price_for("gpt-4o", load_prices()))
    assert backend.worst_case_cost(REQ) == pytest.approx(4 * one)
    # a Batch API line is sent once, at the batch discount
    assert backend.worst_case_cost(REQ, batch=True) == pytest.approx(one * 0.5)
