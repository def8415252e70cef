"""`train(cfg)`: QLoRA supervised fine-tuning with TRL's SFTTrainer, resumable, with a card.

Data flow: check the output folder and the Hub settings (fail before any slow work) → load the
splits as prompt-completion examples → load the (4-bit) base model → SFTTrainer with a PEFT
LoraConfig → checkpoints every `save_steps` → adapter + tokenizer + effective config + JSONL log
+ loss plot + model card in `output_dir` → optionally one Hub commit.

Everything TRL/PEFT/transformers do is left to them: chat template, completion-only labels,
EOS, packing, padding-free batches, checkpoint/resume, schedulers, DDP under `accelerate launch`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from taskdecomp.config import to_dict
from taskdecomp.errors import ConfigError
from taskdecomp.files import atomic_write_json, atomic_write_text
from taskdecomp.models import keep_reference_cpu_kernels, load_base_model
from taskdecomp.reporter import Reporter

from .train_config import CONFIG_FILE, LOG_FILE, RUN_ONLY_FIELDS, TrainConfig, fingerprint

__all__ = ["train", "check_run", "sft_config", "lora_config"]

# --- before anything slow ------------------------------------------------------------------


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _output_dir(cfg: TrainConfig) -> Path:
    name = Path(cfg.recipe).stem if cfg.recipe else cfg.base_model.replace("/", "--")
    return Path(cfg.output_dir or f"adapters/{name}")


def has_finished_step(out: Path) -> bool:
    """Whether `out` holds something a run produced that is worth keeping: a checkpoint or an adapter."""
    if (out / "adapter_model.safetensors").is_file():
        return True
    return any(p.is_dir() and p.name.startswith("checkpoint-") for p in out.iterdir())


def _replaceable(cfg: TrainConfig, out: Path) -> bool:
    """A train-adapter folder the new run starts over in (--overwrite, or no finished step)."""
    if not (out / CONFIG_FILE).is_file():
        return False
    return cfg.overwrite or not has_finished_step(out)


def check_run(cfg: TrainConfig) -> str | None:
    """Validate device and output folder; returns the checkpoint to resume from (or None).

    Refuses a folder holding a different run (or anything that is not a train-adapter output)
    unless --overwrite; --resume continues the same run from its last checkpoint.
    """
    if cfg.device == "cuda" and not _cuda():
        cpu = "smollm2-135m-cpu"
        advice = (
            "drop --device cuda (or pass --device auto) to train on the CPU"
            if cfg.recipe == cpu
            else f"on this machine use --recipe {cpu}"
        )
        raise ConfigError(
            f"recipe '{cfg.recipe or cfg.base_model}' is set to --device cuda and no CUDA GPU is visible; {advice}"
        )
    out = _output_dir(cfg)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output dir {out} is a file; pass another --output-dir")
    saved_path = out / CONFIG_FILE
    if not out.exists() or not any(out.iterdir()):
        if cfg.resume:
            raise ConfigError(f"--resume: {out} holds no run to resume; drop --resume to start one")
        return None
    if cfg.overwrite:
        if not saved_path.is_file():
            raise ConfigError(f"{out} is not a train-adapter output folder; --overwrite only replaces those")
        return None  # removed by train() once the dataset has loaded
    if not saved_path.is_file():
        raise ConfigError(
            f"output dir {out} is not empty and holds no train-adapter run; pass another --output-dir"
        )
    if not has_finished_step(out):
        # A run that died before its first checkpoint (e.g. on bad data inside TRL) left only its
        # config and log: nothing to resume or protect, so the corrected re-run takes it over.
        return None  # cleared by train() once the dataset has loaded
    saved = to_dict(TrainConfig.from_yaml(saved_path))
    mine = to_dict(cfg)
    if fingerprint(saved) != fingerprint(mine):
        # name only what the fingerprint compares (not e.g. output_dir or quiet)
        diff = sorted(
            k for k in set(mine) | set(saved) if k not in RUN_ONLY_FIELDS and saved.get(k) != mine.get(k)
        )
        raise ConfigError(
            f"output dir {out} holds a different run (differs in: {', '.join(diff[:5])}); "
            "pass --overwrite to replace it or another --output-dir"
        )
    if not cfg.resume:
        raise ConfigError(
            f"output dir {out} already holds this run; pass --resume to continue it or --overwrite"
        )
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(out))


def _check_push(cfg: TrainConfig) -> str | None:
    if not cfg.push:
        return None
    from taskdecomp.hub import check_write_access, resolve_token, validate_repo_id

    validate_repo_id(cfg.repo_id)
    token = resolve_token()  # AuthError (exit 2) before any training
    check_write_access(cfg.repo_id, token)
    return token


def _linear_names(model: Any) -> list[str]:
    """Leaf names of the linear layers inside the decoder blocks (what 'all-linear' means)."""
    import torch

    names = set()
    for name, module in model.named_modules():
        if ".layers." in name and isinstance(module, torch.nn.Linear):  # bnb Linear4bit is one too
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def lora_config(cfg: TrainConfig, model: Any) -> Any:
    from peft import LoraConfig

    n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    targets: Any = "all-linear" if cfg.target_modules == ["all-linear"] else list(cfg.target_modules)
    layers = None
    if cfg.lora_last_layers and cfg.lora_last_layers < n_layers:
        layers = list(range(n_layers - cfg.lora_last_layers, n_layers))
        if targets == "all-linear":  # PEFT takes a layer subset only with explicit module names
            targets = _linear_names(model)
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        layers_to_transform=layers,
        layers_pattern="layers" if layers else None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def _checkpointing_args(config_cls: Any, enabled: bool) -> dict[str, Any]:
    """transformers >= 5.2x renamed gradient_checkpointing to activation_checkpointing (the old
    name warns); older releases only know the old name."""
    kwargs = {"use_reentrant": False} if enabled else None
    names = {f.name for f in dataclasses.fields(config_cls)}
    if "activation_checkpointing" in names:
        # TRL's default gradient_checkpointing=True would otherwise warn and override
        return {
            "gradient_checkpointing": None,
            "activation_checkpointing": enabled,
            "activation_checkpointing_kwargs": kwargs,
        }
    return {"gradient_checkpointing": enabled, "gradient_checkpointing_kwargs": kwargs}


def sft_config(cfg: TrainConfig, out: Path, *, has_eval: bool) -> Any:
    import torch
    from trl import SFTConfig

    from taskdecomp.models import _torch_dtype

    compute = _torch_dtype(cfg.dtype)
    evaluate_steps = has_eval and cfg.eval_steps > 0
    return SFTConfig(
        output_dir=str(out),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim=cfg.optim,
        **_checkpointing_args(SFTConfig, cfg.gradient_checkpointing),
        # Prompt-completion data: loss on the completion only (its end-of-turn/EOS token included).
        completion_only_loss=True,
        max_length=cfg.max_length,
        packing=cfg.packing,
        packing_strategy=cfg.packing_strategy,
        padding_free=cfg.padding_free,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if evaluate_steps else "no",
        eval_steps=cfg.eval_steps if evaluate_steps else None,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        seed=cfg.seed,
        bf16=compute == torch.bfloat16,
        fp16=compute == torch.float16,
        use_cpu=cfg.device == "cpu" or not _cuda(),
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
    )


# --- callbacks -----------------------------------------------------------------------------


def _callbacks(out: Path, reporter: Reporter, resume_step: int, max_steps: int) -> list[Any]:
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        """Every log dict (train loss, eval loss, lr, ...) as one JSON line, main process only."""

        def __init__(self) -> None:
            self.progress = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                _truncate_log(out / LOG_FILE, resume_step)
                self.progress = reporter.progress(max_steps, "training", initial=resume_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **logs}
            with (out / LOG_FILE).open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            if self.progress is not None:
                shown = {k: round(v, 4) for k, v in logs.items() if k in ("loss", "eval_loss")}
                self.progress.update(state.global_step - self.progress.n, **shown)

        def on_train_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.close()

    return [JsonlLog()]


def _truncate_log(path: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint we restart from (no duplicates)."""
    if not path.is_file():
        return
    keep = [
        ln
        for ln in path.read_text(encoding="utf-8").splitlines()
        if ln.strip() and json.loads(ln)["step"] <= step
    ]
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


