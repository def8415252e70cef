"""`train-adapter --dataset PATH_OR_REPO --recipe NAME_OR_YAML [--output-dir DIR] [--push --repo-id R]
[--resume | --overwrite] [any TrainConfig field as a flag, e.g. --max-steps 50]`.

The recipe is read first (a tiny pre-parse), becomes the base layer of the config, and
`--config FILE` / flags override it. Runs the same under `accelerate launch`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from taskdecomp.cli import entrypoint
from taskdecomp.config import load_yaml, parse_config
from taskdecomp.errors import ConfigError
from taskdecomp.reporter import Reporter

from .config import TrainConfig

__all__ = ["main", "recipe_names", "load_recipe", "default_recipe"]

PROG = "train-adapter"


def recipe_names() -> list[str]:
    return sorted(
        p.name[: -len(".yaml")]
        for p in resources.files("taskdecomp.recipes").iterdir()
        if p.name.endswith(".yaml") and not p.name.startswith("accelerate_")
    )


def default_recipe() -> str:
    import torch

    return "mistral-7b-qlora" if torch.cuda.is_available() else "smollm2-135m-cpu"


def load_recipe(spec: str) -> dict[str, Any]:
    """A shipped recipe by name, or a YAML file; the recipe's name is recorded in the config."""
    shipped = resources.files("taskdecomp.recipes") / f"{spec}.yaml"
    if shipped.is_file():
        values = load_yaml(Path(str(shipped)))
    elif spec.endswith((".yaml", ".yml")) and Path(spec).is_file():
        values = load_yaml(spec)
    else:
        raise ConfigError(f"unknown recipe '{spec}'; use one of {', '.join(recipe_names())} or a YAML file")
    values["recipe"] = spec
    return values


@entrypoint(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", default=None)
    known, _ = pre.parse_known_args(argv)
    recipe = load_recipe(known.recipe or default_recipe())
    cfg = parse_config(
        TrainConfig,
        argv,
        prog=PROG,
        description="QLoRA-tune an adapter on a task-decomposition dataset with TRL's SFTTrainer.",
        base=recipe,
    )
    from .train import train

    train(cfg, Reporter(quiet=cfg.quiet))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
