"""`publish-space`: the app pushed as a Gradio Space, against the Hub on 127.0.0.1
(tests/hub_server.py) with the real `huggingface_hub` client: one commit holding the card
(`sdk: gradio`), app.py and requirements.txt (and the toolkit's source for a self-contained
Space); bad input and Hub failures are one line, exit 2, and never show the token."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from taskdecomp.errors import ConfigError
from taskdecomp.hub.space import GRADIO_VERSION, SUBPACKAGES, SpaceSpec, publish_space, space_files

from conftest import subprocess_env
from hub_server import HubServer

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
SPACE = "alice/task-decomposition-demo"
DATASET, ADAPTER = "alice/task-decomposition", "alice/decomposer"
BIN = Path(sys.executable).parent


@pytest.fixture
def hub(monkeypatch):
    with HubServer() as server:
        server.point_clients_here(monkeypatch)
        server.create_repo("dataset", DATASET)
        server.create_repo("model", ADAPTER)
        yield server


def space_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    exe = BIN / "publish-space"
    cmd = (
        [str(exe)]
        if exe.exists()
        else [sys.executable, "-c", "import sys; from taskdecomp.hub.space_cli import main; sys.exit(main())"]
    )
    return subprocess.run(
        cmd + list(args), env=subprocess_env(**env), capture_output=True, text=True, timeout=300
    )


def front_matter(card: bytes) -> dict:
    text = card.decode()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_publish_space_is_one_commit_with_card_app_and_requirements(hub) -> None:
    proc = space_cli("--repo-id", SPACE, "--dataset", DATASET, "--adapter", ADAPTER)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{hub.endpoint}/spaces/{SPACE}"
    repo = hub.repo(SPACE, "space")
    assert repo.sdk == "gradio"  # created as a Gradio Space
    assert len(repo.history(repo.branches["main"])) == 2  # "initial commit" + ONE publish commit
    files = hub.files(SPACE, "space")

    meta = front_matter(files["README.md"])
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == GRADIO_VERSION and meta["app_file"] == "app.py"
    assert meta["title"] and meta["datasets"] == [DATASET] and meta["models"] == [ADAPTER]
    assert len(meta["short_description"]) <= 60  # the Hub's limit
    body = files["README.md"].decode()
    assert (
        f"https://huggingface.co/datasets/{DATASET}" in body and f"https://huggingface.co/{ADAPTER}" in body
    )

    app = files["app.py"].decode()
    compile(app, "app.py", "exec")
    assert "from taskdecomp.app import build_app" in app
    assert repr(DATASET) in app and repr(ADAPTER) in app and "'adapter'" in app

    requirements = files["requirements.txt"].decode().splitlines()
    assert f"gradio=={GRADIO_VERSION}" in requirements
    assert any(r.startswith("torch") for r in requirements)  # the toolkit's own dependencies
    # self-contained: the toolkit's source, laid out as it imports
    for needed in ("taskdecomp/__init__.py", "taskdecomp/plan.py", "taskdecomp/row.schema.json",
                   "taskdecomp/app/ui.py", "taskdecomp/planner/decomposer.py", "taskdecomp/prompts/decompose_system.txt",
                   "taskdecomp/loader_script/chart.py"):  # fmt: skip
        assert needed in files, needed
    assert not [p for p in files if "__pycache__" in p or p.endswith(".pyc")]
    assert files["taskdecomp/mermaid.py"] == (REPO / "taskdecomp" / "mermaid.py").read_bytes()
    assert not [p for p, data in files.items() if hub.token.encode() in data]  # the token is nowhere
    assert hub.token not in proc.stdout + proc.stderr


def test_the_pushed_space_builds_its_app_from_its_own_files(hub, tmp_path) -> None:
    """app.py, run from a checkout of the Space with only its files on the path, builds the app."""
    publish_space(SpaceSpec(SPACE, dataset=DATASET))
    checkout = tmp_path / "space"
    for path, data in hub.files(SPACE, "space").items():
        (checkout / path).parent.mkdir(parents=True, exist_ok=True)
        (checkout / path).write_bytes(data)
    # -S: no site processing, so no editable-install finder: `taskdecomp` can only come from the
    # Space's files; the venv's site-packages (gradio, datasets, ...) are put back by hand
    site = [p for p in sys.path if p.endswith("site-packages")]
    code = (
        f"import runpy, sys; sys.path[:0] = ['.', *{site!r}];"
        "ns = runpy.run_path('app.py');"
        "import taskdecomp, gradio;"
        "assert taskdecomp.__file__.startswith(sys.argv[1]), taskdecomp.__file__;"
        "assert isinstance(ns['demo'], gradio.Blocks); print('ok')"
    )
    env = subprocess_env(GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(checkout)],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_republish_with_a_requirement_replaces_the_vendored_source(hub) -> None:
    publish_space(SpaceSpec(SPACE, dataset=DATASET))
    assert any(p.startswith("taskdecomp/") for p in hub.files(SPACE, "space"))
    first = hub.repo(SPACE, "space").branches["main"]
    requirement = "taskdecomp @ git+https://github.com/alice/taskdecomp@v0.1.0"
    proc = space_cli("--repo-id", SPACE, "--dataset", DATASET, "--requirement", requirement)
    assert proc.returncode == 0, proc.stderr
    repo = hub.repo(SPACE, "space")
    assert repo.parents[repo.branches["main"]] == first  # one more commit: the adds and deletions together
    files = hub.files(SPACE, "space")
    assert set(files) == {".gitattributes", "README.md", "app.py", "requirements.txt"}
    requirements = files["requirements.txt"].decode().splitlines()
    assert requirement in requirements and f"gradio=={GRADIO_VERSION}" in requirements
    assert "models" not in front_matter(files["README.md"])  # no adapter: the heuristic planner
    assert "'heuristic'" in files["app.py"].decode()


def test_dry_run_lists_the_files_and_pushes_nothing(hub) -> None:
    proc = space_cli("--repo-id", SPACE, "--dataset", DATASET, "--dry-run", HF_TOKEN="")
    assert proc.returncode == 0, proc.stderr
    listed = [line.split("\t")[0] for line in proc.stdout.splitlines() if "\t" in line]
    assert listed[:3] == ["README.md", "app.py", "requirements.txt"] and "taskdecomp/app/ui.py" in listed
    assert "dry run" in proc.stdout
    assert ("space", SPACE) not in hub.repos and not [r for r in hub.requests if r[0] == "POST"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--repo-id is required"),
        (["--repo-id", "not a repo"], "invalid repo id"),
        (["--repo-id", SPACE, "--dataset", "."], "--dataset . is a local path"),
        (["--repo-id", SPACE, "--adapter", "a/b/c"], "--adapter 'a/b/c' is not a Hub model id"),
        (["--repo-id", SPACE, "--requirement", "--index-url x"], "--requirement must be a pip requirement"),
    ],
)
def test_bad_input_is_one_line_exit_2(hub, args, message) -> None:
    proc = space_cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("publish-space: error: ") and message in lines[0], (
        proc.stderr
    )
    assert ("space", SPACE) not in hub.repos


def test_hub_failures_are_one_line_and_keep_the_token_secret(hub) -> None:
    bad = "hf_notTheRightToken9876543210zyx"
    proc = space_cli("--repo-id", SPACE, HF_TOKEN=bad)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("publish-space: error: token rejected")
    assert bad not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr

    proc = space_cli("--repo-id", SPACE, HF_TOKEN="")
    assert proc.returncode == 2 and "no Hugging Face token" in proc.stderr

    proc = space_cli("--repo-id", SPACE, "--dataset", "alice/no-such-dataset")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "--dataset alice/no-such-dataset: no such dataset" in line

    hub.fail_requests(500, match=r"/commit/", retry_after=0)
    proc = space_cli("--repo-id", SPACE, "--dataset", DATASET)
    assert proc.returncode == 2
    *progress, line = proc.stderr.strip().splitlines()  # progress lines, then the one error line
    assert [p for p in progress if "error" in p] == [] and line.startswith("publish-space: error: ")
    assert "server error" in line and "nothing was committed" in line and "Traceback" not in proc.stderr
    repo = hub.repo(SPACE, "space")
    assert len(repo.history(repo.branches["main"])) == 1  # created, but nothing committed


def test_a_space_without_its_sdk_is_refused_by_the_server(hub) -> None:
    """As on the Hub, a Space is created with its SDK (the client sends `space_sdk` as `sdk`)."""
    request = urllib.request.Request(
        f"{hub.endpoint}/api/repos/create",
        data=json.dumps({"type": "space", "name": "x"}).encode(),
        headers={"Authorization": f"Bearer {hub.token}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 400 and "sdk" in err.value.read().decode()
    assert ("space", "alice/x") not in hub.repos


def test_gradio_pin_and_subpackages_match_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["optional-dependencies"]["app"] == [f"gradio=={GRADIO_VERSION}"]
    mapped = set(project["tool"]["setuptools"]["package-dir"]) - {"taskdecomp"}
    assert {f"taskdecomp.{name}" for name in SUBPACKAGES} == mapped
    assert "publish-space" in project["project"]["scripts"]


def test_space_files_are_deterministic() -> None:
    spec = SpaceSpec(SPACE, dataset=DATASET, adapter=ADAPTER)
    assert space_files(spec) == space_files(spec)
    with pytest.raises(ConfigError):
        publish_space(SpaceSpec("bad id"), token="x")
