"""The app's logic without a browser (tests/test_app_browser.py drives the page): loading and
filtering a dataset for the Explore tab, planning for the Plan tab with each planner, and the
one-line messages bad input gets. Real parts: the heuristic, the real `openai` client against an
OpenAI-compatible server on 127.0.0.1, `datasets` against the loopback Hub."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from taskdecomp.app.explore import ALL, filter_rows, load_dataset_rows, row_markdown, summary_markdown
from taskdecomp.app.messages import error_markdown, error_message
from taskdecomp.app.planning import PlannerSpec, plan_markdown, plan_task, schedule_rows
from taskdecomp.errors import BackendError, ConfigError, InputError
from taskdecomp.heuristic import heuristic_plan
from taskdecomp.hub.publish import publish_dataset

from conftest import free_port, subprocess_env
from dataset_fixture import build_fixture
from hub_server import HubServer

TASK = "Record a podcast about urban beekeeping, transcribe it and design a cover image"
PLAN = (
    "1. Write a script about urban beekeeping. [text generation]\n"
    "2. Record the podcast from the script. [audio generation; after 1]\n"
    "3. Design a cover image of a city beehive. [image generation]"
)


@pytest.fixture
def dataset(tmp_path) -> tuple[Path, dict[str, list[dict]]]:
    out = tmp_path / "ds"
    return out, build_fixture(out, n=40)


def test_explore_loads_a_local_folder_and_filters_it(dataset) -> None:
    out, splits = dataset
    data = load_dataset_rows(str(out))
    assert len(data.rows) == sum(map(len, splits.values()))
    assert data.splits == {s: len(rows) for s, rows in splits.items()}
    assert [r["split"] for r in data.rows] == sorted(
        (r["split"] for r in data.rows), key=lambda s: s != "train"
    )
    assert data.structures == ["chain", "parallel"]  # what the rows have, in the schema's order
    assert load_dataset_rows(str(out)) is data  # cached per source

    assert filter_rows(data) == list(range(len(data.rows)))
    combo = data.combos[-1]
    picked = filter_rows(data, combo, ALL)
    assert picked and all("+".join(data.rows[i]["modalities"]) == combo for i in picked)
    both = filter_rows(data, combo, "parallel")
    assert set(both) <= set(picked) and all(data.rows[i]["structure"] == "parallel" for i in both)
    assert filter_rows(data, ALL, "dag") == []

    text = row_markdown(data.rows[picked[0]], position="row 1 of 3")
    assert "```mermaid\nflowchart TD\n" in text and data.rows[picked[0]]["output"] in text
    assert text.startswith("**row 1 of 3**")
    summary = summary_markdown(data)
    assert f"**{len(data.rows)} rows**" in summary and "| modalities |" in summary
    chart = data.chart()
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _write(out: Path, rows: list[dict]) -> None:
    (out / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), out / "data" / "train-00000-of-00001.parquet")


def test_the_style_filter_applies_only_when_rows_have_a_style(tmp_path, dataset) -> None:
    out, splits = dataset
    rows = [dict(r) for r in splits["train"]]
    for i, r in enumerate(rows):
        r["style"] = ("question", "terse")[i % 2]
    _write(tmp_path / "styled", rows)
    styled = load_dataset_rows(str(tmp_path / "styled"))
    assert styled.has_style and styled.styles == ["question", "terse"]
    questions = filter_rows(styled, ALL, ALL, "question")
    assert questions == list(range(0, len(rows), 2))
    assert "style `question`" in row_markdown(styled.rows[0]) and "request style" in summary_markdown(styled)

    for r in rows:
        del r["style"]  # a dataset built before the style column existed
    _write(tmp_path / "plain", rows)
    plain = load_dataset_rows(str(tmp_path / "plain"))
    assert not plain.has_style and plain.styles == []
    assert filter_rows(plain, ALL, ALL, "question") == list(range(len(rows)))  # ignored, not empty
    assert "style" not in row_markdown(plain.rows[0])


def test_explore_bad_sources_are_one_line(tmp_path) -> None:
    with pytest.raises(InputError, match="no dataset given"):
        load_dataset_rows("  ")
    with pytest.raises(InputError, match="not found"):
        load_dataset_rows(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no data/\*\.parquet shards"):
        load_dataset_rows(str(tmp_path / "empty"))
    (tmp_path / "broken" / "data").mkdir(parents=True)
    (tmp_path / "broken" / "data" / "train-00000-of-00001.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        load_dataset_rows(str(tmp_path / "broken"))
    _write(tmp_path / "other", [{"text": "hello"}])
    with pytest.raises(InputError, match="not a task-decomposition dataset"):
        load_dataset_rows(str(tmp_path / "other"))


LOAD_FROM_HUB = """
import json, sys
from taskdecomp.app.explore import load_dataset_rows
try:
    data = load_dataset_rows(sys.argv[1])
    print(json.dumps({"rows": len(data.rows), "splits": data.splits}))
except Exception as exc:
    print(json.dumps({"error": f"{exc.__class__.__name__}: {exc}"}))
