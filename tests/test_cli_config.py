"""What every command says about its `--config` file and required options: one line, exit 2,
what is wrong and what to do (the shared `taskdecomp.config` layer, through real console scripts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.run(
        [str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing new on disk
    return proc


@pytest.mark.parametrize("command", ["build-dataset", "train-adapter", "evaluate-adapter", "decompose"])
def test_config_missing_directory_binary(tmp_path, command):
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "bin.yaml").write_bytes(b"\x00\xff\xfe\x00binary")
    err = _run(tmp_path, command, "--config", "nope.yaml").stderr
    assert "nope.yaml not found" in err and "--config" in err
    err = _run(tmp_path, command, "--config", "dir.yaml").stderr
    assert "is a directory" in err and "YAML file" in err
    err = _run(tmp_path, command, "--config", "bin.yaml").stderr
    assert "not a text file" in err and "YAML file" in err


def test_quotas_errors_name_the_quotas_file(tmp_path):
    err = _run(tmp_path, "build-dataset", "--n", "10", "--quotas", "q.yaml", "--out", "ds").stderr
    assert "quotas file q.yaml not found" in err and "--quotas" in err
    assert "config file" not in err


def test_missing_required_option_names_the_flag(tmp_path):
    err = _run(tmp_path, "evaluate-adapter", "--dataset", "x").stderr
    assert "--adapter is required" in err
    assert "__init__" not in err and "positional argument" not in err


def test_bad_yaml_says_where(tmp_path):
    (tmp_path / "bad.yaml").write_text("n: [1, 2\n")
    err = _run(tmp_path, "build-dataset", "--config", "bad.yaml").stderr
    assert "not valid YAML at line" in err


if os.name != "posix":  # pragma: no cover
    pytestmark = pytest.mark.skip("console scripts under a POSIX venv")


def test_train_adapter_advice_fits_what_was_given(tmp_path):
    err = _run(tmp_path, "train-adapter", "--recipe", "nope").stderr
    assert "unknown recipe 'nope'" in err and "quotas" not in err and "smollm2-135m-cpu" in err
    err = _run(
        tmp_path, "train-adapter", "--recipe", "smollm2-135m-cpu", "--device", "cuda", "--dataset", "x"
    ).stderr
    assert "--device" in err and "use --recipe smollm2-135m-cpu" not in err
