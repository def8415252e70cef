"""Bad training data and broken adapter folders fail in one line before any model loads.

Every case runs the real console script (train-adapter, decompose, evaluate-adapter) and
asserts: exit 2, one stderr line, no traceback, nothing new on disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml

BIN = Path(sys.executable).parent

CARD = """---
dataset_info:
  features:
  - name: instruction
    dtype: string
  - name: input
    dtype: string
  - name: output
    dtype: string
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
---
"""


def _run(script: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / script), *argv], capture_output=True, text=True, cwd=cwd, timeout=300)


def _one_line(proc: subprocess.CompletedProcess, script: str) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(err.splitlines()) == 1 and err.startswith(f"{script}: error:"), err
    assert "Traceback" not in err
    return err


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _dataset(root: Path, columns: dict, card: str | None = None) -> Path:
    (root / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(columns).to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    if card:
        (root / "README.md").write_text(card)
    return root


TRAIN = ("--recipe", "smollm2-135m-cpu", "--max-steps", "1")


@pytest.mark.parametrize(
    ("columns", "card", "message"),
    [
        # C12: the card declares 'output', the Parquet has none: datasets fills it with nulls
        ({"instruction": ["a", "b"], "input": ["", ""]}, CARD, "column 'output' is null in every train row"),
        ({"instruction": ["a", None], "output": ["x", "y"]}, None, "train row 1 has a null 'instruction'"),
        ({"instruction": ["a", "b"], "output": ["x", "  "]}, None, "train row 1 has an empty 'output'"),
        ({"instruction": ["a", "b"], "output": [1, 2]}, None, "train row 0 has a non-string (int) 'output'"),
    ],
)
def test_bad_values_fail_before_the_model(tmp_path, columns, card, message):
    ds = _dataset(tmp_path / "ds", columns, card)
    before = _snapshot(tmp_path)
    proc = _run("train-adapter", "--dataset", str(ds), *TRAIN, "--output-dir", "out", cwd=tmp_path)
    assert message in _one_line(proc, "train-adapter")
    assert _snapshot(tmp_path) == before  # no output folder, no train_config.yaml


def test_unfinished_run_is_taken_over(tmp_path):
    """B8: a run that died before its first checkpoint left train_config.yaml; the corrected
    re-run (another config) is not refused as "holds a different run"."""
    ds = _dataset(tmp_path / "ds", {"instruction": ["a", None], "output": ["x", "y"]})
    out = tmp_path / "out"
    out.mkdir()
    (out / "train_config.yaml").write_text(yaml.safe_dump({"dataset": "old", "max_steps": 9}))
    (out / "train_log.jsonl").write_text('{"step": 0, "n_train": 2, "n_eval": 0}\n')
    before = _snapshot(tmp_path)
    proc = _run("train-adapter", "--dataset", str(ds), *TRAIN, "--output-dir", str(out), cwd=tmp_path)
    err = _one_line(proc, "train-adapter")
    assert "null 'instruction'" in err and "different run" not in err, err  # got past check_run
    assert _snapshot(tmp_path) == before  # the bad data still fails before the folder is touched

    from taskdecomp.trainer.train import _replaceable, check_run
    from taskdecomp.trainer.train_config import TrainConfig

    cfg = TrainConfig(dataset=str(ds), output_dir=str(out), max_steps=1)
    assert check_run(cfg) is None and _replaceable(cfg, out)
    (out / "checkpoint-1").mkdir()  # a finished step: now it is a run worth protecting
    with pytest.raises(Exception, match="holds a different run"):
        check_run(cfg)
    assert not _replaceable(cfg, out)


def _adapter(root: Path, config: str | None, weights: bool) -> Path:
    root.mkdir()
    if config is not None:
        (root / "adapter_config.json").write_text(config)
    if weights:
        (root / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    return root


def _eval_dataset(root: Path) -> Path:
    return _dataset(root, {"instruction": ["a"], "output": ["1. x [text generation]"]})


@pytest.mark.parametrize(
    ("config", "weights", "message"),
    [
        ("{not json", True, "adapter_config.json is not valid JSON"),
        ("[1, 2]", True, "adapter_config.json is not a JSON object"),
        ('{"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"}', False, "no adapter weights"),
    ],
)
@pytest.mark.parametrize("script", ["decompose", "evaluate-adapter"])
def test_broken_adapter_folder(tmp_path, config, weights, message, script):
    adapter = _adapter(tmp_path / "ad", config, weights)
    if script == "decompose":
        argv = ["--adapter", str(adapter), "Draw a cat and describe it"]
    else:
        argv = [
            "--adapter",
            str(adapter),
            "--dataset",
            str(_eval_dataset(tmp_path / "ds")),
            "--split",
            "train",
            "--quiet",
        ]
    before = _snapshot(tmp_path)
    err = _one_line(_run(script, *argv, cwd=tmp_path), script)
    assert message in err and str(adapter) in err, err
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("token", "repo_id", "message"),
    [
        ("hf_rejectedToken0123456789", "alice/adapter", "token rejected by"),
        (None, "bob/adapter", "cannot write to bob/"),
    ],
)
def test_push_without_write_access_fails_before_training(tmp_path, token, repo_id, message):
    """C15: a rejected token or a namespace the token cannot write to fails before training."""
    from hub_server import HubServer

    ds = _dataset(tmp_path / "ds", {"instruction": ["a"], "output": ["x"]})
    before = _snapshot(tmp_path)
    with HubServer() as hub:
        env = {**os.environ, **hub.env(), **({"HF_TOKEN": token} if token else {})}
        proc = subprocess.run(
            [str(BIN / "train-adapter"), "--dataset", str(ds), *TRAIN, "--output-dir", "out"]
            + ["--push", "--repo-id", repo_id],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=300,
        )
        assert not hub.repos  # nothing was created on the Hub
    err = _one_line(proc, "train-adapter")
    assert message in err and "hf_" not in err, err
    assert _snapshot(tmp_path) == before


def test_train_config_round_trips_through_yaml(tmp_path):
    """issue 11: train_config.yaml is read back as the TrainConfig it was written from."""
    from taskdecomp.config import to_dict
    from taskdecomp.errors import ConfigError
    from taskdecomp.models import saved_base
    from taskdecomp.trainer.train import _save_config
    from taskdecomp.trainer.train_config import CONFIG_FILE, TrainConfig

    cfg = TrainConfig(dataset="ds", recipe="smollm2-135m-cpu", target_modules=["q_proj"], learning_rate=1e-3)
    _save_config(cfg, tmp_path)
    back = TrainConfig.from_yaml(tmp_path / CONFIG_FILE)
    assert to_dict(back) == {**to_dict(cfg), "output_dir": str(tmp_path)}
    assert saved_base(tmp_path).base_model == cfg.base_model  # the core's typed view of it
    (tmp_path / CONFIG_FILE).write_text("max_steps: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        TrainConfig.from_yaml(tmp_path / CONFIG_FILE)
