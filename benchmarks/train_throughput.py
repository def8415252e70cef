"""Training throughput of the CPU recipe vs a plain SFTTrainer baseline, as ratios.

    python benchmarks/train_throughput.py [--steps 3] [--rows 48] [--recipe smollm2-135m-cpu]

Both runs use the same base model (SmolLM2-135M GGUF via the toolkit loader, 4-bit NF4 on the
CPU), the same offline-generated rows in the same prompt format, and the same number of optimizer
steps and examples per step. They differ in what the recipe changes:

- ours: the recipe's SFTConfig/LoraConfig (best-fit-decreasing packing = padding-free batches,
  LoRA on the upper layers only, fp32 compute);
- baseline: `SFTTrainer` defaults (padded batches of the same number of examples, LoRA
  `all-linear` on every layer).

Each variant runs in its own subprocess so peak RSS (ru_maxrss) is its own. Printed: real
(non-padding) tokens/s, padding fraction of the batches, peak RSS, and ours/baseline ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_dataset(out: Path, n: int) -> Path:
    from taskdecomp.dataset_builder.offline import generate_rows
    from taskdecomp.dataset_builder.output import write_splits
    from taskdecomp.schema import make_row
    from taskdecomp.taxonomy import CELLS

    rows = [make_row(c, "offline") for i, cell in enumerate(CELLS) for c in generate_rows(cell, 1, i)][:n]
    write_splits({"train": rows}, out)
    return out


class CountingCollator:
    """Wraps the trainer's collator: counts real and padding tokens of every batch."""

    def __init__(self, inner):
        self.inner, self.real, self.total = inner, 0, 0

    def __call__(self, examples):
        batch = self.inner(examples)
        ids = batch["input_ids"]
        self.total += ids.numel()
        mask = batch.get("attention_mask")
        self.real += int(mask.sum()) if mask is not None else ids.numel()  # padding-free: no padding
        return batch


def run_variant(
    variant: str, dataset: Path, steps: int, recipe: str, out: Path, base_model: str | None
) -> dict:
    import torch
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from taskdecomp.config import parse_config
    from taskdecomp.models import keep_reference_cpu_kernels, load_base_model
    from taskdecomp.trainer.cli import load_recipe
    from taskdecomp.trainer.data import load_splits
    from taskdecomp.trainer.train import lora_config, sft_config
    from taskdecomp.trainer.train_config import TrainConfig

    flags = ["--max-steps", str(steps)] + (["--base-model", base_model] if base_model else [])
    cfg = parse_config(TrainConfig, flags, prog="bench", base=load_recipe(recipe))
    cuda = cfg.device == "cuda" and torch.cuda.is_available()
    train_ds, _ = load_splits(str(dataset))
    model, tok = load_base_model(cfg.base_model, quantize_4bit=cfg.quantize_4bit, dtype=cfg.dtype)
    keep_reference_cpu_kernels(model)
    model.config.use_cache = False
    if variant == "ours":
        args = sft_config(cfg, out, has_eval=False)
        peft = lora_config(cfg, model)
    else:
        # plain usage: defaults, padded batches of as many examples as ours packs per step (~3)
        args = SFTConfig(
            output_dir=str(out),
            max_steps=steps,
            per_device_train_batch_size=3,
            learning_rate=cfg.learning_rate,
            use_cpu=not cuda,
            bf16=cuda,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
        )
        peft = LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    args.save_strategy = "no"
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=train_ds, processing_class=tok, peft_config=peft
    )
    counter = CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {
        "variant": variant,
        "steps": steps,
        "seconds": seconds,
        "s_per_step": seconds / steps,
        "real_tokens": counter.real,
        "tokens_per_s": counter.real / seconds,
        "padding_fraction": 1 - counter.real / max(counter.total, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_vram_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--recipe", default="smollm2-135m-cpu")
    parser.add_argument("--base-model", help="override the recipe's base model (e.g. a local folder)")
    parser.add_argument("--variant", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # child process: one variant, JSON on the last stdout line
        with tempfile.TemporaryDirectory() as tmp:
            result = run_variant(
                args.variant, Path(args.dataset), args.steps, args.recipe, Path(tmp), args.base_model
            )
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        dataset = make_dataset(Path(tmp) / "ds", args.rows)
        results = {}
        for variant in ("baseline", "ours"):
            cmd = [sys.executable, __file__, "--variant", variant, "--dataset", str(dataset)]
            cmd += ["--steps", str(args.steps), "--recipe", args.recipe]
            cmd += ["--base-model", args.base_model] if args.base_model else []
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
            results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    ours, base = results["ours"], results["baseline"]
    print(f"{'':10} {'tokens/s':>9} {'s/step':>7} {'padding':>8} {'peak RSS':>9} {'peak VRAM':>10}")
    for name, r in (("baseline", base), ("ours", ours)):
        print(
            f"{name:10} {r['tokens_per_s']:9.1f} {r['s_per_step']:7.2f} "
            f"{r['padding_fraction']:8.1%} {r['peak_rss_mb']:7.0f}MB {r['peak_vram_mb']:8.0f}MB"
        )
    print(
        f"ratios (ours/baseline): tokens/s x{ours['tokens_per_s'] / base['tokens_per_s']:.2f}, "
        f"padding {ours['padding_fraction']:.1%} vs {base['padding_fraction']:.1%}, "
        f"peak RSS x{ours['peak_rss_mb'] / base['peak_rss_mb']:.2f}"
        + (f", peak VRAM x{ours['peak_vram_mb'] / base['peak_vram_mb']:.2f}" if base["peak_vram_mb"] else "")
    )


if __name__ == "__main__":
    main()