"""


def test_explore_loads_a_hub_dataset(dataset, monkeypatch) -> None:
    out, splits = dataset
    with HubServer() as hub:
        hub.point_clients_here(monkeypatch)
        publish_dataset(out, "alice/task-decomposition")

        def load(source: str) -> dict[str, Any]:
            proc = subprocess.run(  # `datasets` reads HF_ENDPOINT when imported: a fresh process
                [sys.executable, "-c", LOAD_FROM_HUB, source],
                env=subprocess_env(),
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            return json.loads(proc.stdout.strip().splitlines()[-1])

        assert load("alice/task-decomposition") == {
            "rows": sum(map(len, splits.values())),
            "splits": {s: len(r) for s, r in splits.items()},
        }
        missing = load("alice/no-such-dataset")["error"]
        assert missing.startswith("InputError: dataset alice/no-such-dataset: no such dataset on the Hub")


def test_heuristic_plan_graph_and_schedule() -> None:
    plan = plan_task(TASK)
    assert plan == heuristic_plan(TASK)  # the keyword planner, through the decomposer's checks
    rows = schedule_rows(plan)
    assert [r[1] for r in rows] == [s.step for s in plan.steps]  # every step, once
    waves = plan.waves()
    assert [r[0] for r in rows] == [k for k, wave in enumerate(waves, start=1) for _ in wave]
    assert all(r[6] == plan.step(r[1]).description for r in rows)
    text = plan_markdown(plan)
    assert "```mermaid\n" + plan.to_mermaid() + "```" in text
    assert f"{len(waves)} wave(s)" in text and all(s.description in text for s in plan.steps)


@pytest.mark.parametrize("task", ["", "   ", "too short"])
def test_empty_or_short_task_is_one_line(task) -> None:
    with pytest.raises(InputError) as err:
        plan_task(task)
    message = error_message(err.value)
    assert "\n" not in message and ("empty" in message or "characters" in message)
    assert error_markdown(err.value).startswith("⚠️ ")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (PlannerSpec("adapter"), "no adapter given"),
        (PlannerSpec("server"), "no server given"),
        (PlannerSpec("server", base_url="127.0.0.1:8000"), "must be http(s)"),
        (PlannerSpec("magic"), "unknown planner"),
    ],
)
def test_incomplete_planner_choices_are_one_line(spec, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_task(TASK, spec=spec)


def test_missing_adapter_folder_is_one_line(tmp_path) -> None:
    with pytest.raises(InputError) as err:
        plan_task(TASK, spec=PlannerSpec("adapter", adapter=str(tmp_path / "no-adapter")))
    assert "\n" not in str(err.value)


def test_unreachable_server_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(BackendError, match="cannot reach") as err:
        plan_task(TASK, spec=PlannerSpec("server", base_url=url, timeout=5))
    assert "\n" not in error_message(err.value)


class PlanServer:
    """An OpenAI-compatible server (models + chat completions) that always answers PLAN."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, obj: dict[str, Any]) -> None:
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send({"object": "list", "data": [{"id": "task-adapter", "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                message = {"role": "assistant", "content": PLAN}
                self._send({"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})  # fmt: skip

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> PlanServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


def test_server_planner_plans_with_the_served_model() -> None:
    progress: list[str] = []
    with PlanServer() as server:
        spec = PlannerSpec("server", base_url=server.base_url)
        plan = plan_task(TASK, spec=spec, progress=lambda f, desc: progress.append(desc))
        again = plan_task(TASK, spec=spec)
    assert [s.modality for s in plan.steps] == ["text", "audio", "image"] and again == plan
    assert plan.source == "model:task-adapter" and plan.waves() == [[1, 3], [2]]
    assert server.requests[0]["model"] == "task-adapter"  # the server's first model
    assert any("asking" in p for p in progress) and progress[-1] == "done"
    assert [r[0] for r in schedule_rows(plan)] == [1, 1, 2]


def test_importing_the_app_package_loads_no_gradio() -> None:
    code = "import sys, taskdecomp.app, taskdecomp.app.explore, taskdecomp.app.planning; print('gradio' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_build_app_makes_blocks_without_launching(dataset) -> None:
    import gradio as gr

    from taskdecomp.app import build_app

    out, _ = dataset
    demo = build_app(dataset=str(out))
    assert isinstance(demo, gr.Blocks)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {"task-input", "plan-button", "plan-graph", "plan-schedule", "plan-message", "explore-row"} <= ids


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--planner", "adapter"], "--planner adapter needs --adapter"),
        (["--planner", "server"], "--planner server needs --base-url"),
        (["--base-url", "localhost:8000"], "--base-url must be an http(s) URL"),
        (["--port", "70000"], "--port must be 1 to 65535"),
        (["--colour", "red"], "unrecognized arguments"),
    ],
)
def test_app_cli_bad_flags_are_one_line(args, message) -> None:
    exe = Path(sys.executable).parent / "taskdecomp-app"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "taskdecomp.app"]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskdecomp-app: error: ") and message in lines[0], (
        proc.stderr
    )
