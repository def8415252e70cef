"""`TrainConfig`: the one config of `train-adapter` (recipe YAML < --config YAML < flags).

A recipe (`recipes/<name>.yaml`) is just a set of values for these fields. The effective config
is saved next to the adapter as `train_config.yaml`; its fingerprint (the fields that change what
is trained) tells a resumable run from a different one in the same output folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from taskdecomp.errors import ConfigError

__all__ = ["TrainConfig", "fingerprint", "RUN_ONLY_FIELDS", "LOG_FILE", "CONFIG_FILE", "PUSH_FILES"]

# Fields that say where/how a run is driven, not what it trains: excluded from the fingerprint.
RUN_ONLY_FIELDS = frozenset({"output_dir", "resume", "overwrite", "push", "repo_id", "private", "quiet"})


@dataclass
class TrainConfig:
    # what to train on / from
    dataset: str = field(default="", metadata={"help": "built dataset folder or Hub dataset repo id"})
    recipe: str = field(
        default="",
        metadata={
            "help": "recipe name or YAML file (read before other options; default: mistral-7b-qlora on a GPU, else smollm2-135m-cpu)"
        },
    )
    output_dir: str = field(default="", metadata={"help": "output folder (default: adapters/<recipe>)"})
    base_model: str = field(
        default="smollm2-135m-gguf", metadata={"help": "Hub id, local folder, or smollm2-135m-gguf"}
    )
    device: Literal["auto", "cpu", "cuda"] = field(
        default="auto", metadata={"help": "cuda: the recipe needs a GPU; cpu: never use one"}
    )
    quantize_4bit: bool = field(default=True, metadata={"help": "QLoRA: load the base in 4-bit NF4"})
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(
        default="auto", metadata={"help": "compute dtype (auto: bf16 on GPU, fp32 on CPU)"}
    )
    # LoRA
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"], metadata={"help": "modules to adapt ('all-linear' or names)"}
    )
    lora_last_layers: int = field(
        default=0, metadata={"help": "adapt only the last N decoder layers (0 = all); cheaper backward"}
    )
    # optimisation
    max_steps: int = field(default=200, metadata={"help": "optimizer steps"})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "sequences (packed rows) per step"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per step"})
    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "transformers scheduler name"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
    optim: str = field(default="adamw_torch", metadata={"help": "optimizer (e.g. paged_adamw_8bit on GPU)"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for memory"})
    # batches
    max_length: int = field(default=512, metadata={"help": "tokens per (packed) sequence"})
    packing: bool = field(default=True, metadata={"help": "pack examples into max_length rows"})
    packing_strategy: Literal["bfd", "bfd_split", "wrapped"] = field(
        default="bfd", metadata={"help": "TRL packing strategy (bfd: padding-free, never cuts an example)"}
    )
    padding_free: bool = field(default=False, metadata={"help": "flatten batches without padding"})
    max_train_rows: int = field(default=0, metadata={"help": "use at most N train rows (0 = all)"})
    max_eval_rows: int = field(default=64, metadata={"help": "evaluate on at most N test rows (0 = all)"})
    # logging / checkpoints
    logging_steps: int = field(default=5, metadata={"help": "log every N steps"})
    eval_steps: int = field(default=50, metadata={"help": "evaluate every N steps (0 = only at the end)"})
    save_steps: int = field(default=50, metadata={"help": "checkpoint every N steps"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints to keep"})
    seed: int = field(default=42, metadata={"help": "random seed"})
    # run control
    resume: bool = field(default=False, metadata={"help": "continue from the last checkpoint in output-dir"})
    overwrite: bool = field(default=False, metadata={"help": "replace a different run in output-dir"})
    push: bool = field(default=False, metadata={"help": "push card + adapter to the Hub (needs --repo-id)"})
    repo_id: str = field(default="", metadata={"help": "USER/NAME of the model repo for --push"})
    private: bool = field(default=False, metadata={"help": "create the Hub repo as private"})
    license: str = field(default="apache-2.0", metadata={"help": "license in the model card"})
    quiet: bool = field(default=False, metadata={"help": "print only errors and warnings"})

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """A saved `train_config.yaml` back as a `TrainConfig`: the same coercion and checks as
        `--config FILE` (`ConfigError` naming the file on bad YAML, unknown keys, bad values)."""
        from taskdecomp.config import parse_config

        return parse_config(cls, ["--config", str(path)], prog="train-adapter")

    def __post_init__(self) -> None:
        positive: tuple[str, ...] = ("lora_r", "lora_alpha", "max_steps", "per_device_train_batch_size")
        positive += ("gradient_accumulation_steps", "max_length", "logging_steps", "save_steps")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_steps", "lora_last_layers", "max_train_rows", "max_eval_rows"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora-dropout must be in [0, 1), got {self.lora_dropout}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning-rate must be > 0, got {self.learning_rate}")
        if not self.target_modules:
            raise ConfigError("target-modules must name at least one module (or all-linear)")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite exclude each other: pick one")
        if self.push and not self.repo_id:
            raise ConfigError("--push needs --repo-id USER/NAME")


def fingerprint(values: dict[str, Any]) -> str:
    """Hash of the fields that define what is trained (not where it is written or pushed)."""
    kept = {k: v for k, v in sorted(values.items()) if k not in RUN_ONLY_FIELDS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


LOG_FILE = "train_log.jsonl"
CONFIG_FILE = "train_config.yaml"
# What a finished run leaves in output_dir (and what --push uploads, when present).
PUSH_FILES = (
    "README.md",
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    CONFIG_FILE,
    LOG_FILE,
    "loss.png",
)
