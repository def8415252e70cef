"""A run that cannot learn fails loudly; `--quiet` is quiet; the corrected re-run takes the folder over.

E24: with `max_length` shorter than the prompts, truncation cuts every completion off; packed
(bfd) rows then have all labels masked and the run "trained" with loss 0, grad_norm 0 and
eval_loss 0. It must stop before the first step, in one line. The failed run leaves its
`train_config.yaml`; the corrected run (another max_length) must not be refused for it (B8).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from train_fixture import make_dataset, model_cache  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _train(ds: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = [str(BIN / "train-adapter"), "--dataset", str(ds), "--recipe", "smollm2-135m-cpu"]
    argv += ["--output-dir", str(out), "--max-steps", "1", "--max-eval-rows", "1", "--quiet", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


@pytest.mark.usefixtures("model_cache")
def test_nothing_to_learn_then_quiet_rerun(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    # the system prompt + task alone take > 100 tokens: no completion token survives
    cut = _train(ds, out, "--max-length", "100")
    err = cut.stderr.strip()
    assert cut.returncode == 2, cut.stderr[-3000:]
    assert len(err.splitlines()) == 1 and "nothing to learn" in err and "--max-length" in err, err
    assert cut.stdout == ""
    assert sorted(p.name for p in out.iterdir()) == ["train_config.yaml"]  # no step was taken

    done = _train(ds, out, "--max-length", "224")
    assert done.returncode == 0, done.stderr[-3000:]
    # --quiet: no library bars, warnings, or the Trainer's metric dicts
    assert done.stdout == "" and done.stderr == "", (done.stdout[-2000:], done.stderr[-2000:])
    assert (out / "adapter_model.safetensors").is_file()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    step = next(r for r in log if "loss" in r)
    assert step["loss"] > 0 and step["grad_norm"] > 0, log
    assert next(r for r in log if "eval_loss" in r)["eval_loss"] > 0, log


def test_the_bitsandbytes_cpu_kernel_notice_is_dropped_and_nothing_else():
    """Loading models through taskdecomp.models drops bitsandbytes' "Failed to load CPU
    gemm_4bit_forward" notice (printed on CPUs with AVX512-BF16 before every evaluation), and only it."""
    code = (
        "import logging, taskdecomp.models, bitsandbytes\n"
        "log = logging.getLogger('bitsandbytes.backends.cpu.ops')\n"
        "log.warning('Failed to load CPU gemm_4bit_forward from kernels-community: untrusted')\n"
        "log.warning('another bitsandbytes warning')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == ["another bitsandbytes warning"]