# --- what TRL will train on ----------------------------------------------------------------


def check_learnable(dataset: Any, name: str, n_rows: int, cfg: TrainConfig, reporter: Reporter) -> None:
    """`ConfigError` when a batch row of TRL's prepared `dataset` has no token to learn from.

    Labels are -100 outside the completion. When `max_length` is shorter than a prompt, the
    truncation cuts the whole completion off: unpacked, TRL silently drops the example; packed
    (bfd), the row stays with every label masked, and the run logs loss 0, grad_norm 0 and
    eval_loss 0 while learning nothing. Counted per example (packed rows carry `seq_lengths`).
    """
    if dataset is None:
        return
    hint = f"raise --max-length (now {cfg.max_length}) above the prompt length"
    if len(dataset) == 0:
        raise ConfigError(
            f"max-length {cfg.max_length} leaves no {name} example with a completion token; {hint}"
        )
    columns = dataset.column_names
    labels = dataset["labels"]
    lengths = dataset["seq_lengths"] if "seq_lengths" in columns else [[len(row)] for row in labels]
    empty_rows = cut = examples = 0
    for row, seqs in zip(labels, lengths, strict=True):
        if all(t == -100 for t in row):
            empty_rows += 1
        start = 0
        for n in seqs:
            examples += 1
            cut += all(t == -100 for t in row[start : start + n])
            start += n
    cut += max(0, n_rows - examples)  # unpacked: the examples TRL dropped
    if empty_rows:
        raise ConfigError(
            f"{empty_rows} of {len(dataset)} {name} batch rows have nothing to learn: max-length "
            f"{cfg.max_length} cuts the whole completion off {cut} of {n_rows} {name} examples; {hint}"
        )
    if cut:
        reporter.warn(
            f"max-length {cfg.max_length} cuts the whole completion off {cut} of {n_rows} {name} examples "
            "(they teach nothing); raise --max-length to use them"
        )


