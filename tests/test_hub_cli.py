"""publish-dataset's bad input (one line, exit 2, nothing pushed) and `push_files` as other
commands use it (model repos, unchanged re-push)."""

from __future__ import annotations

import json
import os

import huggingface_hub
import pytest

from taskdecomp.errors import AuthError, ConfigError, HubError, InputError
from taskdecomp.hub import push_files, resolve_token, validate_repo_id
from taskdecomp.hub.cli import main

from conftest import free_port
from dataset_fixture import build_fixture
from hub_server import DEFAULT_TOKEN, HubServer


@pytest.fixture
def hub(monkeypatch):
    with HubServer() as server:
        server.point_clients_here(monkeypatch)
        yield server


@pytest.fixture
def saved_login(monkeypatch, tmp_path):
    """Where `hf auth login` saves the token. huggingface_hub fixes that path from HF_HOME when
    it is imported (before any fixture runs), so point it at this test's folder: a developer's
    own login must neither leak in nor make "no token" tests fail."""
    path = tmp_path / "hf_token"
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(path))
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()  # drop what building the fixture printed
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("publish-dataset: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    "repo_id", ["task-decomposition", "alice/bad--name", "a/b/c", "alice/", "alice/name.git"]
)
def test_malformed_repo_id(hub, tmp_path, capsys, repo_id) -> None:
    build_fixture(tmp_path / "ds", n=20)
    code, out, err = run(capsys, str(tmp_path / "ds"), "--repo-id", repo_id)
    assert code == 2 and out == ""
    assert_one_line_error(err, "invalid repo id")
    assert not hub.repos


def test_missing_repo_id_and_dir(capsys, tmp_path) -> None:
    code, _, err = run(capsys, str(tmp_path))
    assert code == 2
    assert_one_line_error(err, "--repo-id is required")
    code, _, err = run(capsys, "--repo-id", "alice/x")
    assert code == 2
    assert_one_line_error(err, "missing DIR")


def test_dir_missing_or_not_built(hub, tmp_path, capsys) -> None:
    code, _, err = run(capsys, str(tmp_path / "nope"), "--repo-id", "alice/x")
    assert code == 2
    assert_one_line_error(err, "does not exist")
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, str(tmp_path / "empty"), "--repo-id", "alice/x")
    assert code == 2
    assert_one_line_error(err, "not a built dataset: run build-dataset first")
    assert not hub.repos


def test_missing_token(tmp_path, capsys, saved_login) -> None:
    assert not saved_login.exists() and "HF_TOKEN" not in os.environ  # logged out
    out = tmp_path / "ds"
    build_fixture(out, n=20)
    code, _, err = run(capsys, str(out), "--repo-id", "alice/x")
    assert code == 2
    assert_one_line_error(err, "no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    assert not (out / "README.md").exists()  # nothing written before the token check
    with pytest.raises(AuthError):
        resolve_token()


def test_resolve_token_prefers_env_then_the_saved_login(monkeypatch, saved_login) -> None:
    saved_login.write_text("hf_savedLogin123456789\n")
    assert resolve_token() == "hf_savedLogin123456789"
    monkeypatch.setenv("HF_TOKEN", " hf_fromEnv123456789 ")
    assert resolve_token() == "hf_fromEnv123456789"


def test_validate_repo_id_returns_the_id() -> None:
    assert validate_repo_id(" alice/task-decomposition ") == "alice/task-decomposition"
    with pytest.raises(ConfigError):
        validate_repo_id("")


def test_push_files_to_a_model_repo(hub, tmp_path) -> None:
    """What train-adapter does with an adapter folder: create, commit, delete stale weights."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"r": 8}')
    (folder / "adapter_model.safetensors").write_bytes(b"\x00weights-v1" * 100)
    (folder / "old.safetensors").write_bytes(b"\x00old" * 10)
    files = {p.name: p for p in folder.iterdir()}
    url = push_files("alice/adapter", files, repo_type="model", token=DEFAULT_TOKEN, commit_message="v1")
    assert url.startswith(f"{hub.endpoint}/alice/adapter/commit/")
    assert hub.files("alice/adapter", "model")["adapter_model.safetensors"] == b"\x00weights-v1" * 100

    files.pop("old.safetensors")
    push_files(
        "alice/adapter",
        files,
        repo_type="model",
        token=DEFAULT_TOKEN,
        commit_message="v2",
        delete_patterns=["*.safetensors"],
    )
    assert set(hub.files("alice/adapter", "model")) == {
        ".gitattributes",
        "adapter_config.json",
        "adapter_model.safetensors",
    }

    # nothing changed: no empty commit, and the URL is the current head's
    repo = hub.repo("alice/adapter", "model")
    head = repo.branches["main"]
    url = push_files("alice/adapter", files, repo_type="model", token=DEFAULT_TOKEN, commit_message="v3")
    assert repo.branches["main"] == head
    assert url == f"{hub.endpoint}/alice/adapter/commit/{head}"


def push_one(tmp_path, repo_id: str = "alice/x") -> str:
    """Push `tmp_path/a.txt` (which the caller may or may not have written) to a model repo."""
    return push_files(
        repo_id, {"a.txt": tmp_path / "a.txt"}, repo_type="model", token=DEFAULT_TOKEN, commit_message="m"
    )


def test_push_to_someone_elses_namespace_is_refused(hub, tmp_path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(AuthError, match="403") as info:
        push_one(tmp_path, "bob/x")
    assert DEFAULT_TOKEN not in str(info.value)
    assert "\n" not in str(info.value)


def test_push_of_a_missing_file_is_refused_before_the_network(hub, tmp_path) -> None:
    with pytest.raises(InputError, match="no such file"):
        push_one(tmp_path)
    assert not hub.requests


def test_unreachable_hub(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(HubError, match="cannot reach"):
        push_one(tmp_path)


def test_stats_with_a_secret_are_not_published(hub, tmp_path, capsys) -> None:
    out = tmp_path / "ds"
    build_fixture(out, n=20)
    stats = json.loads((out / "stats.json").read_text())
    stats["config"]["api_key"] = "sk-live0123456789abcdefXYZ"
    (out / "stats.json").write_text(json.dumps(stats))
    code, _, err = run(capsys, str(out), "--repo-id", "alice/x")
    assert code == 2
    assert_one_line_error(err, "looks like an API key")
    assert "sk-live0123456789abcdefXYZ" not in err
    assert not hub.repos
