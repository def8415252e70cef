"""publish-dataset against a Hub on 127.0.0.1 (tests/hub_server.py), with the real clients:
`huggingface_hub` pushes, `datasets.load_dataset("<user>/task-decomposition")` reads back.

`huggingface_hub` reads HF_ENDPOINT when it is imported, so the CLI and `load_dataset` run in
subprocesses with the server's environment (as a user would run them); library-level pushes
point `huggingface_hub.constants.ENDPOINT` at the server for the duration of the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from taskdecomp.dataset_builder import output
from taskdecomp.hub import publish_dataset
from taskdecomp.loader_script.features import ALPACA_COLUMNS

from conftest import subprocess_env
from dataset_fixture import build_fixture
from hub_server import HubServer

REPO_ID = "alice/task-decomposition"
BIN = Path(sys.executable).parent


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with HubServer() as server:
        server.point_clients_here(monkeypatch)
        yield server


def publish_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    exe = BIN / "publish-dataset"
    cmd = (
        [str(exe)]
        if exe.exists()
        else [sys.executable, "-c", "import sys; from taskdecomp.hub.cli import main; sys.exit(main())"]
    )
    return subprocess.run(
        cmd + list(args), env=subprocess_env(**env), capture_output=True, text=True, timeout=300
    )


LOAD = """
import json, sys, datasets
repo, config, revision = sys.argv[1], sys.argv[2] or None, sys.argv[3] or None
ds = datasets.load_dataset(repo, config, revision=revision)
print(json.dumps({split: ds[split].to_list() for split in ds}))
"""


def load_remote(repo_id: str = REPO_ID, config: str = "", revision: str = "") -> dict[str, list[dict]]:
    """`datasets.load_dataset(repo_id)` in a fresh process (fresh cache dir per call)."""
    proc = subprocess.run(
        [sys.executable, "-c", LOAD, repo_id, config, revision],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def by_id(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: r["id"])


def test_publish_then_load_dataset_returns_the_built_rows(hub, tmp_path) -> None:
    out = tmp_path / "ds"
    splits = build_fixture(out, n=40)
    proc = publish_cli(str(out), "--repo-id", REPO_ID)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{hub.endpoint}/datasets/{REPO_ID}"

    repo = hub.repo(REPO_ID)
    assert len(repo.history(repo.branches["main"])) == 2  # "initial commit" + ONE publish commit
    files = hub.files(REPO_ID)
    assert set(files) == {
        ".gitattributes",
        "README.md",
        "coverage.png",
        "stats.json",
        "data/train-00000-of-00001.parquet",
        "data/test-00000-of-00001.parquet",
    }
    assert files["README.md"] == (out / "README.md").read_bytes()  # the card was regenerated for this repo
    assert f'load_dataset("{REPO_ID}")'.encode() in files["README.md"]
    assert files["coverage.png"].startswith(b"\x89PNG")
    assert not [p for p, data in files.items() if hub.token.encode() in data]  # the token is nowhere
    assert repo.resolve("main").files["data/train-00000-of-00001.parquet"].sha256  # stored via LFS

    remote = load_remote()
    assert set(remote) == {"train", "test"}
    for split, rows in splits.items():
        assert by_id(remote[split]) == by_id(rows)
    alpaca = load_remote(config="alpaca")
    for split, rows in splits.items():
        assert all(list(r) == list(ALPACA_COLUMNS) for r in alpaca[split])
        key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
        assert sorted(alpaca[split], key=key) == sorted(
            ({c: r[c] for c in ALPACA_COLUMNS} for r in rows), key=key
        )


def test_republish_with_fewer_shards_leaves_no_stale_shard(hub, tmp_path, monkeypatch) -> None:
    out = tmp_path / "ds"
    monkeypatch.setattr(output, "MAX_SHARD_ROWS", 10)  # ~32 train rows → several shards
    build_fixture(out, n=40)
    local = {f"data/{p.name}" for p in (out / "data").glob("*.parquet")}
    assert len([p for p in local if "/train-" in p]) >= 3
    publish_dataset(out, REPO_ID)
    first = hub.repo(REPO_ID).branches["main"]
    assert {p for p in hub.files(REPO_ID) if p.startswith("data/")} == local

    monkeypatch.setattr(output, "MAX_SHARD_ROWS", 100_000)
    splits = build_fixture(out, n=45, tag="-v2")  # the rebuild removes the old shards locally
    publish_dataset(out, REPO_ID)
    assert {p for p in hub.files(REPO_ID) if p.startswith("data/")} == {
        "data/train-00000-of-00001.parquet",
        "data/test-00000-of-00001.parquet",
    }
    repo = hub.repo(REPO_ID)
    assert repo.parents[repo.branches["main"]] == first  # one commit: adds and deletions together
    remote = load_remote()
    for split, rows in splits.items():
        assert by_id(remote[split]) == by_id(rows)


def test_failure_mid_upload_leaves_the_previous_revision(hub, tmp_path, monkeypatch) -> None:
    out = tmp_path / "ds"
    v1 = build_fixture(out, n=40)
    publish_dataset(out, REPO_ID)
    head = hub.repo(REPO_ID).branches["main"]
    before = hub.files(REPO_ID)

    monkeypatch.setattr(output, "MAX_SHARD_ROWS", 8)
    build_fixture(out, n=60, tag="-v2")
    hub.fail_lfs_uploads(after=1)  # the first object goes through, the rest are refused
    proc = publish_cli(str(out), "--repo-id", REPO_ID)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert err[-1].startswith("publish-dataset: error: ") and "nothing was committed" in err[-1]
    assert "Traceback" not in proc.stderr
    uploads = [status for method, _, status in hub.requests if method == "PUT"]
    assert 200 in uploads and 403 in uploads  # it really failed mid-push
    assert hub.repo(REPO_ID).branches["main"] == head
    assert hub.files(REPO_ID) == before
    remote = load_remote()
    for split, rows in v1.items():
        assert by_id(remote[split]) == by_id(rows)

    hub.fail_lfs_uploads(None)  # the retry completes the push
    proc = publish_cli(str(out), "--repo-id", REPO_ID)
    assert proc.returncode == 0, proc.stderr
    assert len([p for p in hub.files(REPO_ID) if p.startswith("data/")]) == len(
        list((out / "data").iterdir())
    )


def test_wrong_token_is_a_clear_one_line_error(hub, tmp_path) -> None:
    out = tmp_path / "ds"
    build_fixture(out, n=20)
    bad = "hf_notTheRightToken9876543210zyx"
    proc = publish_cli(str(out), "--repo-id", REPO_ID, HF_TOKEN=bad)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("publish-dataset: error: token rejected")
    assert "401" in proc.stderr and "HF_TOKEN" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert bad not in proc.stderr + proc.stdout
    assert not hub.repos  # nothing was created


def test_publish_to_a_new_branch_leaves_main_alone(hub, tmp_path) -> None:
    out = tmp_path / "ds"
    build_fixture(out, n=20)
    publish_dataset(out, REPO_ID)
    main_head = hub.repo(REPO_ID).branches["main"]
    splits = build_fixture(out, n=30, tag="-dev")
    url = publish_dataset(out, REPO_ID, revision="dev")
    assert url == f"{hub.endpoint}/datasets/{REPO_ID}"
    repo = hub.repo(REPO_ID)
    assert repo.branches["main"] == main_head and repo.branches["dev"] != main_head
    remote = load_remote(revision="dev")
    assert by_id(remote["train"]) == by_id(splits["train"])


def test_private_repo_is_created_private(hub, tmp_path) -> None:
    out = tmp_path / "ds"
    build_fixture(out, n=20)
    publish_dataset(out, "alice/secret-plans", private=True)
    assert hub.repo("alice/secret-plans").private