# --- the run -------------------------------------------------------------------------------


def _save_config(cfg: TrainConfig, out: Path) -> None:
    values = to_dict(cfg)
    values["output_dir"] = str(out)
    atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(values, sort_keys=False))


def _portable_adapter_config(out: Path, base: str) -> None:
    """adapter_config.json names the Hub model (not the local GGUF conversion cache)."""
    from taskdecomp.models import hub_id_for

    path = out / "adapter_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["base_model_name_or_path"] = hub_id_for(base)
    atomic_write_json(path, data)


def train(cfg: TrainConfig, reporter: Reporter | None = None) -> Path:
    """Train an adapter per `cfg`; returns the output folder."""
    from accelerate import PartialState

    reporter = reporter or Reporter.silent()
    token = _check_push(cfg)
    state = PartialState()
    out = _output_dir(cfg)
    resume_from = None
    if state.is_main_process:
        resume_from = check_run(cfg)

    from .data import load_splits

    # A bad dataset fails here, before the output folder is touched.
    train_ds, eval_ds = load_splits(
        cfg.dataset, max_train_rows=cfg.max_train_rows, max_eval_rows=cfg.max_eval_rows
    )
    reporter.info(
        f"dataset {cfg.dataset}: {len(train_ds)} train / {len(eval_ds) if eval_ds is not None else 0} eval rows"
    )
    if state.is_main_process:
        if out.is_dir() and _replaceable(cfg, out):
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        _save_config(cfg, out)
    state.wait_for_everyone()
    if not state.is_main_process and cfg.resume:
        from transformers.trainer_utils import get_last_checkpoint

        resume_from = get_last_checkpoint(str(out))

    from trl import SFTTrainer

    model, tokenizer = load_base_model(cfg.base_model, quantize_4bit=cfg.quantize_4bit, dtype=cfg.dtype)
    # Once, before any forward: the flag it clears is read per forward, so no eval repacks later.
    keep_reference_cpu_kernels(model)
    model.config.use_cache = False  # a KV cache would also disable packed-sequence masks
    resume_step = int(Path(resume_from).name.rsplit("-", 1)[1]) if resume_from else 0
    trainer = SFTTrainer(
        model=model,
        args=sft_config(cfg, out, has_eval=eval_ds is not None),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=lora_config(cfg, model),
        callbacks=_callbacks(out, reporter, resume_step, cfg.max_steps),
    )
    if cfg.quiet:  # with disable_tqdm, the Trainer prints every log dict to stdout
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    # before the first step: a run that cannot learn would otherwise "train" with loss 0
    check_learnable(trainer.train_dataset, "train", len(train_ds), cfg, reporter)
    check_learnable(trainer.eval_dataset, "eval", len(eval_ds) if eval_ds is not None else 0, cfg, reporter)
    if resume_from:
        reporter.info(f"resuming from {resume_from}")
    elif state.is_main_process:
        sizes = {"step": 0, "n_train": len(train_ds), "n_eval": len(eval_ds) if eval_ds is not None else 0}
        (out / LOG_FILE).write_text(json.dumps(sizes) + "\n", encoding="utf-8")
    trainer.train(resume_from_checkpoint=resume_from)
    # A final eval, unless the loop already did one at its last step (it does with eval_steps:
    # at every multiple of eval_steps, and at the end in recent transformers).
    final = trainer.state.global_step
    if eval_ds is not None and not any(
        "eval_loss" in r and r.get("step") == final for r in trainer.state.log_history
    ):
        trainer.evaluate()
    trainer.save_model(str(out))
    if state.is_main_process:
        _portable_adapter_config(out, cfg.base_model)
        from taskdecomp.model_card import write_model_card

        from .loss_plot import plot_loss

        plot_loss(out)
        from taskdecomp.hub import published_repo_id

        write_model_card(out, dataset_repo=published_repo_id(cfg.dataset))
        reporter.result(f"adapter written to {out}")
        if cfg.push and token:
            from .upload import push_adapter

            url = push_adapter(out, cfg.repo_id, token=token, private=cfg.private, reporter=reporter)
            reporter.result(f"pushed to {url}")
    state.wait_for_everyone()
    return out
