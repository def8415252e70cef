"""The test Hub itself, driven by the real `huggingface_hub` client: the calls other tests rely
on behave like the Hub's (errors map to the client's exception classes, ranges, history)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, HfFileSystem, hf_hub_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import get_session

from hub_server import DEFAULT_TOKEN, HubServer

REPO = "alice/demo"


def http():
    """The HTTP client huggingface_hub itself uses (its public `get_session`): raw requests
    without depending on which HTTP library it is built on."""
    return get_session()


@pytest.fixture
def hub(monkeypatch):
    with HubServer(tokens={DEFAULT_TOKEN: "alice", "hf_bobToken0123456789": "bob"}) as server:
        server.point_clients_here(monkeypatch)
        yield server


@pytest.fixture
def api(hub) -> HfApi:
    return HfApi(token=DEFAULT_TOKEN)


def _seed(api: HfApi, tmp_path) -> str:
    (tmp_path / "big.parquet").write_bytes(bytes(range(256)) * 40)
    url = api.create_repo(REPO, repo_type="dataset")
    api.create_commit(
        REPO,
        repo_type="dataset",
        commit_message="add files",
        operations=[
            CommitOperationAdd("README.md", b"---\nlicense: mit\n---\n# demo\n"),
            CommitOperationAdd("data/big.parquet", str(tmp_path / "big.parquet")),
            CommitOperationAdd("data/sub/notes.txt", b"hello"),
        ],
    )
    return str(url)


def test_whoami_and_bad_token(hub, api) -> None:
    assert api.whoami()["name"] == "alice"
    with pytest.raises(HfHubHTTPError) as info:
        HfApi(token="hf_wrong0123456789").whoami()
    assert info.value.response.status_code == 401


def test_create_repo_twice_returns_the_url(hub, api) -> None:
    first = api.create_repo(REPO, repo_type="dataset")
    again = api.create_repo(REPO, repo_type="dataset", exist_ok=True)
    assert str(first) == str(again) == f"{hub.endpoint}/datasets/{REPO}"
    with pytest.raises(HfHubHTTPError) as info:
        api.create_repo(REPO, repo_type="dataset")
    assert info.value.response.status_code == 409


def test_tree_paths_info_and_history(hub, api, tmp_path) -> None:
    _seed(api, tmp_path)
    top = {e.path for e in api.list_repo_tree(REPO, repo_type="dataset")}
    assert top == {".gitattributes", "README.md", "data"}
    deep = {e.path for e in api.list_repo_tree(REPO, repo_type="dataset", recursive=True)}
    assert {"data/big.parquet", "data/sub", "data/sub/notes.txt"} <= deep
    info = {
        e.path: e
        for e in api.get_paths_info(REPO, ["data/big.parquet", "data/sub", "nope"], repo_type="dataset")
    }
    assert set(info) == {"data/big.parquet", "data/sub"}
    assert info["data/big.parquet"].lfs.size == 256 * 40  # stored through LFS
    commits = api.list_repo_commits(REPO, repo_type="dataset")
    assert [c.title for c in commits] == ["add files", "initial commit"]
    repo_info = api.dataset_info(REPO, files_metadata=True)
    assert repo_info.sha == commits[0].commit_id
    assert repo_info.card_data["license"] == "mit"
    lfs = {s.rfilename: s.lfs for s in repo_info.siblings}
    assert lfs["data/big.parquet"] and lfs["data/big.parquet"].size == 256 * 40 and lfs["README.md"] is None


def test_download_and_range_reads(hub, api, tmp_path) -> None:
    _seed(api, tmp_path)
    path = hf_hub_download(REPO, "data/big.parquet", repo_type="dataset", cache_dir=tmp_path / "cache")
    assert Path(path).read_bytes() == bytes(range(256)) * 40
    fs = HfFileSystem(endpoint=hub.endpoint, token=DEFAULT_TOKEN, skip_instance_cache=True)
    with fs.open(f"datasets/{REPO}/data/big.parquet", "rb", block_size=100) as fh:
        fh.seek(300)
        assert fh.read(10) == bytes(range(44, 54))
    assert any(status == 206 for _, _, status in hub.requests)
    resp = http().get(
        f"{hub.endpoint}/datasets/{REPO}/resolve/main/data/big.parquet", headers={"Range": "bytes=-4"}
    )
    assert resp.status_code == 206 and resp.content == bytes(range(252, 256))
    assert resp.headers["X-Linked-Size"] == str(256 * 40) and resp.headers["X-Repo-Commit"]


def test_not_found_errors_map_to_client_classes(hub, api, tmp_path) -> None:
    _seed(api, tmp_path)
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("alice/missing")
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(REPO, revision="no-such-branch")
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "missing.txt", repo_type="dataset", cache_dir=tmp_path / "cache")
    assert not api.file_exists(REPO, "missing.txt", repo_type="dataset")
    assert not api.repo_exists("alice/missing", repo_type="dataset")


def test_private_repos_are_hidden_from_others(hub, api) -> None:
    api.create_repo("alice/private", repo_type="dataset", private=True)
    assert api.repo_exists("alice/private", repo_type="dataset")
    assert not HfApi(token="hf_bobToken0123456789").repo_exists("alice/private", repo_type="dataset")


def test_branches(hub, api, tmp_path) -> None:
    _seed(api, tmp_path)
    api.create_branch(REPO, repo_type="dataset", branch="dev")
    api.create_branch(REPO, repo_type="dataset", branch="dev", exist_ok=True)
    api.create_commit(
        REPO,
        repo_type="dataset",
        revision="dev",
        commit_message="dev only",
        operations=[CommitOperationAdd("x.txt", b"x")],
    )
    assert not api.file_exists(REPO, "x.txt", repo_type="dataset")
    assert api.file_exists(REPO, "x.txt", repo_type="dataset", revision="dev")
    assert {b.name for b in api.list_repo_refs(REPO, repo_type="dataset").branches} == {"main", "dev"}


def test_commit_naming_a_missing_lfs_object_is_refused(hub, api, tmp_path) -> None:
    _seed(api, tmp_path)
    head = hub.repo(REPO).branches["main"]
    body = b"".join(
        json.dumps(line).encode() + b"\n"
        for line in (
            {"key": "header", "value": {"summary": "sneaky"}},
            {"key": "file", "value": {"path": "ok.txt", "content": "aGk=", "encoding": "base64"}},
            {
                "key": "lfsFile",
                "value": {"path": "ghost.parquet", "algo": "sha256", "oid": "0" * 64, "size": 3},
            },
        )
    )
    resp = http().post(
        f"{hub.endpoint}/api/datasets/{REPO}/commit/main",
        content=body,
        headers={"Authorization": f"Bearer {DEFAULT_TOKEN}", "Content-Type": "application/x-ndjson"},
    )
    assert resp.status_code == 422
    assert hub.repo(REPO).branches["main"] == head  # all or nothing: ok.txt was not committed either


def test_lfs_upload_links_authorise_themselves_once(hub, api, tmp_path) -> None:
    api.create_repo(REPO, repo_type="dataset")
    data = b"payload" * 10
    oid = hashlib.sha256(data).hexdigest()
    batch = (
        http()
        .post(
            f"{hub.endpoint}/datasets/{REPO}.git/info/lfs/objects/batch",
            json={
                "operation": "upload",
                "transfers": ["basic"],
                "objects": [{"oid": oid, "size": len(data)}],
            },
            headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
        )
        .json()
    )
    href = batch["objects"][0]["actions"]["upload"]["href"]
    assert http().put(href, content=b"wrong").status_code == 400  # content must match the oid
    assert http().put(href, content=data).status_code == 200  # no Authorization header needed
    assert http().put(href, content=data).status_code == 403  # a link is good for one upload
