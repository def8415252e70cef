"""The OpenAI backend with the real `openai` client against the fake server on 127.0.0.1:
retry policy, error mapping, json_schema fallback, cost, and the client-side rate limiter."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from taskdecomp.dataset_builder.backend import Backend, GenerationRequest
from taskdecomp.dataset_builder.limits import RateLimiter, TokenBucket
from taskdecomp.dataset_builder.openai_backend import (
    OpenAIBackend,
    candidate_schema,
    estimate_request_tokens,
    parse_candidates,
)
from taskdecomp.dataset_builder.pricing import cost, load_prices, price_for
from taskdecomp.dataset_builder.retry import InvalidReply
from taskdecomp.errors import AuthError, BackendError, ConfigError
from taskdecomp.schema import make_row, schema_errors
from taskdecomp.taxonomy import Cell

sys.path.insert(0, str(Path(__file__).parent))
from conftest import free_port  # noqa: E402
from fake_openai import FakeOpenAI  # noqa: E402

CELL = Cell(("audio", "text"), "chain")
KEY = "sk-test-secret-key-0123456789"


def req(i: int = 0, n: int = 3, cell: Cell = CELL) -> GenerationRequest:
    return GenerationRequest(f"req-{i}", cell, n, seed=i)


def make(fake: FakeOpenAI | None, **kw) -> OpenAIBackend:
    opts = {"backoff_base": 0.01, "backoff_cap": 0.05, "timeout": 5.0, "max_attempts": 4, "max_wait": 10.0}
    opts.update(kw)
    base_url = opts.pop("base_url", fake.base_url if fake else None)
    return OpenAIBackend("gpt-4o", base_url=base_url, api_key=opts.pop("api_key", KEY), **opts)


def run(backend: OpenAIBackend, *requests: GenerationRequest):
    async def go():
        try:
            return await asyncio.gather(*(backend.generate(r) for r in requests))
        finally:
            await backend.aclose()

    return asyncio.run(go())


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


def test_success_structured_output_rows_usage_and_cost(fake):
    backend = make(fake)
    assert isinstance(backend, Backend) and backend.source == "openai:gpt-4o"
    (res,) = run(backend, req(n=4))
    assert res.attempts == 1 and len(res.candidates) == 4
    for cand in res.candidates:
        row = make_row(cand, backend.source)
        assert schema_errors(row) == [] and row["modalities"] == ["audio", "text"]
    assert res.usage.prompt_tokens == fake.stats["prompt_tokens"] > 0
    assert res.usage.completion_tokens == fake.stats["completion_tokens"] > 0
    assert res.cost_usd == pytest.approx(cost(res.usage, price_for("gpt-4o", load_prices())))
    body = fake.bodies[-1]
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert "audio+text/chain" in body["messages"][1]["content"]


def test_strict_schema_closes_every_object_and_requires_all_keys():
    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node["additionalProperties"] is False
                assert sorted(node["required"]) == sorted(node["properties"])
            for v in node.values():
                walk(v)

    schema = candidate_schema()
    walk(schema)
    item = schema["properties"]["rows"]["items"]["properties"]["subtasks"]["items"]
    assert set(item["properties"]) == {"step", "description", "modality", "operation", "depends_on"}


@pytest.mark.parametrize(
    ("step", "least"),
    [({"status": 429, "retry_after": 0.4}, 0.4), ({"status": 429, "retry_after_ms": 300}, 0.3)],
)
def test_429_waits_as_the_server_asks(fake, step, least):
    fake.script(step)
    t0 = time.monotonic()
    (res,) = run(make(fake, backoff_base=0.001), req())
    assert time.monotonic() - t0 >= least
    assert res.attempts == 2 and fake.stats["status_429"] == 1 and res.candidates


def test_429_retry_after_http_date(fake):
    fake.script({"status": 429, "retry_after_date": 2})  # an HTTP date ~1-2 s ahead (1 s resolution)
    t0 = time.monotonic()
    (res,) = run(make(fake, backoff_base=0.001), req())
    assert time.monotonic() - t0 >= 0.9 and res.attempts == 2


def test_500_then_success(fake):
    fake.script("500", "502")
    backend = make(fake)
    (res,) = run(backend, req())
    assert res.attempts == 3 and res.candidates and backend.stats["retries"] == 2


def test_timeout_then_success(fake):
    fake.script({"delay": 3.0})
    t0 = time.monotonic()
    (res,) = run(make(fake, timeout=0.3), req())
    assert res.attempts == 2 and res.candidates and time.monotonic() - t0 < 2.5


@pytest.mark.parametrize(
    "bad", ["invalid_json", "refusal", {"content": '{"rows": []}'}, {"content": "[1, 2]"}]
)
def test_unusable_reply_is_retried_and_billed(fake, bad):
    fake.script(bad)
    (res,) = run(make(fake), req())
    assert res.attempts == 2 and res.candidates
    # the garbage reply was billed too: usage covers both attempts
    assert res.usage.prompt_tokens == fake.stats["prompt_tokens"]
    assert res.usage.prompt_tokens > 1.5 * estimate_request_tokens(req(), 3)[0] * 0.8


def test_retries_are_bounded_and_report_spend(fake):
    fake.script(*["invalid_json"] * 10)
    with pytest.raises(BackendError, match="unusable replies after 3 attempts") as info:
        run(make(fake, max_attempts=3), req())
    assert fake.stats["chat_requests"] == 3
    assert info.value.prompt_tokens == fake.stats["prompt_tokens"] > 0  # spend is not lost


def test_401_fails_at_once_without_the_key():
    with FakeOpenAI(api_key="sk-the-right-one") as fake:
        with pytest.raises(AuthError) as info:
            run(make(fake), req())
        assert fake.stats["chat_requests"] == 1  # never retried
    message = str(info.value)
    assert "OPENAI_API_KEY" in message and KEY not in message and KEY[:12] not in message


@pytest.mark.parametrize(
    ("step", "needle"), [("400", "HTTP 400"), ("404", "gpt-4o"), ("403", "OPENAI_API_KEY")]
)
def test_4xx_is_never_retried(fake, step, needle):
    fake.script(step)
    with pytest.raises(BackendError, match=needle):
        run(make(fake), req())
    assert fake.stats["chat_requests"] == 1


def test_insufficient_quota_429_is_not_retried(fake):
    fake.script({"status": 429, "code": "insufficient_quota"})
    with pytest.raises(BackendError, match="quota"):
        run(make(fake), req())
    assert fake.stats["chat_requests"] == 1


def test_retry_after_beyond_max_wait_gives_up_at_once(fake):
    fake.script({"status": 429, "retry_after": 30})
    t0 = time.monotonic()
    with pytest.raises(BackendError, match="--max-wait"):
        run(make(fake, max_wait=1.0), req())
    assert time.monotonic() - t0 < 5 and fake.stats["chat_requests"] == 1


def test_unreachable_base_url_is_bounded():
    url = f"http://127.0.0.1:{free_port()}/v1"
    t0 = time.monotonic()
    with pytest.raises(BackendError, match="cannot reach .* check --base-url"):
        run(make(None, base_url=url, max_attempts=3, backoff_base=0.05), req())
    assert time.monotonic() - t0 < 10


def test_missing_key_without_base_url_says_what_to_do():
    with pytest.raises(AuthError, match="OPENAI_API_KEY"):
        OpenAIBackend("gpt-4o", base_url=None, api_key=None)


def test_json_schema_fallback_happens_once_and_sticks():
    with FakeOpenAI(json_schema=False) as fake:
        backend = make(fake)

        async def go():
            first = await backend.generate(req(0))
            second = await backend.generate(req(1))
            await backend.aclose()
            return first, second

        first, second = asyncio.run(go())
        assert first.candidates and second.candidates
        assert fake.stats["status_400"] == 1 and fake.stats["chat_requests"] == 3
        body = fake.bodies[-1]
        assert body["response_format"] == {"type": "json_object"}
        assert "JSON object" in body["messages"][0]["content"]


def test_parse_candidates_drops_unusable_rows_and_unwraps_fences():
    good = {"instruction": "Make a video", "input": "", "structure": "chain", "subtasks": [{"step": 1}]}
    text = '```json\n{"rows": [' + __import__("json").dumps(good) + ', {"instruction": ""}, 3]}\n```'
    assert [c["instruction"] for c in parse_candidates(text)] == ["Make a video"]
    for bad in ["", "nope", '{"rows": [{"instruction": ""}]}', '{"a": 1}']:
        with pytest.raises(InvalidReply):
            parse_candidates(bad)


def test_prices_table_and_unknown_model(tmp_path):
    prices = load_prices()
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4-turbo"):
        assert price_for(model, prices).known
    assert price_for("gpt-4o-2024-08-06", prices) == prices["gpt-4o"]
    assert price_for("gpt-4o-mini-2024-07-18", prices) == prices["gpt-4o-mini"]
    unknown = price_for("llama-3-8b", prices)
    assert not unknown.known and unknown.input_per_m == 0
    from taskdecomp.dataset_builder.backend import Usage

    assert cost(Usage(1_000_000, 1_000_000), prices["gpt-4o"], batch=True) == pytest.approx(6.25)
    bad = tmp_path / "p.yaml"
    bad.write_text("models: {m: {input: -1, output: 2}}\n")
    with pytest.raises(ConfigError, match="non-negative"):
        load_prices(str(bad))
    with pytest.raises(ConfigError, match="--prices"):
        load_prices(str(tmp_path / "missing.yaml"))


def test_estimate_tracks_the_rendered_prompt():
    p3, c3 = estimate_request_tokens(req(n=3), 3)
    p5, c5 = estimate_request_tokens(req(n=3), 5)
    assert c5 > c3 and p5 == p3
    avoid = GenerationRequest("x", CELL, 3, 0, avoid=("Write a very long podcast script " * 20,))
    assert estimate_request_tokens(avoid, 3)[0] > p3 + 100


def test_token_bucket_paces_from_empty():
    async def go():
        bucket = TokenBucket(rate=50.0, capacity=5.0)  # starts empty
        t0 = time.monotonic()
        for _ in range(20):
            await bucket.take(1)
        return time.monotonic() - t0

    assert 0.35 <= asyncio.run(go()) <= 1.0  # 20 units at 50/s ≈ 0.4 s, no initial burst


def test_limiter_reconciles_tokens():
    async def settle(lim: RateLimiter, reserved: int, used: int) -> float:
        async with lim.slot(reserved) as slot:
            before = lim.tokens.level
            slot.used(used)
            slot.used(0)  # settles once: a second call changes nothing
        return lim.tokens.level - before

    async def go():
        lim = RateLimiter(tpm=60_000, concurrency=2)  # 980 tokens/s after the safety margin
        return await settle(lim, 500, 100), await settle(lim, 500, 900)

    refunded, charged = asyncio.run(go())
    assert refunded == pytest.approx(400, abs=20)  # reserved 500, billed 100: 400 back
    assert charged == pytest.approx(-400, abs=20)  # billed 900: 400 of debt


@pytest.mark.slow
def test_rate_limiter_keeps_under_server_rpm():
    """A server allowing 10 requests per 1 s window: with --rpm 600 the client never gets a 429;
    without the limiter the same load does (so the check can fail)."""
    n = 24

    def load(**kw):
        with FakeOpenAI(rpm=600, window=1.0) as fake:
            run(
                make(fake, concurrency=8, max_attempts=20, max_wait=60, **kw),
                *[req(i, n=1) for i in range(n)],
            )
            return fake.stats["status_429"], list(fake.chat_times)

    limited_429, times = load(rpm=600)
    assert limited_429 == 0
    ok = sorted(times)
    assert max(sum(1 for t in ok if a <= t < a + 1.0) for a in ok) <= 10
    unlimited_429, _ = load()
    assert unlimited_429 > 0


def test_fake_server_runs_as_a_script():
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "fake_openai.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("FAKE_OPENAI_READY http://127.0.0.1:")
        client = openai.OpenAI(base_url=line.split()[1], api_key="x", max_retries=0)
        reply = client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Write exactly 2 rows for taxonomy cell: `video/dag`."}],
        )
        rows = __import__("json").loads(reply.choices[0].message.content)["rows"]
        assert len(rows) == 2 and reply.usage.total_tokens > 0
        client.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
