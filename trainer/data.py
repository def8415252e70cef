"""Dataset → TRL conversational prompt-completion examples (train + eval splits).

The dataset is a folder written by build-dataset (Parquet shards under data/) or a Hub dataset
repo id; `datasets.load_dataset` reads either. Every row goes through
`taskdecomp.promptfmt.to_prompt_completion`, the one prompt format shared with evaluation and
inference, so TRL applies the model's chat template and computes loss on the completion only.
A row whose subtasks name tools is trained with the tool prompt (the catalogue listed in the
system message; the default catalogue unless `load_splits(catalogue=...)`), exactly what
`decompose --tools` and `evaluate-adapter` decode with.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskdecomp.errors import InputError
from taskdecomp.model_card import looks_like_path
from taskdecomp.promptfmt import to_prompt_completion

if TYPE_CHECKING:
    from taskdecomp.catalogue import Catalogue

__all__ = ["REQUIRED_COLUMNS", "load_splits"]

REQUIRED_COLUMNS = ("instruction", "output")
EVAL_SPLITS = ("test", "validation")


def _load(spec: str) -> Any:
    import datasets

    path = Path(spec).expanduser()
    if not spec:
        raise InputError("no dataset given: pass --dataset PATH (a build-dataset folder) or USER/NAME")
    if not path.exists() and looks_like_path(spec):
        raise InputError(f"dataset {spec} not found: pass a build-dataset output folder or a Hub repo id")
    if path.is_file():
        raise InputError(f"dataset {spec} is a file: pass the build-dataset output folder that holds data/")
    try:
        return datasets.load_dataset(str(path) if path.exists() else spec)
    except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise InputError(f"cannot load dataset {spec}: {str(exc).splitlines()[0]}") from None
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read dataset {spec}: {str(exc).splitlines()[0]}") from None


def _check_values(split: Any, spec: str, name: str) -> None:
    """Every row needs a non-empty string instruction and output (and a string or null input).

    A card whose `dataset_info` declares a column its Parquet lacks loads fine (the column comes
    back all null), and a null or non-string value would only fail inside TRL's chat template,
    after the model has loaded: check here, before anything slow.
    """
    fix = "fix or rebuild the dataset with build-dataset/import-dataset"
    for column in (*REQUIRED_COLUMNS, "input"):
        if column not in split.column_names:
            continue
        values = list(split[column])
        if column in REQUIRED_COLUMNS and values and all(v is None for v in values):
            raise InputError(
                f"dataset {spec}: column '{column}' is null in every {name} row "
                f"(its card declares the column but the Parquet lacks it); {fix}"
            )
        for i, value in enumerate(values):
            if column == "input" and value is None:
                continue
            if not isinstance(value, str):
                what = "a null" if value is None else f"a non-string ({type(value).__name__})"
            elif column != "input" and not value.strip():
                what = "an empty"
            else:
                continue
            raise InputError(f"dataset {spec}: {name} row {i} has {what} '{column}'; {fix}")


def _prepare(split: Any, limit: int, spec: str, name: str, catalogue: Catalogue | None = None) -> Any:
    if limit and len(split) > limit:
        split = split.select(range(limit))
    _check_values(split, spec, name)
    fmt = functools.partial(to_prompt_completion, catalogue=catalogue) if catalogue else to_prompt_completion
    return split.map(fmt, remove_columns=split.column_names)


def load_splits(
    spec: str, *, max_train_rows: int = 0, max_eval_rows: int = 0, catalogue: Catalogue | None = None
) -> tuple[Any, Any | None]:
    """(train, eval or None) as prompt/completion datasets; `InputError` on anything unusable."""
    dd = _load(spec)
    if "train" not in dd:
        raise InputError(f"dataset {spec} has no train split (found: {', '.join(dd) or 'none'})")
    missing = [c for c in REQUIRED_COLUMNS if c not in dd["train"].column_names]
    if missing:
        raise InputError(
            f"dataset {spec} lacks column(s) {', '.join(missing)} "
            f"(has: {', '.join(dd['train'].column_names)}); train on a build-dataset/import-dataset output"
        )
    if len(dd["train"]) == 0:
        raise InputError(f"dataset {spec} has an empty train split")
    train = _prepare(dd["train"], max_train_rows, spec, "train", catalogue)
    name = next((s for s in EVAL_SPLITS if s in dd and len(dd[s])), None)
    evaluation = _prepare(dd[name], max_eval_rows, spec, name, catalogue) if name else None
    return train, evaluation
