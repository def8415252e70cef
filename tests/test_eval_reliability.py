"""`evaluate-adapter` refuses bad input in one line, exit 2, before any model loads.

Every case runs the real console script; the adapter is a folder with an `adapter_config.json`
that cannot load, so a check that came too late would fail differently (or after minutes of
generation on a real adapter). The outputs, the dataset rows and the Hub are checked first.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port, subprocess_env

SCRIPT = str(Path(sys.executable).with_name("evaluate-adapter"))
ROW = {"instruction": "Write a song and film a music video for it.", "output": "1. Write the song."}


def evaluate(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args], cwd=cwd, env=subprocess_env(**env), capture_output=True, text=True, timeout=120
    )


def one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("evaluate-adapter: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    (tmp_path / "tasks.jsonl").write_text(json.dumps(ROW) + "\n")
    return tmp_path


# --- B10: outputs are checked before the work -------------------------------------------------


@pytest.mark.parametrize(
    ("output", "needle"),
    [
        ("outdir", "is a directory"),
        ("afile/results.json", "which is a file"),
        ("/proc/taskdecomp-results.json", "cannot be written"),  # read-only even for root
    ],
    ids=["directory", "under-a-file", "unwritable"],
)
def test_unusable_output_fails_before_the_model_loads(work: Path, output: str, needle: str) -> None:
    (work / "outdir").mkdir()
    (work / "afile").write_text("not a folder\n")
    before = snapshot(work)
    proc = evaluate(work, "--adapter", "adapter", "--dataset", "tasks.jsonl", "--output", output)
    one_line(proc, needle)
    assert snapshot(work) == before


def test_unwritable_card_with_update_card_fails_first(work: Path) -> None:
    (work / "adapter" / "README.md").mkdir()  # the card's path is taken by a folder
    before = snapshot(work)
    proc = evaluate(
        work, "--adapter", "adapter", "--dataset", "tasks.jsonl", "--update-card", "--output", "r.json"
    )
    one_line(proc, "model card", "README.md", "is a directory")
    assert snapshot(work) == before


# --- C14: every row is checked before the model ------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "needles"),
    [
        ([json.dumps(ROW), "{not json"], ("tasks.jsonl: corrupt JSON at line 2, column 2", "fix the file")),
        ([json.dumps(ROW), json.dumps({**ROW, "output": None})], ("tasks.jsonl line 2", "'output' is null")),
        ([json.dumps({**ROW, "instruction": 7})], ("line 1", "'instruction' is a number")),
        ([json.dumps({**ROW, "input": ["x"]})], ("line 1", "'input' is a list")),
        (["[1, 2]"], ("line 1", "not a JSON object")),
    ],
    ids=["corrupt-line", "null-output", "number-instruction", "list-input", "not-an-object"],
)
def test_bad_rows_name_the_line(work: Path, lines: list[str], needles: tuple[str, ...]) -> None:
    (work / "tasks.jsonl").write_text("\n".join(lines) + "\n")
    before = snapshot(work)
    line = one_line(evaluate(work, "--adapter", "adapter", "--dataset", "tasks.jsonl"), *needles)
    assert "DatasetGenerationError" not in line
    assert snapshot(work) == before


def test_json_array_with_a_null_reference_names_the_row(work: Path) -> None:
    (work / "tasks.json").write_text(json.dumps([ROW, {**ROW, "output": None}]))
    one_line(evaluate(work, "--adapter", "adapter", "--dataset", "tasks.json"), "tasks.json row 2", "null")


# --- D17: a missing required flag ---------------------------------------------------------------


def test_missing_adapter_flag_says_what_to_pass(work: Path) -> None:
    line = one_line(evaluate(work, "--dataset", "tasks.jsonl"), "--adapter is required")
    assert "train-adapter output folder or a Hub repo id" in line
    assert "__init__" not in line and "positional argument" not in line


# --- D17/D16: a dead Hub endpoint -----------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--dataset", "--adapter"])
def test_dead_hub_endpoint_is_one_quiet_line(work: Path, flag: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    args = {"--adapter": "adapter", "--dataset": "tasks.jsonl", flag: "alice/somewhere"}
    proc = evaluate(work, *(x for kv in args.items() for x in kv), HF_ENDPOINT=url)
    # one line, so no "Retrying in 8s" or progress bars from the libraries before it
    one_line(proc, f"the Hub at {url} is unreachable", "HF_ENDPOINT", f"local folder as {flag}")
