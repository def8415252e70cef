"""The Batch API path with the real `openai` client against the fake server: JSONL, upload,
create, poll, download, batch-discounted cost, resume by id, and the failure statuses."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from taskdecomp.dataset_builder.backend import GenerationRequest
from taskdecomp.dataset_builder.batch import BatchRunner
from taskdecomp.dataset_builder.openai_backend import OpenAIBackend
from taskdecomp.dataset_builder.pricing import cost
from taskdecomp.errors import BackendError
from taskdecomp.schema import make_row, schema_errors
from taskdecomp.taxonomy import CELLS

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI  # noqa: E402

REQUESTS = [GenerationRequest(f"req-{i}", CELLS[i * 7], 2, seed=i) for i in range(5)]


def runner_for(fake: FakeOpenAI, **kw) -> tuple[OpenAIBackend, BatchRunner]:
    backend = OpenAIBackend(
        "gpt-4o", base_url=fake.base_url, api_key="sk-x", backoff_base=0.01, max_attempts=3
    )
    return backend, BatchRunner.from_backend(backend, poll_interval=0.05, **kw)


def go(fake: FakeOpenAI, body, **kw):
    async def main():
        backend, runner = runner_for(fake, **kw)
        try:
            return await body(runner)
        finally:
            await backend.aclose()

    return asyncio.run(main())


@pytest.fixture
def fake():
    with FakeOpenAI(batch_delay=0.2) as server:
        yield server


def test_jsonl_lines_are_chat_requests_keyed_by_request_id(fake):
    _, runner = runner_for(fake)
    lines = [json.loads(x) for x in runner.build_jsonl(REQUESTS).decode().splitlines()]
    assert [x["custom_id"] for x in lines] == [r.request_id for r in REQUESTS]
    assert {x["url"] for x in lines} == {"/v1/chat/completions"}
    assert all(x["body"]["response_format"]["type"] == "json_schema" for x in lines)


def test_submit_then_wait_returns_discounted_results(fake):
    async def body(runner):
        batch_id = await runner.submit(REQUESTS)
        return batch_id, await runner.wait(batch_id), runner.price

    batch_id, results, price = go(fake, body)
    assert batch_id.startswith("batch_")
    assert sorted(r.request_id for r in results) == sorted(r.request_id for r in REQUESTS)
    for res in results:
        assert len(res.candidates) == 2 and res.usage.total_tokens > 0
        assert res.cost_usd == pytest.approx(cost(res.usage, price) * 0.5)
        assert all(schema_errors(make_row(c, "openai:gpt-4o")) == [] for c in res.candidates)
    assert fake.stats["batches_created"] == 1 and fake.stats["files_uploaded"] == 1
    assert fake.stats["chat_requests"] == 0  # nothing went through the live endpoint


def test_resume_polls_the_journaled_id_without_paying_again(fake):
    fake.batch_delay = 0.5

    async def first(runner):  # "killed" right after submit: only the id survives
        return await runner.submit(REQUESTS)

    batch_id = go(fake, first)

    async def second(runner):  # a new process: a fresh client and runner
        return await runner.wait(batch_id)

    results = go(fake, second)
    assert len(results) == len(REQUESTS)
    assert fake.stats["batches_created"] == 1 and fake.stats["files_uploaded"] == 1


def test_lost_create_response_does_not_create_a_second_batch(fake):
    fake.batch_create_lost = 1  # created, but the client sees a 500 and retries

    async def body(runner):
        return await runner.wait(await runner.submit(REQUESTS))

    assert len(go(fake, body)) == len(REQUESTS)
    assert fake.stats["batches_created"] == 1 and fake.stats["status_500"] == 1


def test_error_lines_are_left_out_and_named(fake):
    fake.batch_fail_ids = {"req-1", "req-3"}

    async def body(runner):
        return await runner.wait(await runner.submit(REQUESTS)), runner.last_errors

    results, errors = go(fake, body)
    assert sorted(r.request_id for r in results) == ["req-0", "req-2", "req-4"]
    assert set(errors) == {"req-1", "req-3"}


def test_expired_batch_keeps_the_finished_part(fake):
    fake.batch_final_status = "expired"

    async def body(runner):
        return await runner.wait(await runner.submit(REQUESTS))

    results = go(fake, body)
    assert 0 < len(results) < len(REQUESTS)


def test_failed_batch_raises(fake):
    fake.batch_final_status = "failed"

    async def body(runner):
        return await runner.wait(await runner.submit(REQUESTS))

    with pytest.raises(BackendError, match="failed.*nothing was billed"):
        go(fake, body)


def test_wait_is_bounded_and_says_how_to_resume(fake):
    fake.batch_delay = 60

    async def body(runner):
        return await runner.wait(await runner.submit(REQUESTS))

    with pytest.raises(BackendError, match="re-run the same command later"):
        go(fake, body, max_wait=0.3)
