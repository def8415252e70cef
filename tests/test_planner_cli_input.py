"""`decompose` refuses bad input in one line, exit 2, before the model loads (real console script)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port, subprocess_env

SCRIPT = str(Path(sys.executable).with_name("decompose"))
TASK = "Record a podcast episode about urban bees and design a cover image for it."


def decompose(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args], cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=120
    )


def one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr and proc.stdout == "", proc.stderr
    assert lines[0].startswith("decompose: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "content",
    [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", b"Record a podcast\x00\x00\x00 about bees\n"],
    ids=["not-utf8", "nul-bytes"],
)
def test_binary_task_file(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "tasks.bin").write_bytes(content)
    one_line(decompose(tmp_path, "--file", "tasks.bin"), "tasks.bin is not a text file", "one task per line")


def test_directory_as_task_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    line = one_line(decompose(tmp_path, "--file", "tasks"), "tasks is a directory", "one task per line")
    assert "not found" not in line


def test_dry_run_without_run_is_refused(tmp_path: Path) -> None:
    one_line(decompose(tmp_path, TASK, "--dry-run"), "--dry-run only applies with --run")


def test_dead_hub_endpoint_for_a_hub_adapter_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = subprocess.run(
        [SCRIPT, TASK, "--adapter", "alice/tiny-adapter"],
        cwd=tmp_path, env=subprocess_env(HF_ENDPOINT=url), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # one line: no bitsandbytes/transformers noise before it (nothing heavy was imported yet)
    one_line(proc, f"the Hub at {url} is unreachable", "HF_ENDPOINT", "local folder as --adapter")
