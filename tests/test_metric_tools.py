"""The tool metrics (node-F1, link-F1, argument F1 as TaskBench defines them): hand-made cases
with known values, through the `evaluate` metric on rendered plan text."""

from __future__ import annotations

import pytest

from taskdecomp.evaluation import load_metric
from taskdecomp.evaluation.task_decomposition import micro_f1, tool_items, tool_scores
from taskdecomp.schema import render_output


def step(n: int, tool: str | None, deps=(), args=(), modality="text", operation="generation") -> dict:
    st = {"step": n, "description": f"Do the work of step number {n}", "modality": modality,
          "operation": operation, "depends_on": list(deps)}  # fmt: skip
    if tool:
        st["tool"] = tool
    if args:
        st["args"] = list(args)
    return st


CHAIN = [
    step(1, "a", args=["in.wav"]),
    step(2, "b", [1], ["<step-1>"]),
    step(3, "c", [2], ["<step-2>", "fr"]),
]


def test_items_of_one_plan():
    items = tool_items(CHAIN)
    assert items["node"] == {"a", "b", "c"}
    assert items["link"] == {("a", "b"), ("b", "c")}
    # a reference is the referenced step's tool, so numbering does not matter
    assert items["arg"] == {("a", "in.wav"), ("b", "<a>"), ("c", "<b>"), ("c", "fr")}
    assert tool_items([step(1, None), step(2, "b", [1])]) == {"node": {"b"}, "link": set(), "arg": set()}


def test_perfect_disjoint_and_partial():
    assert tool_scores([CHAIN], [CHAIN]) == {"node_f1": 1.0, "link_f1": 1.0, "arg_f1": 1.0}
    other = [step(1, "x", args=["in.wav"]), step(2, "y", [1], ["<step-1>"]), step(3, "z", [2])]
    assert tool_scores([other], [CHAIN]) == {"node_f1": 0.0, "link_f1": 0.0, "arg_f1": 0.0}
    # c replaced by d: nodes 2 of 3 right each way, links 1 of 2, args 2 of 4 (pred has 3)
    partial = [
        step(1, "a", args=["in.wav"]),
        step(2, "b", [1], ["<step-1>"]),
        step(3, "d", [2], ["<step-2>"]),
    ]
    got = tool_scores([partial], [CHAIN])
    assert got["node_f1"] == pytest.approx(2 / 3)
    assert got["link_f1"] == pytest.approx(0.5)
    assert got["arg_f1"] == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))  # P 2/3, R 2/4 -> 4/7


def test_micro_over_the_corpus_not_a_mean_of_examples():
    # example 1: ref {a, b}, pred {a}; example 2: ref {c}, pred {c, d, e}
    pred = [{"a"}, {"c", "d", "e"}]
    ref = [{"a", "b"}, {"c"}]
    # TP 2, predicted 4, reference 3: P 1/2, R 2/3, F1 4/7 (the mean of per-example F1s is 7/12)
    assert micro_f1(pred, ref) == pytest.approx(4 / 7)
    assert micro_f1([set()], [set()]) == 1.0  # nothing to find, nothing invented
    assert micro_f1([{"a"}], [set()]) == 0.0 and micro_f1([set()], [{"a"}]) == 0.0


def test_the_metric_reports_them_only_for_tool_references():
    metric = load_metric()
    ref = render_output(CHAIN)
    assert "tool b" in ref and "args <step-2>, fr" in ref  # the plan text carries the tool segments
    scores = metric.compute(predictions=[ref], references=[ref])
    assert scores["node_f1"] == scores["link_f1"] == scores["arg_f1"] == 1.0
    partial = render_output(
        [step(1, "a", args=["in.wav"]), step(2, "b", [1], ["<step-1>"]), step(3, "d", [2], ["<step-2>"])]
    )
    scores = metric.compute(predictions=[partial, "not a plan"], references=[ref, ref])
    # the unparseable answer has no items: TP 2 of predicted 3, reference 6 nodes
    assert scores["node_f1"] == pytest.approx(2 * (2 / 3) * (2 / 6) / (2 / 3 + 2 / 6))
    plain = render_output([step(1, None), step(2, None, [1])])
    assert not {"node_f1", "link_f1", "arg_f1"} & set(metric.compute(predictions=[plain], references=[plain]))
