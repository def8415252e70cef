"""build-dataset / import-dataset reliability (issue 10): failed first builds leave nothing,
bad --out locations, refused option combinations, the small-build split, the ETA warm-up,
and --max-cost holding over retried, billed, unusable replies. Bad input runs the real
console scripts."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path

import pytest

from taskdecomp.dataset_builder.output import split_rows
from taskdecomp.reporter import Reporter

from conftest import free_port
from fake_openai import FakeOpenAI

BIN = Path(sys.executable).parent
BUILD = [str(BIN / "build-dataset")]
IMPORT = [str(BIN / "import-dataset")]
KEY = "sk-test-secret-key-0123456789"
ROWS = [  # rows the importer accepts, so only the --out check can refuse the import
    {
        "instruction": "Photograph a city street at night and write a caption for the photo.",
        "output": "1. Photograph a busy city street at night. 2. Write a caption describing the photo.",
    },
    {
        "instruction": "Write a short poem about autumn and record it as a spoken audio clip.",
        "output": "1. Write a short poem about autumn leaves. 2. Record a spoken reading of the poem.",
    },
]


def _run(cmd: list[str], **env: str):
    import subprocess

    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **env})


def _tree(root: Path) -> dict[str, str]:
    """Every file under `root` with its content hash (to check 'byte-identical')."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _refused(proc, needle: str = "") -> None:
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert needle in err, err


# --- A5: a first build that journaled nothing leaves nothing behind ----------------------
@pytest.mark.parametrize("fault", ["401", "404", "500", "slow", "unreachable", "malformed"])
def test_failed_first_build_leaves_nothing_and_the_fix_runs(tmp_path, fault):
    out = tmp_path / "ds"
    with FakeOpenAI() as fake:
        url = fake.base_url
        if fault == "unreachable":
            url = f"http://127.0.0.1:{free_port()}/v1"
        elif fault == "malformed":
            url = "htp:/nowhere"
        else:
            # exactly the attempts made (two, retried, for 5xx and timeouts), so the fix runs clean
            fake.script(*[fault] * (2 if fault in ("500", "slow") else 1))
        bad = ["--n", "4", "--out", str(out), "--rows-per-call", "4", "--max-attempts", "2"]
        bad += ["--max-wait", "2", "--timeout", "2", "--quiet", "--base-url", url]
        _refused(_run([*BUILD, *bad], OPENAI_API_KEY=KEY))
        assert not out.exists()  # no .build/ to block the corrected command
        good = _run(
            [
                *BUILD,
                "--n",
                "4",
                "--out",
                str(out),
                "--rows-per-call",
                "4",
                "--quiet",
                "--base-url",
                fake.base_url,
            ],
            OPENAI_API_KEY=KEY,
        )
    assert good.returncode == 0, good.stderr
    assert json.loads((out / "stats.json").read_text())["n_rows"] == 4


# --- B6 / B9: the output location is checked before any work -----------------------------
def _bad_outs(tmp_path: Path) -> list[Path]:
    f = tmp_path / "a-file"
    f.write_text("mine")
    return [f / "below", f, Path("/proc/taskdecomp-out"), Path("/sys/taskdecomp-out")]


def test_build_out_below_a_file_or_virtual_fs(tmp_path):
    for out in _bad_outs(tmp_path):
        before = _tree(tmp_path)
        _refused(_run([*BUILD, "--n", "5", "--out", str(out)]), "--out")
        assert _tree(tmp_path) == before


def test_import_out_below_a_file_or_virtual_fs(tmp_path):
    src = tmp_path / "rows.json"
    src.write_text(json.dumps(ROWS))
    for out in _bad_outs(tmp_path):
        before = _tree(tmp_path)
        _refused(_run([*IMPORT, str(src), "--out", str(out)]), "--out")
        assert _tree(tmp_path) == before


def test_import_refuses_a_build_folder(tmp_path):
    out = tmp_path / "ds"
    assert _run([*BUILD, "--n", "15", "--out", str(out), "--quiet"]).returncode == 0
    before = _tree(out)
    src = tmp_path / "rows.json"
    src.write_text(json.dumps(ROWS))
    _refused(_run([*IMPORT, str(src), "--out", str(out)]), "build-dataset")
    assert _tree(out) == before


