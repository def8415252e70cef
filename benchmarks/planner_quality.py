"""Planner quality: a trained adapter against the base model and the keyword heuristic.

    python benchmarks/planner_quality.py --adapter DIR --dataset BUILT_DIR \
        [--hand tests/data/realistic_requests.jsonl] [--limit 120] [--tools default]

Runs `evaluate_adapter` (the library behind `evaluate-adapter`: grammar-constrained greedy
decoding, batched, the same prompt as training) on each evaluation set in one process: the
held-out `test` split of the built dataset, and the hand-labelled requests that no generator
produced (skipped with `--hand ''`, and for a tool dataset, whose references name tools the
hand labels do not have). For every set it prints each planner's figures and the adapter's as
ratios over the heuristic and over the base model, all three measured in this run, and whether
the adapter beats both (higher is better everywhere but `step_count_mae`). The raw results
JSON and predictions go beside the adapter (`--output-dir`, default the adapter folder).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from taskdecomp.evaluation.evaluate_adapter import (
    LOWER_IS_BETTER,
    TOOL_METRIC_ORDER,
    EvalConfig,
    evaluate_adapter,
)
from taskdecomp.reporter import Reporter

HAND = Path(__file__).resolve().parents[1] / "tests" / "data" / "realistic_requests.jsonl"
# the figures the issues set targets on, in this order
HEADLINE = ("plan_validity", "modality_f1", "step_count_exact", "step_f1", "step_count_mae")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else ("=" if a == b else "inf")


def report(name: str, results: dict, seconds: float) -> bool:
    keys = HEADLINE + tuple(k for k in TOOL_METRIC_ORDER if k in results["adapter"])
    print(f"\n## {name}: {results['n']} rows, {seconds:.0f} s (constrained={results['constrained']})\n")
    print("| metric | base | heuristic | adapter | adapter ÷ heuristic | adapter ÷ base |")
    print("|---|---:|---:|---:|---:|---:|")
    beats, wins = True, set()
    for k in keys:
        b, h, a = (results[c][k] for c in ("base", "heuristic", "adapter"))
        print(f"| {k} | {b:.3f} | {h:.3f} | {a:.3f} | {_ratio(a, h)} | {_ratio(a, b)} |")
        if k == "plan_validity":
            continue
        better = (a < h and a < b) if k in LOWER_IS_BETTER else (a > h and a > b)
        beats &= better
        wins |= {k} if better else set()
    valid = results["adapter"]["plan_validity"]
    print(f"\nadapter beats base and heuristic on every figure: {'yes' if beats else 'no'}; "
          f"adapter plan validity {valid:.3f}")  # fmt: skip
    if "node_f1" in results["adapter"]:  # the tool issue's target: TaskBench's two figures
        tool = {"node_f1", "link_f1"} <= wins and valid == 1.0
        print(
            f"tool target (node-F1 and link-F1 above base and heuristic, validity 1.0): {'met' if tool else 'not met'}"
        )
    return beats and valid == 1.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adapter", required=True)
    p.add_argument("--dataset", required=True, help="a build-dataset folder (its test split is used)")
    p.add_argument("--hand", default=str(HAND), help="hand-labelled JSONL ('' to skip)")
    p.add_argument("--limit", type=int, default=None, help="rows of the test split (default: all)")
    p.add_argument(
        "--hand-every", type=int, default=1, help="every k-th hand-labelled request (a spread sample; 1: all)"
    )
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--sets", default="test,hand", help="which sets: test, hand or both (comma-separated)")
    p.add_argument("--tools", default=None, help="the catalogue of a tool dataset")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--output-dir", default=None)
    p.add_argument("--update-card", action="store_true", help="put the test-split figures in the model card")
    args = p.parse_args(argv)
    out = Path(args.output_dir or args.adapter)
    wanted = {w.strip() for w in args.sets.split(",")}
    sets = [("test split", args.dataset, "test", args.limit, "eval_test")] if "test" in wanted else []
    if args.hand and not args.tools and "hand" in wanted:
        hand = Path(args.hand)
        if args.hand_every > 1:  # every k-th row: the set's mix of 1-6 step requests, k times fewer
            lines = [ln for ln in hand.read_text(encoding="utf-8").splitlines() if ln.strip()]
            hand = out / f"hand_every_{args.hand_every}.jsonl"
            hand.write_text("".join(ln + "\n" for ln in lines[:: args.hand_every]), encoding="utf-8")
        sets.append(("hand-labelled requests", str(hand), "test", None, "eval_hand"))
    ok = True
    for name, dataset, split, limit, stem in sets:
        cfg = EvalConfig(
            adapter=args.adapter, dataset=dataset, split=split, limit=limit, tools=args.tools,
            batch_size=args.batch_size, output=out / f"{stem}.json", max_new_tokens=args.max_new_tokens,
            update_card=args.update_card and stem == "eval_test",
        )  # fmt: skip
        t0 = time.perf_counter()
        results = evaluate_adapter(cfg, Reporter.silent())
        ok &= report(name, results, time.perf_counter() - t0)
    print(json.dumps({"adapter": args.adapter, "meets_target": ok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
