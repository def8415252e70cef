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

from .train_config import TrainConfig

__all__ = ["main", "recipe_names", "load_recipe", "default_recipe", "quiet_libraries"]

PROG = "train-adapter"


def recipe_names() -> list[str]:
    return sorted(
        p.name[: -len(".yaml")]
        for p in resources.files("taskdecomp.recipes").iterdir()
        if p.name.endswith(".yaml") and not p.name.startswith(("accelerate_", "quotas."))  # not recipes
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


def quiet_libraries(quiet: bool) -> None:
    """The libraries' own output, which would break "one line on error" and `--quiet`.

    datasets' progress bars are always off (the reporter says what was loaded); FutureWarnings
    are addressed to this toolkit's developers, not its users. `--quiet` also silences
    transformers/huggingface_hub logging and bars (the Trainer's metric dicts: see train.py).
    """
    import warnings

    import datasets

    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning)
    if quiet:
        import logging

        import transformers
        from huggingface_hub.utils import disable_progress_bars

        datasets.logging.set_verbosity_error()
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        disable_progress_bars()
        # e.g. "Failed to load CPU gemm_4bit_forward from kernels-community": a path we switch off
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


@entrypoint(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", default=None)
    pre.add_argument("-h", "--help", action="store_true")
    known, _ = pre.parse_known_args(argv)
    # choosing the default recipe asks torch for a GPU (~1.5 s to import): --help shows the CPU
    # recipe's defaults instead, and says so in the --recipe help
    recipe = load_recipe(known.recipe or ("smollm2-135m-cpu" if known.help else default_recipe()))
    cfg = parse_config(
        TrainConfig,
        argv,
        prog=PROG,
        description="QLoRA-tune an adapter on a task-decomposition dataset with TRL's SFTTrainer.",
        base=recipe,
    )
    quiet_libraries(cfg.quiet)
    from .train import train

    train(cfg, Reporter(quiet=cfg.quiet))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(None))
