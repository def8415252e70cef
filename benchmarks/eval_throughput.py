"""Batched evaluation generation vs the original one-prompt-at-a-time loop, same prompts, greedy.

    .venv/bin/python benchmarks/eval_throughput.py [--n 32] [--max-new-tokens 32] [--batch-size 16]

Both sides run the tiny CPU model (SmolLM2-135M-Instruct, fp32) on the same rendered prompts
(the first N instructions of the original dataset in ../shared/reference, else synthetic ones)
with the same bound and greedy decoding; the baseline calls `generate` once per prompt, as the
original evaluation did (it also sampled up to 1,000 new tokens, which we do not reproduce: with a
common bound the outputs are comparable one to one). Prints new tokens/s for both, the
throughput ratio (target >= 5x) and the share of outputs identical to the baseline's
(target >= 0.95). Outputs can differ because a padded batch computes the same logits with
matrices of another shape, so float32 sums round differently; where two tokens are nearly tied
the greedy choice can flip and the text diverges from there. The differing cases are printed
with the position of the first difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "decompose_net" / "data"


def instructions(n: int) -> list[str]:
    rows: list[dict] = []
    for path in sorted(REFERENCE.glob("*.json"), key=lambda p: int(p.stem.rsplit("_", 1)[1])):
        rows.extend(json.loads(path.read_text()))
        if len(rows) >= n:
            break
    tasks = [r["instruction"] for r in rows[:n]]
    topics = ["bees", "jazz", "solar panels", "a bakery", "coral reefs", "castles", "composting", "marathons"]
    i = 0
    while len(tasks) < n:  # no reference data beside the checkout: synthetic tasks of varied length
        t = topics[i % len(topics)]
        tasks.append(f"Write a blog post about {t}" + ", then record a podcast about it" * (i % 3) + ".")
        i += 1
    return tasks


def one_at_a_time(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    """The original loop: one prompt, one `generate` call, no padding."""
    import torch

    from taskdecomp.generation import stop_token_ids

    eos = stop_token_ids(model, tokenizer)
    out = []
    with torch.inference_mode():
        for p in prompts:
            enc = tokenizer(p, return_tensors="pt", add_special_tokens=False)
            ids = model.generate(
                **enc,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                eos_token_id=eos,
                pad_token_id=tokenizer.pad_token_id,
            )
            out.append(
                tokenizer.decode(ids[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)

    import torch

    from taskdecomp.generation import generate_batched
    from taskdecomp.models import load_base_model
    from taskdecomp.promptfmt import render_prompt

    torch.manual_seed(0)
    model, tokenizer = load_base_model("smollm2-135m-gguf", quantize_4bit=False, dtype="float32")
    model.eval()
    prompts = [render_prompt(tokenizer, t) for t in instructions(args.n)]
    count = lambda texts: sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)  # noqa: E731

    generate_batched(
        model, tokenizer, prompts[:2], max_new_tokens=4, batch_size=2
    )  # warm-up (allocator, kernels)
    t0 = time.perf_counter()
    batched = generate_batched(
        model, tokenizer, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size
    )
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    baseline = one_at_a_time(model, tokenizer, prompts, args.max_new_tokens)
    t_base = time.perf_counter() - t0

    tok_batched, tok_base = count(batched), count(baseline)
    same = [a == b for a, b in zip(batched, baseline, strict=True)]
    print(f"prompts: {len(prompts)}, max_new_tokens: {args.max_new_tokens}, batch_size: {args.batch_size}, "
          f"threads: {torch.get_num_threads()}")  # fmt: skip
    print(f"one-at-a-time: {t_base:7.1f} s  {tok_base / t_base:7.1f} new tokens/s")
    print(f"batched:       {t_batched:7.1f} s  {tok_batched / t_batched:7.1f} new tokens/s")
    print(f"throughput ratio (prompts/s, batched / one-at-a-time): {t_base / t_batched:.2f}x  (target >= 5x)")
    print(f"identical outputs: {sum(same)}/{len(same)} = {sum(same) / len(same):.3f}  (target >= 0.95)")
    for i, ok in enumerate(same):
        if not ok:
            a, b = batched[i], baseline[i]
            k = next((j for j, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
            print(f"  differs #{i} at char {k}: batched {a[k : k + 40]!r} vs one-at-a-time {b[k : k + 40]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