# --- E19: the split of a small build ------------------------------------------------------
@pytest.mark.parametrize("n, test", [(40, 4), (60, 6), (200, 20), (7, 1)])
def test_small_split_gives_its_share(n, test):
    combos = [["text"], ["image"], ["audio"], ["video"], ["image", "text"], ["audio", "video"]]
    combos += [["audio", "image"], ["text", "video"], ["audio", "text"], ["image", "video"]]
    combos += [["audio", "image", "text"], ["audio", "text", "video"], ["image", "text", "video"]]
    combos += [["audio", "image", "video"], ["audio", "image", "text", "video"]]
    rows = [{"id": f"r{i}", "modalities": combos[i % 15]} for i in range(n)]
    splits = split_rows(rows, 0.1, seed=0)
    assert len(splits["test"]) == test and len(splits["train"]) == n - test


def test_build_of_40_rows_has_4_test_rows(tmp_path):
    out = tmp_path / "ds"
    assert _run([*BUILD, "--n", "40", "--out", str(out), "--quiet"]).returncode == 0
    assert json.loads((out / "stats.json").read_text())["splits"] == {"train": 36, "test": 4}


# --- D18 / D16: refused options, and nothing said before the error ------------------------
def test_options_the_backend_cannot_honour_are_refused(tmp_path):
    out = tmp_path / "ds"
    _refused(_run([*BUILD, "--n", "5", "--out", str(out), "--batch", "--backend", "offline"]), "--batch")
    # auto → offline: the "using the offline backend" line must not precede the error
    _refused(_run([*BUILD, "--n", "5", "--out", str(out), "--batch"]), "--batch")
    missing = tmp_path / "missing.yaml"
    _refused(_run([*BUILD, "--n", "5", "--out", str(out), "--prices", str(missing)]), "missing.yaml")
    assert not out.exists()


def test_unknown_price_with_max_cost_is_one_line(tmp_path):
    out = tmp_path / "ds"
    with FakeOpenAI() as fake:
        args = ["--n", "5", "--out", str(out), "--base-url", fake.base_url, "--model", "my-llm"]
        _refused(_run([*BUILD, *args, "--max-cost", "1"], OPENAI_API_KEY=KEY), "--prices")
        assert fake.stats["chat_requests"] == 0
    assert not out.exists()


# --- E23: no ETA before a warm-up -----------------------------------------------------------
def test_first_progress_line_has_no_eta(monkeypatch):
    from taskdecomp import reporter as reporter_mod

    now = [1000.0]
    monkeypatch.setattr(reporter_mod.time, "monotonic", lambda: now[0])
    stream = io.StringIO()
    progress = reporter_mod.Progress(Reporter(stream=stream, log_every=0.0), 5000, "rows")
    now[0] += 20.0  # a slow start-up / first request: must not make the ETA 10,000 s
    progress.update(10)
    assert "eta=" not in stream.getvalue()
    now[0] += 10.0
    progress.update(100)
    last = stream.getvalue().strip().splitlines()[-1]
    assert "eta=" in last
    eta = int(last.rsplit("eta=", 1)[1].rstrip("s"))
    assert eta == round((5000 - 110) * 10.0 / 100)


# --- A3: --max-cost over retried, billed, unusable replies ---------------------------------
def _billed(fake: FakeOpenAI) -> float:
    # gpt-4o in the shipped price table: $2.50 / $10.00 per 1M input / output tokens
    return (fake.stats["prompt_tokens"] * 2.5 + fake.stats["completion_tokens"] * 10.0) / 1e6


