"""publish-dataset when things go wrong (issue 10 B7/C11/D16/D17, issue 11): the real console
script against tests/hub_server.py, and what a failed push leaves behind (nothing changed)."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskdecomp.hub import publish_dataset, published_repo_id
from taskdecomp.hub.publish import PUBLISHED_RECORD
from taskdecomp.loader_script.dataset_card import write_dataset_card

from conftest import free_port, subprocess_env
from dataset_fixture import build_fixture
from hub_server import HubServer

REPO_ID = "alice/task-decomposition"
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def hub(monkeypatch):
    with HubServer() as server:
        server.point_clients_here(monkeypatch)
        yield server


def publish_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "publish-dataset"), *args],
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def built(tmp_path: Path) -> Path:
    """A built folder as build-dataset leaves it: shards, stats and a card for no repo yet."""
    out = tmp_path / "ds"
    build_fixture(out, n=20)
    write_dataset_card(out)
    return out


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert lines[0].startswith("publish-dataset: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _dead_endpoint(hub: HubServer) -> dict[str, str]:
    return {"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}


def _bad_token(hub: HubServer) -> dict[str, str]:
    return {"HF_TOKEN": "hf_notTheRightToken9876543210zyx"}


def _server_error(hub: HubServer) -> dict[str, str]:
    hub.fail_requests(500, retry_after=0)  # Retry-After: 0 keeps the client's retries quick
    return {}


def _not_a_hub(hub: HubServer) -> dict[str, str]:
    hub.fail_requests(404, html=True)  # e.g. HF_ENDPOINT aimed at some other web server
    return {}


def _html_page(hub: HubServer) -> dict[str, str]:
    hub.fail_requests(200, html=True)  # a captive portal / proxy answering 200 with a web page
    return {}


@pytest.mark.parametrize(
    ("fault", "needles"),
    [
        (_dead_endpoint, ("cannot reach", "check the network or HF_ENDPOINT")),
        (_bad_token, ("token rejected", "401", "HF_TOKEN")),
        (_server_error, ("server error", "500", "retry in a few minutes")),
        (_not_a_hub, ("404", "does not look like a Hugging Face Hub", "check HF_ENDPOINT")),
        (_html_page, ("did not answer like a Hugging Face Hub", "check HF_ENDPOINT")),
    ],
    ids=["dead-endpoint", "401", "500", "404-html", "200-html"],
)
def test_a_failed_publish_changes_nothing_locally(hub, tmp_path, fault, needles) -> None:
    out = built(tmp_path)
    before = snapshot(out)
    line = assert_one_line_error(publish_cli(str(out), "--repo-id", REPO_ID, **fault(hub)), *needles)
    assert "Expecting value" not in line and "<html" not in line.lower()
    assert snapshot(out) == before  # the card still names no repo; no record of a publish
    assert published_repo_id(out) is None


def test_client_retries_print_nothing_before_the_one_line(hub, tmp_path) -> None:
    """The client retries a 5xx listing 5 times, logging a warning each time: only our line shows."""
    out = built(tmp_path)
    before = snapshot(out)
    hub.fail_requests(503, match=r"/tree/", retry_after=0)
    start = time.monotonic()
    proc = publish_cli(str(out), "--repo-id", REPO_ID)
    assert_one_line_error(proc, "server error", "503")
    assert "Retrying" not in proc.stderr
    assert len([r for r in hub.requests if "/tree/" in r[1]]) > 1  # it really retried
    assert time.monotonic() - start < 60
    assert snapshot(out) == before


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_shard_is_one_line_before_any_upload(hub, tmp_path, damage) -> None:
    out = built(tmp_path)
    shard = sorted((out / "data").glob("train-*.parquet"))[0]
    data = shard.read_bytes()
    shard.write_bytes(b"this is not parquet" * 10 if damage == "garbage" else data[: len(data) // 2])
    before = snapshot(out)
    assert_one_line_error(
        publish_cli(str(out), "--repo-id", REPO_ID), shard.name, "not a readable Parquet file", "rebuild"
    )
    assert not hub.requests  # refused before the network
    assert snapshot(out) == before


def test_corrupt_row_group_behind_a_valid_footer_is_caught(hub, tmp_path) -> None:
    """Footer reads (the card's sizes) pass; only reading the data finds the damage."""
    out = built(tmp_path)
    shard = sorted((out / "data").glob("train-*.parquet"))[0]
    data = bytearray(shard.read_bytes())
    for i in range(8, len(data) // 2):  # scribble over the first column chunks, keep the footer
        data[i] = 0xFF
    shard.write_bytes(bytes(data))
    before = snapshot(out)
    assert_one_line_error(publish_cli(str(out), "--repo-id", REPO_ID), shard.name, "not a readable Parquet")
    assert not hub.requests
    assert snapshot(out) == before


def test_published_repo_id_records_the_push_and_forgets_it_on_rebuild(hub, tmp_path) -> None:
    out = built(tmp_path)
    assert published_repo_id(out) is None  # never published
    assert published_repo_id(tmp_path / "nowhere") is None
    publish_dataset(out, REPO_ID)
    assert (out / PUBLISHED_RECORD).is_file()
    assert published_repo_id(out) == REPO_ID
    assert published_repo_id(str(out)) == REPO_ID
    assert PUBLISHED_RECORD not in hub.files(REPO_ID)  # a local record, never pushed
    assert f'load_dataset("{REPO_ID}")' in (out / "README.md").read_text()  # written after the push

    build_fixture(out, n=24, tag="-v2")  # rebuilt: these rows were never pushed
    assert published_repo_id(out) is None
    publish_dataset(out, "alice/other")
    assert published_repo_id(out) == "alice/other"

    (out / PUBLISHED_RECORD).write_text("{not json")
    assert published_repo_id(out) is None


def test_hub_imports_only_declared_dependencies() -> None:
    """hub/ and loader_script/ import the stdlib, taskdecomp and declared dependencies only
    (they once imported `httpx2`, which only happens to come with huggingface_hub)."""
    allowed = {"huggingface_hub", "datasets", "pyarrow", "matplotlib", "yaml", "jinja2", "taskdecomp"}
    for folder in ("hub", "loader_script"):
        for path in sorted((REPO / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom) and not node.level
                    else []
                )
                for name in names:
                    top = name.split(".")[0]
                    assert top in sys.stdlib_module_names or top in allowed, f"{path.name} imports {name}"


def test_model_card_links_a_published_local_dataset(hub, tmp_path) -> None:
    """E20: an adapter trained from a local folder that was published names that repo in its
    card's `datasets:` (train-adapter asks `published_repo_id`, the core card renders it)."""
    import yaml

    from taskdecomp.model_card import write_model_card

    out = built(tmp_path)
    publish_dataset(out, REPO_ID)
    run = tmp_path / "adapter"
    run.mkdir()
    (run / "train_config.yaml").write_text(
        yaml.safe_dump({"dataset": str(out), "base_model": "smollm2-135m-gguf"})
    )
    card = write_model_card(run, dataset_repo=published_repo_id(out)).read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["datasets"] == [REPO_ID]
    card = write_model_card(run, dataset_repo=published_repo_id(tmp_path / "never-published")).read_text()
    assert "datasets" not in yaml.safe_load(card.split("---")[1])
