"""Grammar-constrained vs free decoding: plan validity and throughput, same prompts, same run.

    .venv/bin/python benchmarks/constrained_decoding.py [--n 40] [--adapter DIR] [--max-new-tokens 256]

Prompts: the first `--n` hand-labelled requests of tests/data/realistic_requests.jsonl (never
produced by the generator), rendered with the training prompt, batched (8, left padding),
greedy. Prints, for the base model (or base + `--adapter`):
- plan validity constrained vs unconstrained (target: constrained 1.0 for a trained adapter;
  what is left for the base model is what only the validator checks: repeated steps, texts);
- tokens/s constrained ÷ unconstrained (target >= 0.85);
- validity with a repetition penalty of 1.2 under the grammar, against 1.0 (is it worth a default?);
- with `--adapter`, the wall time of `decompose --file` over the same requests (the CLI end to
  end, model load included; target <= 5 min for 40 requests on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = ROOT / "tests" / "data" / "realistic_requests.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()

    from taskdecomp.generation import generate_batched
    from taskdecomp.grammar import plan_grammar
    from taskdecomp.models import load_base_model, load_model
    from taskdecomp.plan import answer_errors
    from taskdecomp.promptfmt import render_prompt

    rows = [json.loads(line) for line in REQUESTS.read_text(encoding="utf-8").splitlines()][: args.n]
    if args.adapter:
        model, tok = load_model(args.adapter)
    else:
        model, tok = load_base_model("smollm2-135m-gguf", quantize_4bit=False)
    model.eval()
    prompts = [render_prompt(tok, r["instruction"]) for r in rows]

    def run(grammar: str | None, penalty: float = 1.0) -> tuple[float, float]:
        t0 = time.perf_counter()
        outs = generate_batched(
            model, tok, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
            grammar=grammar, repetition_penalty=penalty,
        )  # fmt: skip
        dt = time.perf_counter() - t0
        tokens = sum(len(tok(o, add_special_tokens=False)["input_ids"]) for o in outs)
        valid = sum(not answer_errors(o, r["instruction"])[1] for o, r in zip(outs, rows, strict=True))
        return valid / len(rows), tokens / dt

    generate_batched(model, tok, prompts[:2], max_new_tokens=8, grammar=plan_grammar())  # warm-up
    free_valid, free_tps = run(None)
    held_valid, held_tps = run(plan_grammar())
    pen_valid, _ = run(plan_grammar(), 1.2)
    who = f"base + {args.adapter}" if args.adapter else "base smollm2-135m"
    print(f"{who}, {len(rows)} hand-labelled requests, max_new_tokens {args.max_new_tokens}")
    print(f"plan validity: constrained {held_valid:.3f} vs unconstrained {free_valid:.3f}")
    print(f"tokens/s: constrained {held_tps:.1f} / unconstrained {free_tps:.1f} = {held_tps / free_tps:.2f}x")
    print(f"plan validity under the grammar: repetition penalty 1.2 {pen_valid:.3f} vs 1.0 {held_valid:.3f}")
    if args.adapter:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("\n".join(r["instruction"] for r in rows) + "\n")
        cli = Path(sys.executable).with_name("decompose")
        t0 = time.perf_counter()
        done = subprocess.run(
            [str(cli), "--file", f.name, "--adapter", args.adapter, "--json", "--quiet"],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        plans = sum(1 for line in done.stdout.splitlines() if line.strip().startswith("{"))
        print(
            f"decompose --file over {len(rows)} requests: {wall:.1f} s wall (target <= 300 s: "
            f"{wall / 300:.2f}x the budget), exit {done.returncode}, {plans} plans"
        )
        if done.returncode:
            print(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "(no stderr)")


if __name__ == "__main__":
    main()
