"""Shared fixtures. Everything runs offline on 127.0.0.1; nothing is fetched from a hub."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"
REFERENCE_DATA = REFERENCE / "decompose_net" / "data"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    """No real keys or Hub login leak into tests; every test gets its own HF cache."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reference_rows() -> list[dict]:
    rows = []
    for path in sorted(REFERENCE_DATA.glob("*.json"), key=lambda p: int(p.stem.rsplit("_", 1)[1])):
        rows.extend(json.loads(path.read_text()))
    return rows


@pytest.fixture(scope="session")
def reference_data_dir() -> Path:
    if not REFERENCE_DATA.is_dir():
        pytest.skip("../shared/reference is not beside this checkout")
    return REFERENCE_DATA


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def pytest_configure(config):
    """A fresh HF home for the session, and one cache of the tiny model's GGUF → safetensors
    conversion (~40 s) for the whole session (and later runs, under .pytest_cache), whatever
    HF_HOME each test gets."""
    # huggingface_hub and datasets fix their paths (saved login, caches) from HF_HOME when they are
    # imported, which the per-test HF_HOME of `_isolated_env` comes too late for: without this,
    # in-process tests would read the developer's own login and write to their ~/.cache
    assert "huggingface_hub" not in sys.modules, "conftest must set HF_HOME before huggingface_hub loads"
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="taskdecomp-hf-home-")
    _SESSION_DIRS.append(os.environ["HF_HOME"])
    if os.environ.get("TASKDECOMP_MODEL_CACHE"):
        return
    cache = getattr(config, "cache", None)
    if cache is not None:
        os.environ["TASKDECOMP_MODEL_CACHE"] = str(cache.mkdir("taskdecomp-models"))
    else:
        os.environ["TASKDECOMP_MODEL_CACHE"] = tempfile.mkdtemp(prefix="taskdecomp-models-")
        _SESSION_DIRS.append(os.environ["TASKDECOMP_MODEL_CACHE"])


_SESSION_DIRS: list[str] = []  # the temporary folders this session made; gone when it ends


def pytest_unconfigure(config):
    for folder in _SESSION_DIRS:
        shutil.rmtree(folder, ignore_errors=True)
