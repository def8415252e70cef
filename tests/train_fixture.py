"""Shared helpers of the train-adapter tests: a tiny offline dataset, CI-sized overrides, and one
cache for the GGUF → safetensors conversion of the tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taskdecomp.dataset_builder.offline import generate_rows
from taskdecomp.dataset_builder.output import write_splits
from taskdecomp.schema import make_row
from taskdecomp.taxonomy import CELLS

TRAIN_ROWS, TEST_ROWS = 4, 1


def offline_rows(n: int, seed: int = 0) -> list[dict]:
    rows = [
        make_row(c, "offline") for i, cell in enumerate(CELLS[:n]) for c in generate_rows(cell, 1, seed + i)
    ]
    # the shortest plans keep each step cheap on 2 cores
    return sorted(rows, key=lambda r: len(r["output"]) + len(r["instruction"]))[:n]


def make_dataset(out: Path, n_train: int = TRAIN_ROWS, n_test: int = TEST_ROWS) -> Path:
    rows = offline_rows(n_train + n_test)
    write_splits({"train": rows[:n_train], "test": rows[n_train:]}, out)
    return out


@pytest.fixture(scope="module")
def model_cache(request):
    """The GGUF → safetensors conversion is cached across tests (and runs: .pytest_cache)."""
    cache = os.environ.get("TASKDECOMP_MODEL_CACHE")
    if not cache:
        cache_plugin = getattr(request.config, "cache", None)
        factory = request.getfixturevalue("tmp_path_factory")
        cache = cache_plugin.mkdir("taskdecomp-models") if cache_plugin else factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TASKDECOMP_MODEL_CACHE", str(cache))
        yield cache


def small_overrides(**extra) -> dict:
    """CI-sized: 10 steps of one example each, LoRA on the last 2 of 30 layers."""
    values = {
        "max_steps": 10,
        "lora_last_layers": 2,
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.0,
        "learning_rate": 3e-3,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "max_length": 256,
        "packing": False,
        "per_device_train_batch_size": 1,
        "logging_steps": 1,
        "eval_steps": 5,
        "save_steps": 5,
        "max_eval_rows": 1,
    }
    values.update(extra)
    return values


def flags_for(values: dict) -> list[str]:
    """CLI flags for TrainConfig values (bools as --x / --no-x)."""
    argv: list[str] = []
    for key, value in values.items():
        flag = key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            argv += [f"--{flag}", str(value)]
    return argv
