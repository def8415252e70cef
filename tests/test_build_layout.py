"""The build is split along its jobs and uses only the `Backend` interface.

`build.py` wires `backends` → `scheduler` → `drivers` → `output`; what it needs of a backend
(prompt version, token estimate, worst-case cost, billed spend of a failed request) goes
through the interface, so no module of the build reads a backend's or the scheduler's
internals.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from taskdecomp.dataset_builder import backends
from taskdecomp.dataset_builder.backend import GenerationRequest
from taskdecomp.dataset_builder.build_config import BuildConfig
from taskdecomp.dataset_builder.cli import main
from taskdecomp.dataset_builder.journal import JOURNAL_DIR
from taskdecomp.dataset_builder.openai_backend import OpenAIBackend
from taskdecomp.dataset_builder.scheduler import build_quotas, new_scheduler
from taskdecomp.errors import BackendError
from taskdecomp.reporter import Reporter
from taskdecomp.taxonomy import CELLS

from fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parents[1] / "dataset_builder"
BUILD_MODULES = ("build.py", "backends.py", "scheduler.py", "drivers.py", "estimate.py")
KEY = "sk-test-secret-key-0123456789"


def _tree(name: str) -> ast.Module:
    return ast.parse((ROOT / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", BUILD_MODULES)
def test_no_getattr_and_no_private_attributes_of_other_objects(name: str) -> None:
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in ("getattr", "setattr"), f"{name}:{node.lineno} uses {node.func.id}"
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            assert isinstance(owner, ast.Name) and owner.id == "self", (
                f"{name}:{node.lineno} reads {ast.unparse(node)}, a private attribute of another object"
            )


def test_only_the_scheduler_changes_its_in_flight_counts() -> None:
    for name in BUILD_MODULES:
        if name == "scheduler.py":
            continue
        for node in ast.walk(_tree(name)):
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("inflight", "k_next", "accepted"), (
                    f"{name}:{node.lineno} touches Scheduler.{node.attr}: use its methods"
                )


def test_build_py_is_the_wiring_only() -> None:
    text = (ROOT / "build.py").read_text(encoding="utf-8")
    assert len(text.splitlines()) < 260
    defined = {n.name for n in _tree("build.py").body if isinstance(n, ast.ClassDef | ast.FunctionDef)}
    assert "Scheduler" not in defined and "Run" not in defined


def test_prompt_version_is_a_class_attribute_and_in_the_fingerprint(tmp_path: Path, monkeypatch) -> None:
    cfg = BuildConfig(n=3, out=str(tmp_path / "o"), base_url="http://127.0.0.1:9/v1", backend="openai")
    assert backends.prompt_version("openai", cfg) == OpenAIBackend.prompt_version
    assert backends.prompt_version("offline", BuildConfig()) is None
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAI() as fake:
        args = ["--n", "3", "--rows-per-call", "3", "--out", str(tmp_path / "o"), "--base-url", fake.base_url]
        assert main([*args, "--quiet"]) == 0
        meta = json.loads((tmp_path / "o" / JOURNAL_DIR / "build.json").read_text())
        assert meta["fingerprint"]["prompt_version"] == OpenAIBackend.prompt_version
        # a new prompt is a new build: the old journal is not resumed with it
        monkeypatch.setattr(OpenAIBackend, "prompt_version", "gen-v999")
        assert main([*args, "--quiet", "--n", "6"]) == 2


def test_dry_run_sums_the_backends_own_estimate(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    cfg = BuildConfig(n=40, rows_per_call=4, base_url="http://127.0.0.1:9/v1", backend="openai")
    _, quotas = build_quotas(cfg, "openai")
    sched = new_scheduler(cfg, quotas, "dry-run", "openai:x")
    requests: list[GenerationRequest] = []
    while (issued := sched.next_request()) is not None:
        requests.append(issued[0])
    backend = backends.make_backend("openai", cfg, Reporter.silent())
    want = sum(backend.estimate(r).prompt_tokens for r in requests)
    assert main(["--n", "40", "--rows-per-call", "4", "--base-url", cfg.base_url or "", "--dry-run"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["requests"] == len(requests) and got["prompt_tokens"] == want and got["price_known"] is True


def test_dry_run_warns_when_the_model_has_no_price(monkeypatch, capsys) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    argv = ["--n", "10", "--base-url", "http://127.0.0.1:9/v1", "--model", "no-such-model", "--dry-run"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["price_known"] is False
    assert "no price for model 'no-such-model'" in captured.err


def test_the_scheduler_releases_a_request_it_will_not_send() -> None:
    cfg = BuildConfig(n=len(CELLS) * 2, rows_per_call=2)
    _, quotas = build_quotas(cfg, "offline")
    sched = new_scheduler(cfg, quotas, "b", "offline")
    issued = sched.next_request()
    assert issued is not None
    request = issued[0]
    before = sched.deficit(request.cell)
    sched.release(request)
    assert sched.deficit(request.cell) == before + cfg.rows_per_call


def test_a_failed_request_carries_what_it_billed() -> None:
    err = BackendError("the endpoint failed").billed(120, 30, 0.002)
    assert (err.prompt_tokens, err.completion_tokens, err.cost_usd) == (120, 30, 0.002)
    assert str(err) == "the endpoint failed"
