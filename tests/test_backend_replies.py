"""Replies that are 200 but not a usable API answer, with the real `openai` client against the
fake server on 127.0.0.1: a truncated HTTP body (the SDK's JSON parse fails) is retried like an
invalid reply; a non-JSON page (a captive proxy's HTML) is retried a bounded number of times,
then named as "not an OpenAI-compatible API" in one line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from taskdecomp.dataset_builder.backend import GenerationRequest
from taskdecomp.dataset_builder.cli import main
from taskdecomp.dataset_builder.openai_backend import OpenAIBackend
from taskdecomp.errors import BackendError
from taskdecomp.taxonomy import Cell

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI  # noqa: E402

KEY = "sk-test-secret-key-0123456789"
BUILD_DATASET = Path(sys.executable).with_name("build-dataset")
REQ = GenerationRequest("req-0", Cell(("audio", "text"), "chain"), 3, seed=0)


def _backend(fake: FakeOpenAI, **kw) -> OpenAIBackend:
    opts = {"backoff_base": 0.01, "backoff_cap": 0.05, "timeout": 5.0, "max_attempts": 4, "max_wait": 10.0}
    opts.update(kw)
    return OpenAIBackend("gpt-4o", base_url=fake.base_url, api_key=KEY, **opts)


def _generate(backend: OpenAIBackend):
    async def go():
        try:
            return await backend.generate(REQ)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_truncated_body_is_retried_counted_and_billed():
    with FakeOpenAI() as fake:
        fake.script("cut_body")
        backend = _backend(fake)
        res = _generate(backend)
        assert fake.stats["chat_requests"] == 2
    assert res.attempts == 2 and res.candidates
    assert backend.stats["invalid_reply"] == 1 and backend.stats["retries"] == 1
    # the cut reply was (most likely) billed: its prompt is counted, not dropped
    assert res.usage.prompt_tokens > fake.stats["prompt_tokens"] / 2


def test_truncated_bodies_only_give_up_after_max_attempts():
    with FakeOpenAI() as fake:
        fake.script(*["cut_body"] * 5)
        backend = _backend(fake, max_attempts=3)
        with pytest.raises(BackendError, match="after 3 attempts") as info:
            _generate(backend)
        assert fake.stats["chat_requests"] == 3
    assert info.value.prompt_tokens > 0  # spend of the cut replies is reported


def test_build_completes_when_every_third_body_is_cut(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "ds"
    with FakeOpenAI(cut_every=3) as fake:
        args = ["--n", "12", "--out", str(out), "--base-url", fake.base_url, "--rows-per-call", "3"]
        assert main([*args, "--concurrency", "2", "--quiet"]) == 0
        assert fake.stats["chat_requests"] >= 6  # some bodies were cut, and sent again
    rows = [r for split in datasets.load_dataset(str(out)).values() for r in split]
    assert len(rows) == 12
    assert json.loads((out / "stats.json").read_text())["n_rows"] == 12


def test_html_reply_gives_up_naming_the_url():
    with FakeOpenAI(html=True) as fake:
        backend = _backend(fake, max_attempts=3)
        with pytest.raises(BackendError) as info:
            _generate(backend)
        assert fake.stats["html_replies"] == 3  # retried, but bounded
    msg = str(info.value)
    assert fake.base_url in msg and "OpenAI-compatible" in msg and "--base-url" in msg


def test_json_that_is_not_a_chat_completion_is_not_an_api():
    # some other service's JSON (no `choices`) at the URL is named the same way as HTML
    with FakeOpenAI() as fake:
        fake.script(*["not_completion"] * 3)
        with pytest.raises(BackendError, match="OpenAI-compatible"):
            _generate(_backend(fake, max_attempts=3))
        assert fake.stats["chat_requests"] == 3


def test_console_script_html_server_one_line_exit_2(tmp_path):
    out = tmp_path / "ds"
    with FakeOpenAI(html=True) as fake:
        env = {**os.environ, "OPENAI_API_KEY": KEY}
        args = ["--backend", "openai", "--base-url", fake.base_url, "--n", "5", "--out", str(out)]
        done = subprocess.run(
            [str(BUILD_DATASET), *args, "--max-attempts", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert fake.stats["html_replies"] == 2
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(err) == 1 and "Traceback" not in done.stderr
    assert fake.base_url in err[0] and "OpenAI-compatible" in err[0] and "--base-url" in err[0]
    assert not (out / "data").exists()
