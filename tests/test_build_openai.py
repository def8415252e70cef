"""build-dataset against an OpenAI-compatible server on 127.0.0.1 (the real `openai` client):
kill -9 and resume, 401, unreachable endpoint, --dry-run, --max-cost and --batch."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets

from taskdecomp.dataset_builder.cli import main

from conftest import free_port
from fake_openai import FakeOpenAI

BUILD = [sys.executable, "-m", "taskdecomp.dataset_builder.cli"]
KEY = "sk-test-secret-key-0123456789"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OPENAI_API_KEY"] = KEY
    return env


def _journal_lines(out: Path) -> list[dict]:
    path = out / ".build" / "journal.jsonl"
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a torn last line
            lines.append(json.loads(line))
    return lines


def _args(n: int, out: Path, base_url: str, *extra: str) -> list[str]:
    """build-dataset's arguments for `n` rows into `out` from the server at `base_url`."""
    return ["--n", str(n), "--out", str(out), "--base-url", base_url, *extra]


def _rows(out: Path) -> list[dict]:
    return [r for split in datasets.load_dataset(str(out)).values() for r in split]


def test_kill_9_then_resume_pays_nothing_twice(tmp_path):
    out = tmp_path / "ds"
    with FakeOpenAI(latency=0.15) as fake:
        args = [
            *BUILD,
            *_args(60, out, fake.base_url, "--rows-per-call", "3", "--concurrency", "3", "--quiet"),
        ]
        proc = subprocess.Popen(args, env=_env())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(_journal_lines(out)) < 5:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        journaled = {r["id"] for r in _journal_lines(out) if r["t"] == "result"}
        sent_first = fake.stats["chat_requests"]
        assert len(journaled) >= 5 and not (out / "data").exists()

        assert subprocess.run(args, env=_env(), timeout=300).returncode == 0
        stats = json.loads((out / "stats.json").read_text())
        sent_second = fake.stats["chat_requests"] - sent_first
    rows = _rows(out)
    assert len(rows) == 60 and len({r["id"] for r in rows}) == 60
    assert stats["n_rows"] == 60
    # every journaled request was replayed, not re-sent: the second run sent only new ones
    assert stats["requests_this_run"] == sent_second
    assert stats["requests"] - stats["requests_this_run"] >= len(journaled)
    # the only work paid twice is what was in flight (not yet journaled) at the kill
    assert sent_first - len(journaled) <= 2 * 3
    assert all(r["source"] == "openai:gpt-4o" for r in rows)
    assert KEY not in (out / ".build" / "journal.jsonl").read_text()
    assert KEY not in (out / "stats.json").read_text() and KEY not in (out / "README.md").read_text()


def test_401_fails_at_once_without_echoing_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAI(api_key="sk-the-right-one-9999999") as fake:
        t0 = time.monotonic()
        code = main(_args(50, tmp_path / "o", fake.base_url, "--quiet"))
        assert time.monotonic() - t0 < 30
        assert fake.stats["chat_requests"] == 1  # not retried, no burst
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "OPENAI_API_KEY" in err
    assert KEY not in err and "Traceback" not in err
    assert not (tmp_path / "o" / "data").exists()


def test_unreachable_base_url_is_bounded(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    url = f"http://127.0.0.1:{free_port()}/v1"
    t0 = time.monotonic()
    code = main(_args(10, tmp_path / "o", url, "--max-attempts", "3", "--max-wait", "3", "--timeout", "2"))
    assert time.monotonic() - t0 < 60
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "reach" in err[-1] and "--base-url" in err[-1]


def test_dry_run_calls_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAI() as fake:
        assert main(_args(1000, tmp_path / "o", fake.base_url, "--dry-run", "--rows-per-call", "10")) == 0
        assert fake.stats["chat_requests"] == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["requests"] >= 100 and plan["prompt_tokens"] > 0 and plan["estimated_cost_usd"] > 0
    assert not (tmp_path / "o").exists()


def test_max_cost_stops_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "o"
    with FakeOpenAI() as fake:
        # first find what one request costs, then allow about five of them (cells of 2+ steps
        # only: a probe of single-step rows would bill less than the requests that follow)
        quotas = tmp_path / "q.yaml"
        quotas.write_text("single_step: 0\n")
        multi = ("--rows-per-call", "3", "--quotas", str(quotas))
        assert main(_args(3, tmp_path / "probe", fake.base_url, *multi, "--quiet")) == 0
        one = json.loads((tmp_path / "probe" / "stats.json").read_text())["cost_usd"]
        budget = 5.5 * one
        extra = (*multi, "--max-cost", str(budget), "--quiet")
        assert main(_args(300, out, fake.base_url, *extra)) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["stopped"] and "--max-cost" in stats["stopped"]
    assert 0 < stats["n_rows"] < 300
    assert stats["cost_usd"] <= budget
    assert "max-cost" in capsys.readouterr().err


def test_batch_mode_and_resume_polls_the_journaled_batch(tmp_path):
    out = tmp_path / "ds"
    with FakeOpenAI(batch_delay=3.0) as fake:
        args = [
            *BUILD,
            *_args(30, out, fake.base_url, "--rows-per-call", "5", "--batch", "--batch-poll", "0.2"),
        ]
        proc = subprocess.Popen(args, env=_env(), stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(r["t"] == "batch" for r in _journal_lines(out)):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert fake.stats["batches_created"] == 1
        done = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "resuming Batch API job" in done.stderr
        created = fake.stats["batches_created"]
    assert len(_rows(out)) == 30
    # the first batch was polled again, not re-created; more batches only for rejects/duplicates
    batches = [r for r in _journal_lines(out) if r["t"] == "batch"]
    assert created == len(batches)
    assert json.loads((out / "stats.json").read_text())["cost_usd"] > 0


def test_batch_respects_max_cost_and_unknown_price_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "o"
    with FakeOpenAI(batch_delay=0.1) as fake:
        extra = ("--batch", "--batch-poll", "0.05", "--max-cost", "0.05", "--quiet")
        assert main(_args(300, out, fake.base_url, *extra)) == 0
        created = fake.stats["batches_created"]
        code = main(_args(10, tmp_path / "p", fake.base_url, "--model", "my-local-llm", "--max-cost", "1"))
    stats = json.loads((out / "stats.json").read_text())
    assert stats["stopped"] and 0 < stats["n_rows"] < 300 and stats["cost_usd"] <= 0.05 and created >= 1
    assert code == 2 and "--prices FILE" in capsys.readouterr().err
