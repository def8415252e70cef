"""`evaluate-adapter`: the same prompts through the base model and base + adapter, scored.

One model is loaded: the PEFT model, whose `disable_adapter()` context gives the base model's
outputs, so both columns see identical weights, prompts (`taskdecomp.promptfmt.render_prompt`,
the training format) and greedy decoding settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskdecomp.errors import ConfigError, InputError
from taskdecomp.files import atomic_write_json, atomic_write_text
from taskdecomp.reporter import Reporter

__all__ = [
    "EvalConfig",
    "METRIC_ORDER",
    "load_eval_rows",
    "check_base",
    "load_model",
    "evaluate_adapter",
    "results_table",
]

# Display order (and the keys every result column carries).
METRIC_ORDER = (
    "format_validity",
    "plan_validity",
    "step_count_exact",
    "step_count_mae",
    "rouge1",
    "rouge2",
    "rougeL",
    "modality_f1",
    "step_precision",
    "step_recall",
    "step_f1",
)
LOWER_IS_BETTER = {"step_count_mae"}


@dataclass
class EvalConfig:
    adapter: str = field(metadata={"help": "train-adapter output folder or Hub repo id"})
    dataset: str = field(
        metadata={"help": "built dataset folder, a .jsonl/.json/.parquet file, or a Hub dataset id"}
    )
    split: str = field(default="test", metadata={"help": "split to evaluate on"})
    limit: int | None = field(default=None, metadata={"help": "evaluate only the first N rows"})
    output: Path | None = field(
        default=None,
        metadata={"help": "results JSON (default: ADAPTER/eval_results.json, or ./eval_results.json)"},
    )
    base: str | None = field(
        default=None, metadata={"help": "expected base model; refuse an adapter trained on another one"}
    )
    max_new_tokens: int = field(default=256, metadata={"help": "generation bound per answer"})
    batch_size: int = field(default=8, metadata={"help": "prompts per generation batch"})
    quantize_4bit: bool | None = field(
        default=None, metadata={"help": "load the base in 4-bit (default: as the adapter was trained)"}
    )
    update_card: bool = field(
        default=False, metadata={"help": "write the results into the adapter's model card"}
    )
    push: bool = field(default=False, metadata={"help": "commit the card and results JSON to the Hub"})
    repo_id: str | None = field(
        default=None, metadata={"help": "Hub repo for --push (default: --adapter when it is a repo id)"}
    )
    quiet: bool = field(default=False, metadata={"help": "print only the results table and warnings"})

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(
                f"--limit must be at least 1, got {self.limit}; leave it out to use the whole split"
            )
        if self.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not self.adapter.strip():
            raise ConfigError("--adapter is empty; pass a train-adapter output folder or a Hub repo id")
        if self.push:
            self.update_card = True  # what we push is the updated card
            if not self.repo_id and not _looks_like_repo(self.adapter):
                raise ConfigError("--push needs --repo-id USER/NAME when --adapter is a local folder")


def _looks_like_repo(name: str) -> bool:
    """`USER/NAME` that is not a local path: a Hub repo id (the Hub itself says whether it exists)."""
    return not Path(name).exists() and name.count("/") == 1 and not name.startswith((".", "/"))


# --- data -----------------------------------------------------------------------------------


def load_eval_rows(dataset: str, split: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows with `instruction` and the reference `output` from a built folder, a file, or a Hub id."""
    import datasets

    p = Path(dataset)
    try:
        if p.is_dir():
            files = sorted(str(f) for f in (p / "data").glob(f"{split}-*.parquet"))
            if not files:
                have = sorted({f.name.split("-")[0] for f in (p / "data").glob("*.parquet")})
                raise InputError(
                    f"{p} has no '{split}' split (found: {', '.join(have) or 'no data/*.parquet shards'}); "
                    "pass --split or a folder written by build-dataset"
                )
            ds = datasets.Dataset.from_parquet(files)
        elif p.is_file():
            kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(p.suffix)
            if kind is None:
                raise InputError(f"{p}: unsupported file type; use .jsonl, .json or .parquet")
            ds = datasets.load_dataset(kind, data_files=str(p), split="train")
        elif _looks_like_repo(dataset):
            ds = datasets.load_dataset(dataset, split=split)
        else:
            raise InputError(f"dataset {dataset} not found; pass a build-dataset folder, a file or a Hub id")
    except InputError:
        raise
    except (OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise InputError(f"cannot read dataset {dataset}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in ("instruction", "output") if c not in ds.column_names]
    if missing:
        raise InputError(
            f"dataset {dataset} has no {' or '.join(repr(c) for c in missing)} column "
            f"(columns: {', '.join(ds.column_names)}); evaluation needs the instruction and a reference 'output'"
        )
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    rows = ds.to_list()
    if not rows:
        raise InputError(f"dataset {dataset} split '{split}' is empty")
    return rows


# --- model ----------------------------------------------------------------------------------


def _require_base(adapter: str, trained_on: str, expected: str | None) -> str:
    """`trained_on`, or `InputError` when `expected` (an alias or Hub id) names another base."""
    from taskdecomp.trainer.models import hub_id_for

    if expected and trained_on and hub_id_for(expected) != trained_on:
        raise InputError(
            f"adapter {adapter} was trained on {trained_on}, not on {hub_id_for(expected)}; "
            "pass the matching --base or another adapter"
        )
    return trained_on


def check_base(model: Any, expected: str | None, adapter: str) -> str:
    """The adapter's base model id; `InputError` when `expected` names another one."""
    trained_on = str(model.peft_config["default"].base_model_name_or_path or "")
    return _require_base(adapter, trained_on, expected)


def _check_adapter_exists(adapter: str) -> None:
    p = Path(adapter)
    if _looks_like_repo(adapter):
        return  # a Hub id: load_adapter says whether it exists
    if not p.is_dir():
        raise InputError(f"adapter {adapter} not found; pass a train-adapter output folder or a Hub repo id")
    if not (p / "adapter_config.json").is_file():
        raise InputError(f"{adapter} has no adapter_config.json; pass the output folder of train-adapter")


def _precheck_local_base(adapter: str, expected: str | None) -> None:
    """Refuse a mismatched local adapter before spending time loading its base model."""
    config = Path(adapter) / "adapter_config.json"
    if expected and config.is_file():
        trained_on = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path") or ""
        _require_base(adapter, trained_on, expected)


def load_model(
    adapter: str, *, base: str | None = None, quantize_4bit: bool | None = None
) -> tuple[Any, Any]:
    from taskdecomp.trainer.models import load_adapter

    _precheck_local_base(adapter, base)
    try:
        model, tokenizer = load_adapter(adapter, quantize_4bit=quantize_4bit)
    except RuntimeError as exc:  # PEFT: "size mismatch for ... lora_A ..." on another architecture
        if "size mismatch" in str(exc):
            raise InputError(
                f"adapter {adapter} does not fit its base model (weight shapes differ): it was made for another base"
            ) from None
        raise
    check_base(model, base, adapter)
    return model, tokenizer


# --- evaluation -----------------------------------------------------------------------------


def results_table(results: dict[str, Any]) -> str:
    """Markdown table base vs adapter (readable on a terminal too)."""
    base, adapter = results["base"], results["adapter"]
    lines = ["| metric | base | adapter | change |", "|---|---:|---:|---:|"]
    for key in METRIC_ORDER:
        if key not in base:
            continue
        delta = adapter[key] - base[key]
        better = delta < 0 if key in LOWER_IS_BETTER else delta > 0
        mark = " ▲" if better else (" ▼" if delta else "")
        lines.append(f"| {key} | {base[key]:.3f} | {adapter[key]:.3f} | {delta:+.3f}{mark} |")
    return "\n".join(lines)


def evaluate_adapter(cfg: EvalConfig, reporter: Reporter | None = None) -> dict[str, Any]:
    """Generate for base and adapter, score both; write the JSON (and card / push if asked)."""
    from taskdecomp.evaluation import load_metric
    from taskdecomp.evaluation.generate import generate_batched
    from taskdecomp.promptfmt import render_prompt

    reporter = reporter or Reporter.silent()
    token = None
    if cfg.push:  # before the slow part: a missing token fails now, not after generating
        from taskdecomp.hub import resolve_token

        token = resolve_token()
    _check_adapter_exists(cfg.adapter)
    rows = load_eval_rows(cfg.dataset, cfg.split, cfg.limit)
    reporter.info(f"evaluating on {len(rows)} rows of {cfg.dataset} [{cfg.split}]")
    model, tokenizer = load_model(cfg.adapter, base=cfg.base, quantize_4bit=cfg.quantize_4bit)
    base_id = check_base(model, None, cfg.adapter)
    prompts = [render_prompt(tokenizer, r["instruction"], r.get("input") or "") for r in rows]
    references = [r["output"] for r in rows]
    gen = {"max_new_tokens": cfg.max_new_tokens, "batch_size": cfg.batch_size, "reporter": reporter}
    with model.disable_adapter():
        base_out = generate_batched(model, tokenizer, prompts, desc="base", **gen)
    adapter_out = generate_batched(model, tokenizer, prompts, desc="adapter", **gen)

    metric = load_metric()
    results: dict[str, Any] = {
        "base": metric.compute(predictions=base_out, references=references),
        "adapter": metric.compute(predictions=adapter_out, references=references),
        "dataset": cfg.dataset,
        "split": cfg.split,
        "n": len(rows),
        "adapter_id": cfg.repo_id or cfg.adapter,
        "base_model": base_id,
        "max_new_tokens": cfg.max_new_tokens,
    }
    output = cfg.output or (
        Path(cfg.adapter) / "eval_results.json" if Path(cfg.adapter).is_dir() else Path("eval_results.json")
    )
    atomic_write_json(output, results)
    # The texts themselves, for reading next to the numbers.
    samples = output.with_name(output.stem + ".predictions.jsonl")
    atomic_write_text(
        samples,
        "".join(
            json.dumps(
                {"instruction": r["instruction"], "reference": r["output"], "base": b, "adapter": a},
                ensure_ascii=False,
            )
            + "\n"
            for r, b, a in zip(rows, base_out, adapter_out, strict=True)
        ),
    )
    reporter.result(results_table(results))
    reporter.info(f"results: {output}; predictions: {samples}")
    if cfg.update_card:
        _update_card(cfg, results, output, reporter, token)
    return results


def _update_card(
    cfg: EvalConfig, results: dict[str, Any], output: Path, reporter: Reporter, token: str | None
) -> None:
    from taskdecomp.trainer.card import write_model_card

    folder = Path(cfg.adapter)
    if not folder.is_dir():
        # A Hub adapter: render the card in a local copy of the repo, then push that.
        import tempfile

        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(cfg.adapter, local_dir=tempfile.mkdtemp(prefix="taskdecomp-card-")))
    card_path = write_model_card(folder, eval_results=results)
    reporter.info(f"model card updated: {card_path}")
    if cfg.push and token:
        from taskdecomp.hub import push_files

        repo_id = cfg.repo_id or cfg.adapter
        url = push_files(
            repo_id,
            {"README.md": card_path, "eval_results.json": output},
            repo_type="model",
            token=token,
            commit_message=f"Evaluation on {cfg.dataset} [{cfg.split}], {results['n']} rows",
            reporter=reporter,
        )
        reporter.info(f"pushed: {url}")
