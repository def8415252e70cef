"""QLoRA (4-bit NF4 base) vs plain LoRA (32- or 16-bit base) on the CPU: training tokens/s, as ratios.

    python benchmarks/qlora_vs_lora.py [--steps 6] [--rows 96] [--repeats 2] [--recipe smollm2-135m-cpu]

Every variant is the CPU recipe unchanged (packing, LoRA on the upper layers, same steps and rows)
except how the frozen base is held:

- qlora:     4-bit NF4 through bitsandbytes' CPU backend, fp32 compute (the recipe as shipped);
- lora-fp32: the base in float32, no quantisation;
- lora-bf16: the base in bfloat16, no quantisation (fast only where the CPU has AVX512-BF16/AMX).

The 135M model fits in memory either way, so on a CPU the question is only speed: 4-bit weights
are dequantised on every forward and backward pass. Each run is its own subprocess (its own peak
RSS); variants are interleaved `--repeats` times and the median is printed, so a machine whose load
changes during the run biases no variant. Printed: real tokens/s, s/step, peak RSS, and each
variant's tokens/s ÷ qlora's, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {
    "qlora": ["--quantize-4bit", "--dtype", "float32"],
    "lora-fp32": ["--no-quantize-4bit", "--dtype", "float32"],
    "lora-bf16": ["--no-quantize-4bit", "--dtype", "bfloat16"],
}


def make_dataset(out: Path, n: int) -> Path:
    from taskdecomp.dataset_builder.offline import generate_rows
    from taskdecomp.dataset_builder.output import write_splits
    from taskdecomp.schema import make_row
    from taskdecomp.taxonomy import CELLS

    rows = [make_row(c, "offline") for i, cell in enumerate(CELLS) for c in generate_rows(cell, 3, i)][:n]
    write_splits({"train": rows}, out)
    return out


def run_variant(variant: str, dataset: Path, steps: int, recipe: str, out: Path) -> dict:
    import torch
    from trl import SFTTrainer

    from taskdecomp.config import parse_config
    from taskdecomp.models import keep_reference_cpu_kernels, load_base_model
    from taskdecomp.trainer.cli import load_recipe
    from taskdecomp.trainer.data import load_splits
    from taskdecomp.trainer.train import lora_config, sft_config
    from taskdecomp.trainer.train_config import TrainConfig

    flags = ["--max-steps", str(steps), *VARIANTS[variant]]
    cfg = parse_config(TrainConfig, flags, prog="bench", base=load_recipe(recipe))
    train_ds, _ = load_splits(str(dataset))
    model, tok = load_base_model(cfg.base_model, quantize_4bit=cfg.quantize_4bit, dtype=cfg.dtype)
    keep_reference_cpu_kernels(model)
    model.config.use_cache = False
    args = sft_config(cfg, out, has_eval=False)
    args.save_strategy = "no"
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        processing_class=tok,
        peft_config=lora_config(cfg, model),
    )
    real = 0
    inner = trainer.data_collator

    def counting(examples):  # padding-free packed batches: every token is real
        nonlocal real
        batch = inner(examples)
        mask = batch.get("attention_mask")
        real += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        return batch

    trainer.data_collator = counting
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {
        "variant": variant,
        "seconds": seconds,
        "s_per_step": seconds / steps,
        "tokens_per_s": real / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--recipe", default="smollm2-135m-cpu")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # child process: one variant, JSON on the last stdout line
        with tempfile.TemporaryDirectory() as tmp:
            result = run_variant(args.variant, Path(args.dataset), args.steps, args.recipe, Path(tmp))
        print(json.dumps(result))
        return
    names = [v for v in args.variants.split(",") if v]
    if "qlora" not in names:
        sys.exit("--variants must include qlora (the baseline of the ratios)")
    runs: dict[str, list[dict]] = {v: [] for v in names}
    with tempfile.TemporaryDirectory() as tmp:
        dataset = make_dataset(Path(tmp) / "ds", args.rows)
        for _ in range(args.repeats):
            for variant in names:
                cmd = [sys.executable, __file__, "--variant", variant, "--dataset", str(dataset)]
                cmd += ["--steps", str(args.steps), "--recipe", args.recipe]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
                runs[variant].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    med = {
        v: {k: statistics.median(r[k] for r in rs) for k in ("tokens_per_s", "s_per_step", "peak_rss_mb")}
        for v, rs in runs.items()
    }
    print(
        f"{args.steps} steps x {args.repeats} repeats, {runs['qlora'][0]['threads']} threads (median of repeats)"
    )
    print(f"{'':10} {'tokens/s':>9} {'s/step':>7} {'peak RSS':>9} {'vs qlora':>9}")
    for v in names:
        m = med[v]
        ratio = m["tokens_per_s"] / med["qlora"]["tokens_per_s"]
        print(
            f"{v:10} {m['tokens_per_s']:9.1f} {m['s_per_step']:7.2f} {m['peak_rss_mb']:7.0f}MB {ratio:8.2f}x"
        )


if __name__ == "__main__":
    main()