def test_max_cost_holds_over_billed_invalid_replies(tmp_path):
    # One attempt of a 3-row request bills about $0.012 (worst case, the budget's unit: about
    # $0.025); five truncated (billed, unusable) replies before a good one bill about $0.047.
    # A budget of $0.035 covers one attempt's worst case but not six: reserving for one attempt
    # (the old behaviour) sends the request and overspends; reserving for all attempts sends nothing.
    args = ["--n", "30", "--rows-per-call", "3", "--max-attempts", "6", "--max-wait", "30"]
    args += ["--concurrency", "1", "--quiet"]
    with FakeOpenAI() as fake:
        fake.script(*["truncated"] * 5)
        base = [*BUILD, *args, "--base-url", fake.base_url]
        tight = _run([*base, "--out", str(tmp_path / "tight"), "--max-cost", "0.035"], OPENAI_API_KEY=KEY)
        assert _billed(fake) <= 0.035, tight.stderr
        _refused(tight, "--max-cost")
        # a budget that fits the worst case of one request over all its attempts, not two
        assert fake.stats["chat_requests"] == 0  # so the five truncated replies are still to come
        out = tmp_path / "ds"
        before = _billed(fake)
        done = _run([*base, "--out", str(out), "--max-cost", "0.2"], OPENAI_API_KEY=KEY)
        billed = _billed(fake) - before
    assert done.returncode == 0, done.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["stopped"] and 0 < stats["n_rows"] < 30
    assert billed <= 0.2
    assert stats["cost_usd"] == pytest.approx(billed, rel=1e-6, abs=1e-6)  # every billed token counted


def test_billed_spend_of_a_failed_request_is_journaled_and_counted(tmp_path):
    out = tmp_path / "ds"
    with FakeOpenAI() as fake:
        # the first request is answered with truncated (billed, unusable) replies until it gives up
        fake.script("truncated", "truncated")
        args = ["--n", "3", "--out", str(out), "--base-url", fake.base_url, "--rows-per-call", "3"]
        args += ["--max-attempts", "2", "--max-wait", "5", "--quiet"]
        _refused(_run([*BUILD, *args], OPENAI_API_KEY=KEY), "unusable")
        failed_spend = _billed(fake)
        assert failed_spend > 0
        lines = [json.loads(x) for x in (out / ".build" / "journal.jsonl").read_text().splitlines()]
        assert [r["t"] for r in lines] == ["spend"]
        assert lines[0]["cost"] == pytest.approx(failed_spend, rel=1e-6)
        done = _run([*BUILD, *args], OPENAI_API_KEY=KEY)
        assert done.returncode == 0, done.stderr
        billed = _billed(fake)
    stats = json.loads((out / "stats.json").read_text())
    # stats.json rounds USD to 6 decimals: equal to within one unit of the last one
    assert stats["cost_usd"] == pytest.approx(billed, rel=1e-6, abs=1e-6)
    assert stats["usage"] == {
        "prompt_tokens": fake.stats["prompt_tokens"],
        "completion_tokens": fake.stats["completion_tokens"],
    }


def test_refusals_after_the_backend_is_chosen_are_one_line(tmp_path):
    # auto picks offline here; that info line must not come before these errors
    out = tmp_path / "ds"
    assert _run([*BUILD, "--n", "15", "--out", str(out), "--quiet"]).returncode == 0
    before = _tree(out)
    _refused(_run([*BUILD, "--n", "15", "--out", str(out), "--seed", "1"]), "holds a different build")
    _refused(_run([*BUILD, "--n", "15", "--out", str(out), "--quotas", str(tmp_path / "q.yaml")]))
    _refused(_run([*BUILD, "--n", "15", "--out", str(tmp_path / "new"), "--dry-run", "--batch"]), "--batch")
    assert _tree(out) == before and not (tmp_path / "new").exists()


def test_a_short_job_prints_no_progress_line(monkeypatch):
    """D16: a job that ends (or fails) before `log_every` prints no progress, so an error line
    stays the only line; a long one still gets its lines and the final count."""
    from taskdecomp import reporter as reporter_mod

    now = [0.0]
    monkeypatch.setattr(reporter_mod.time, "monotonic", lambda: now[0])
    stream = io.StringIO()
    progress = reporter_mod.Progress(Reporter(stream=stream, log_every=10.0), 3, "importing")
    progress.update(3)
    assert stream.getvalue() == ""
    progress = reporter_mod.Progress(Reporter(stream=stream, log_every=10.0), 3, "importing")
    now[0] += 11.0
    progress.update(1)
    progress.update(2)
    assert [line.split(":")[1].split()[0] for line in stream.getvalue().splitlines()] == ["1/3", "3/3"]
