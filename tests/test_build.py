"""build-dataset end to end on the offline backend, bad input, extension and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest

from taskdecomp.dataset_builder.cli import main
from taskdecomp.schema import schema_errors

BUILD = [sys.executable, "-m", "taskdecomp.dataset_builder.cli"]


def _ids(out: Path) -> list[str]:
    ds = datasets.load_dataset(str(out))
    return [r["id"] for split in ds.values() for r in split]


def test_offline_end_to_end_200(tmp_path):
    out = tmp_path / "ds"
    proc = subprocess.run(
        [*BUILD, "--n", "200", "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "offline backend" in proc.stderr  # auto said what it picked, in one line
    ds = datasets.load_dataset(str(out))
    rows = [r for split in ds.values() for r in split]
    assert len(rows) == 200
    assert len({r["id"] for r in rows}) == 200
    assert all(schema_errors(r) == [] for r in rows)
    assert 0 < len(ds["test"]) < len(ds["train"])
    stats = json.loads((out / "stats.json").read_text())
    assert stats["n_rows"] == 200 and stats["backend"] == "offline"
    # the coverage table counts the rows that were written
    assert sum(sum(v.values()) for v in stats["coverage"].values()) == 200
    assert len(stats["coverage"]) == 15  # every modality combination is present at n=200
    assert (out / "coverage.md").read_text().count("\n") >= 17
    assert (out / "README.md").exists() and (out / "rejects.jsonl").exists()
    assert (
        "ROUGE-L F >= 0.7, only the first is kept" in (out / "README.md").read_text()
    )  # the value, not a name
    assert not list(out.rglob("*.tmp"))


def test_same_seed_same_rows_and_extension(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["--n", "45", "--out", str(a), "--quiet"]) == 0
    assert main(["--n", "45", "--out", str(b), "--quiet"]) == 0
    assert sorted(_ids(a)) == sorted(_ids(b))
    first = set(_ids(a))
    # a larger --n on the same folder extends the build: the earlier rows stay
    assert main(["--n", "90", "--out", str(a), "--quiet"]) == 0
    extended = _ids(a)
    assert len(extended) == 90 == len(set(extended))
    assert first <= set(extended)
    # re-running with the same n changes nothing
    assert main(["--n", "90", "--out", str(a), "--quiet"]) == 0
    assert sorted(_ids(a)) == sorted(extended)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--n", "0"], "--n must be at least 1"),
        (["--n", "-3"], "--n must be at least 1"),
        (["--n", "abc"], "invalid int value"),
        (["--rows-per-call", "0"], "--rows-per-call must be at least 1"),
        (["--backend", "gemini"], "invalid choice"),
        (["--config", "/nonexistent/build.yaml"], "not found"),
        (["--push"], "--push needs --repo-id"),
        (["--test-size", "1.5"], "--test-size"),
    ],
)
def test_bad_flags_one_line_exit_2(tmp_path, capsys, args, needle):
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and needle in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_bad_config_files(tmp_path, capsys):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("n: [1, 2\nseed: 3\n")
    assert main(["--config", str(bad_yaml)]) == 2
    assert "not valid YAML at line" in capsys.readouterr().err
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("n: 10\nrows_per_cal: 3\n")
    assert main(["--config", str(unknown)]) == 2
    assert "unknown key 'rows_per_cal'" in capsys.readouterr().err
    wrong_type = tmp_path / "type.yaml"
    wrong_type.write_text("n: lots\n")
    assert main(["--config", str(wrong_type)]) == 2
    assert "'n' must be int" in capsys.readouterr().err


def test_config_file_then_flags_override(tmp_path):
    cfg = tmp_path / "build.yaml"
    out = tmp_path / "from-yaml"
    cfg.write_text(f"n: 30\nout: {out}\nseed: 7\nquiet: true\n")
    assert main(["--config", str(cfg), "--n", "20"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["n_rows"] == 20 and stats["seed"] == 7


def test_out_is_a_file_or_another_build(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["--n", "10", "--out", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err
    out = tmp_path / "ds"
    assert main(["--n", "15", "--out", str(out), "--quiet"]) == 0
    assert main(["--n", "15", "--out", str(out), "--seed", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds a different build" in err and "seed" in err
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["--n", "10", "--out", str(other)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path):
    out = tmp_path / "ds"
    # A job started in the background by a shell without job control (nohup ... &, some CI runners)
    # inherits SIGINT ignored, and Python keeps it ignored: reset it, as a terminal's Ctrl-C would find it.
    proc = subprocess.Popen(
        [*BUILD, "--n", "20000", "--out", str(out)],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    journal = out / ".build" / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (journal.exists() and journal.stat().st_size > 0):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "re-run the same command to resume" in err and "Traceback" not in err
    assert not (out / "data").exists()  # nothing half-written
    assert subprocess.run([*BUILD, "--n", "300", "--out", str(out), "--quiet"], timeout=300).returncode == 0
    assert len(set(_ids(out))) == 300


def test_build_with_push_publishes_to_the_hub(tmp_path):
    from hub_server import DEFAULT_TOKEN, HubServer

    out = tmp_path / "ds"
    with HubServer() as server:
        env = {**os.environ, **server.env()}
        args = [*BUILD, "--n", "45", "--out", str(out), "--quiet", "--push"]
        missing = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert missing.returncode == 2 and "--repo-id" in missing.stderr  # refused before building
        assert not out.exists()
        done = subprocess.run(
            [*args, "--repo-id", "alice/task-decomposition"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        files = server.files("alice/task-decomposition")
    assert "/datasets/alice/task-decomposition" in done.stdout + done.stderr
    assert {"README.md", "coverage.png", "data/train-00000-of-00001.parquet"} <= set(files)
    assert DEFAULT_TOKEN not in done.stdout + done.stderr
    assert DEFAULT_TOKEN.encode() not in files["README.md"]
