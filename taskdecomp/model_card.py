"""The adapter's model card, rendered from what a train-adapter run left in its folder.

`write_model_card(output_dir, eval_results)` re-renders README.md from `train_config.yaml` and
`train_log.jsonl` (so evaluate-adapter can add its scores later) through `model_card.md.j2` and
`huggingface_hub.ModelCard`; eval results go into the Markdown table and the `model-index`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskdecomp.errors import InputError
from taskdecomp.files import atomic_write_text
from taskdecomp.mermaid import escape_markdown, mermaid_block
from taskdecomp.models import ALIASES, hub_id_for, read_train_config

if TYPE_CHECKING:
    from taskdecomp.plan import Plan

__all__ = ["write_model_card", "read_log", "dataset_repo_id", "TEMPLATE"]

TEMPLATE = Path(__file__).with_name("model_card.md.j2")
HYPERPARAMETERS = (
    "base_model", "quantize_4bit", "dtype", "lora_r", "lora_alpha", "lora_dropout", "target_modules",
    "lora_last_layers", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
    "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "optim", "gradient_checkpointing",
    "max_length", "packing", "packing_strategy", "padding_free", "seed",
)  # fmt: skip


def looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or spec.count("/") != 1 or Path(spec).suffix != ""


def dataset_repo_id(spec: str) -> str | None:
    """The Hub repo id when the dataset came from the Hub (for the card's `datasets:`)."""
    return None if Path(spec).expanduser().exists() or looks_like_path(spec) else spec


def read_log(output_dir: Path) -> list[dict[str, Any]]:
    path = Path(output_dir) / "train_log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _eval_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    base, adapter = results.get("base") or {}, results.get("adapter") or {}
    heuristic = results.get("heuristic") or {}
    return [(m, _fmt(base.get(m, "—")), _fmt(adapter[m]), _fmt(heuristic.get(m, "—"))) for m in adapter]


def _example_plans(examples: Sequence[Plan]) -> list[dict[str, str]]:
    return [
        {
            "instruction": escape_markdown(p.instruction),
            "structure": p.structure,
            "modalities": ", ".join(sorted({s.modality for s in p.steps})),
            "mermaid": mermaid_block(p.to_mermaid()),
        }
        for p in examples
    ]


def write_model_card(
    output_dir: Path,
    eval_results: dict[str, Any] | None = None,
    *,
    dataset_repo: str | None = None,
    examples: Sequence[Plan] | None = None,
) -> Path:
    """Render README.md for a train-adapter output folder; returns its path.

    `eval_results`: {"base": {metric: value}, "adapter": {metric: value}, "dataset": repo id or
    name, "split": "test"} — the adapter's metrics also go into the card's `model-index`.
    `examples`: valid plans the adapter wrote (evaluate-adapter passes a few of different
    structures), drawn in the card as Mermaid graphs.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    out = Path(output_dir)
    cfg = read_train_config(out)
    if cfg is None:
        raise InputError(f"{out} has no train_config.yaml; pass a train-adapter output folder")
    log = read_log(out)
    # a local folder links its Hub repo when it has been published (the caller asks the Hub layer)
    dataset_repo = dataset_repo or dataset_repo_id(str(cfg.get("dataset", "")))
    base_hub = hub_id_for(str(cfg.get("base_model", "")))
    model_name = cfg.get("repo_id") or out.name
    eval_results = eval_results or {}
    eval_dataset = eval_results.get("dataset") or dataset_repo or "task-decomposition"
    model_index = [
        EvalResult(
            task_type="text-generation",
            dataset_type=str(eval_dataset),
            dataset_name=str(eval_dataset),
            dataset_split=eval_results.get("split", "test"),
            metric_type=metric,
            metric_name=metric,
            metric_value=float(value),
        )
        for metric, value in (eval_results.get("adapter") or {}).items()
        if isinstance(value, int | float)
    ]
    data = ModelCardData(
        base_model=base_hub,
        library_name="peft",
        pipeline_tag="text-generation",
        license=cfg.get("license", "apache-2.0"),
        datasets=[dataset_repo] if dataset_repo else None,
        tags=["peft", "lora", "qlora", "trl", "sft", "task-decomposition", "taskdecomp"],
        model_name=str(model_name),
        eval_results=model_index or None,
    )
    train_losses = [r["loss"] for r in log if "loss" in r]
    eval_losses = [r["eval_loss"] for r in log if "eval_loss" in r]
    summary: dict[str, Any] = next((r for r in reversed(log) if "train_runtime" in r), {})
    first_n = next((r for r in log if "n_train" in r), {})
    card = ModelCard.from_template(
        data,
        template_path=str(TEMPLATE),
        cfg=cfg,
        model_name=model_name,
        base_hub_id=base_hub,
        base_is_alias=cfg.get("base_model") in ALIASES,
        dataset_repo=dataset_repo,
        adapter_ref=cfg.get("repo_id") or str(out),
        n_train=first_n.get("n_train", "?"),
        n_eval=first_n.get("n_eval", 0),
        hyperparameters=[(k, _fmt(cfg[k])) for k in HYPERPARAMETERS if k in cfg],
        final_train_loss=train_losses[-1] if train_losses else None,
        final_eval_loss=eval_losses[-1] if eval_losses else None,
        steps=max((r["step"] for r in log), default=0),
        runtime=f"{summary['train_runtime']:.0f} s" if "train_runtime" in summary else "runtime not logged",
        eval_rows=_eval_rows(eval_results),
        eval_dataset=eval_dataset,
        eval_split=eval_results.get("split", "test"),
        eval_constrained=eval_results.get("constrained", False),
        eval_tools=eval_results.get("tools"),
        example_plans=_example_plans(examples or ()),
    )
    path = out / "README.md"
    atomic_write_text(path, str(card))
    return path
