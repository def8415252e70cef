"""Nothing lost: kill -9 a training run after a checkpoint, `--resume`, same final step count."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from train_fixture import flags_for, make_dataset, model_cache, small_overrides  # noqa: F401  (fixture)

from hub_server import DEFAULT_TOKEN, HubServer

pytestmark = pytest.mark.slow


def _cmd(ds, out, *extra: str) -> list[str]:
    flags = small_overrides(max_steps=6, save_steps=2, eval_steps=0, max_length=192)
    argv = [
        sys.executable,
        "-m",
        "taskdecomp.trainer.cli",
        "--dataset",
        str(ds),
        "--recipe",
        "smollm2-135m-cpu",
    ]
    argv += ["--output-dir", str(out), "--quiet"]
    return argv + flags_for(flags) + list(extra)


@pytest.mark.usefixtures("model_cache")
def test_kill_9_then_resume(tmp_path):
    env = dict(os.environ)  # carries TASKDECOMP_MODEL_CACHE
    ds = make_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    proc = subprocess.Popen(_cmd(ds, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    try:
        while not (out / "checkpoint-2" / "trainer_state.json").is_file():
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 600 s"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (out / "adapter_model.safetensors").exists()  # it really died mid-run

    rerun = subprocess.run(_cmd(ds, out), env=env, capture_output=True, text=True)
    assert rerun.returncode == 2 and "--resume" in rerun.stderr  # same run, no flag: refused

    # The resumed run also pushes (one commit to a Hub on 127.0.0.1, through HF_ENDPOINT).
    with HubServer() as hub:
        env = {**env, **hub.env()}  # HF_ENDPOINT, HF_TOKEN (the server's test token)
        push = ("--push", "--repo-id", "alice/smol-decomposer")
        done = subprocess.run(
            _cmd(ds, out, "--resume", *push), env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-2000:]
        files = hub.files("alice/smol-decomposer", "model")
        commits = len(hub.repo("alice/smol-decomposer", "model").commits)
    assert {
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "loss.png",
        "tokenizer.json",
    } <= set(files)
    assert files["adapter_model.safetensors"] == (out / "adapter_model.safetensors").read_bytes()
    assert b"alice/smol-decomposer" in files["README.md"] and DEFAULT_TOKEN.encode() not in files["README.md"]
    assert DEFAULT_TOKEN not in (out / "train_config.yaml").read_text() + done.stderr
    assert commits <= 2  # the repo's initial commit + ONE upload commit
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log]
    train_steps = [s for s in steps if s > 0][:6]
    assert train_steps == [1, 2, 3, 4, 5, 6], steps  # continuous, nothing logged twice
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5, 6], log
    assert [r["step"] for r in log if "eval_loss" in r] == [6], log  # eval_steps 0: one eval, at the end
    assert (out / "adapter_model.safetensors").is_file()
