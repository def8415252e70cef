"""A plan bigger than one Batch API job may hold (50,000 requests / 200 MB per input file) is
cut into several batches, each created and handed to the caller (to journal) before the next;
tiny limits stand in for the real ones. Real `openai` client, fake server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from taskdecomp.dataset_builder import batch as batch_mod
from taskdecomp.dataset_builder.backend import GenerationRequest
from taskdecomp.dataset_builder.batch import BatchRunner
from taskdecomp.dataset_builder.cli import main
from taskdecomp.dataset_builder.openai_backend import OpenAIBackend
from taskdecomp.errors import BackendError
from taskdecomp.taxonomy import CELLS

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI  # noqa: E402

KEY = "sk-test-secret-key-0123456789"
REQUESTS = [GenerationRequest(f"req-{i}", CELLS[i * 3], 2, seed=i) for i in range(8)]


def _go(fake: FakeOpenAI, body, **kw):
    async def run():
        backend = OpenAIBackend("gpt-4o", base_url=fake.base_url, api_key=KEY, backoff_base=0.01)
        try:
            return await body(BatchRunner.from_backend(backend, poll_interval=0.05, **kw))
        finally:
            await backend.aclose()

    return asyncio.run(run())


def test_split_respects_request_and_byte_limits():
    # split only renders lines: the client is never called
    backend = OpenAIBackend("gpt-4o", base_url="http://127.0.0.1:9/v1", api_key=KEY)
    by_count = BatchRunner.from_backend(backend, max_requests=3)
    assert [len(p) for p in by_count.split(REQUESTS)] == [3, 3, 2]
    line = len(by_count.build_jsonl(REQUESTS[:1]))
    by_bytes = BatchRunner.from_backend(backend, max_bytes=int(line * 2.5))
    parts = by_bytes.split(REQUESTS)
    assert [r for p in parts for r in p] == REQUESTS  # order kept, nothing lost
    assert len(parts) >= 3 and all(len(by_bytes.build_jsonl(p)) <= line * 2.5 for p in parts)
    with pytest.raises(BackendError, match="--rows-per-call"):  # one line can never fit
        BatchRunner.from_backend(backend, max_bytes=10).split(REQUESTS[:1])


def test_submit_all_hands_each_batch_over_before_the_next_and_all_complete():
    with FakeOpenAI(batch_delay=0.1) as fake:
        seen: list[tuple[str, list[str], int]] = []

        async def body(runner):
            def journal(batch_id, part):  # what the build journals, and how many exist by then
                seen.append((batch_id, [r.request_id for r in part], fake.stats["batches_created"]))

            ids = await runner.submit_all(REQUESTS, on_submitted=journal)
            return ids, [await runner.wait(i) for i in ids]

        ids, results = _go(fake, body, max_requests=3)
        assert fake.stats["batches_created"] == 3
    assert [s[0] for s in seen] == ids and [s[2] for s in seen] == [1, 2, 3]
    assert [rid for s in seen for rid in s[1]] == [r.request_id for r in REQUESTS]
    got = [res.request_id for part in results for res in part]
    assert sorted(got) == sorted(r.request_id for r in REQUESTS)


def test_submit_refuses_an_oversized_batch_instead_of_sending_it():
    with FakeOpenAI() as fake:
        with pytest.raises(ValueError, match="submit_all"):
            _go(fake, lambda r: r.submit(REQUESTS), max_requests=3)
        assert fake.stats["files_uploaded"] == 0


def test_build_with_more_requests_than_one_batch_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setattr(batch_mod, "MAX_BATCH_REQUESTS", 3)
    out = tmp_path / "ds"
    with FakeOpenAI(batch_delay=0.05) as fake:
        args = ["--n", "20", "--out", str(out), "--base-url", fake.base_url, "--rows-per-call", "2"]
        assert main([*args, "--batch", "--batch-poll", "0.05", "--quiet"]) == 0
        created = fake.stats["batches_created"]
    lines = [json.loads(x) for x in (out / ".build" / "journal.jsonl").read_text().splitlines()]
    batches = [x for x in lines if x["t"] == "batch"]
    assert created == len(batches) >= 4  # 10 requests, 3 per batch: each batch journaled
    assert json.loads((out / "stats.json").read_text())["n_rows"] == 20
