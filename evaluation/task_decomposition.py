"""`task_decomposition`: an `evaluate` metric for numbered, typed task plans.

Load it offline with `evaluate.load("<path to this file>")` (or `taskdecomp.evaluation.load_metric()`)
and call `compute(predictions=[model text, ...], references=[reference output, ...])`.

Both sides are parsed with `taskdecomp.schema.parse_output` (tagged `1. ... [image generation; after 1]`
lines, or plain `1. ... 2. ...` text whose steps are typed with the lexicon). Scores, all in [0, 1]
except `step_count_mae`:

- `format_validity`: share of predictions that parse into at least one numbered step.
- `step_count_exact` / `step_count_mae`: the number of predicted steps vs the reference's
  (an unparseable prediction counts as 0 steps).
- `rouge1`, `rouge2`, `rougeL`: ROUGE F-measure (`rouge_score`, Porter stemming) of the step
  descriptions, one per line, *without* the `[...]` tags on both sides: the tags are scored by the
  modality metric, and would otherwise inflate ROUGE with repeated tag words. A prediction that
  does not parse is scored on its raw text (tags stripped), so it still gets partial credit.
- `modality_f1`: per example, F1 of the set of modalities of the predicted steps vs the reference's
  (tags where present, else the lexicon's `infer_step`), averaged over examples.
- `step_precision`, `step_recall`, `step_f1`: predicted steps are matched one-to-one to reference
  steps greedily by descending ROUGE-L F of their descriptions; a pair counts only when that score is
  at least `step_match_threshold` (default 0.5, i.e. about half of the words in common in order).
  Greedy matching equals the optimal (Hungarian) one whenever the best pairs do not conflict, which
  is the usual case with <= 8 steps, and needs no extra dependency. Micro-averaged over all steps.
- `plan_validity`: share of predictions whose steps form a valid plan row (the row schema: 1-8
  steps; dependencies only on earlier steps; the dataset validator's checks on step texts; no
  untagged step after tagged ones, i.e. not cut off) -- what `decompose` accepts without a retry.

Tool plans (steps tagged `[... ; tool ID; args ...; after ...]`), reported only when some
reference names a tool, as TaskBench defines them (its `evaluate.py`): per example the sets of
predicted and reference items; one F1 over the whole corpus from the summed counts (micro:
TP = sum |pred & ref|, precision = TP / sum |pred|, recall = TP / sum |ref|):

- `node_f1`: items are tool ids (a tool used twice in one plan counts once, as in TaskBench);
- `link_f1`: items are (source tool, target tool) pairs, one per dependency between tooled steps;
- `arg_f1`: items are (tool, argument value) pairs; a reference `<step-k>` is written as the
  tool of step k, so two plans that feed the same tool's output agree whatever their numbering.

Where both sides have no item at all (plans of single steps have no links) the score is 1.0:
nothing was missed and nothing invented (TaskBench's evaluator reports 0 there). A predicted id
outside the catalogue counts as a false positive (TaskBench's drops it; constrained decoding
cannot write one).
"""

from __future__ import annotations

import re
from typing import Any

import datasets
import evaluate
from rouge_score import rouge_scorer

from taskdecomp.plan import answer_errors
from taskdecomp.schema import parse_output
from taskdecomp.tool_formats import reference_step

__all__ = [
    "TaskDecomposition",
    "TOOL_METRICS",
    "strip_tags",
    "step_descriptions",
    "match_steps",
    "tool_items",
    "micro_f1",
    "tool_scores",
]

TOOL_METRICS = ("node_f1", "link_f1", "arg_f1")

_CITATION = ""
_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of model outputs (numbered steps).
    references: list of reference outputs (numbered steps, usually the dataset's `output` column).
    step_match_threshold: minimum ROUGE-L F of two step descriptions to count them as the same step.
    catalogue: path of a tool catalogue (YAML): plan validity then also requires tool plans over it.
Returns:
    dict with format_validity, plan_validity, step_count_exact, step_count_mae, rouge1, rouge2, rougeL,
    modality_f1, step_precision, step_recall, step_f1 (means over the examples / steps), and when the
    references name tools node_f1, link_f1, arg_f1 (micro-F1 over the corpus).
Example:
    >>> metric = evaluate.load("evaluation/task_decomposition.py")
    >>> metric.compute(predictions=["1. Write a poem. [text generation]"],
    ...                references=["1. Write a poem. [text generation]"])["step_f1"]
    1.0
"""

_TAGS = re.compile(r"\[[^\[\]]*\]")


def strip_tags(text: str) -> str:
    """Remove `[modality operation; after N]` tags (any bracketed span)."""
    return re.sub(r"[ \t]+", " ", _TAGS.sub(" ", text)).strip()


def step_descriptions(steps: list[dict[str, Any]]) -> list[str]:
    return [strip_tags(st["description"]) for st in steps]


def _rouge_l(scorer: rouge_scorer.RougeScorer, a: str, b: str) -> float:
    return scorer.score(b, a)["rougeL"].fmeasure


def match_steps(
    predicted: list[str],
    reference: list[str],
    threshold: float,
    scorer: rouge_scorer.RougeScorer | None = None,
) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching by descending ROUGE-L F; returns (pred index, ref index, score)."""
    scorer = scorer or rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    pairs = sorted(
        ((_rouge_l(scorer, p, r), i, j) for i, p in enumerate(predicted) for j, r in enumerate(reference)),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    used_p: set[int] = set()
    used_r: set[int] = set()
    matches = []
    for score, i, j in pairs:
        if score < threshold:
            break
        if i in used_p or j in used_r:
            continue
        used_p.add(i)
        used_r.add(j)
        matches.append((i, j, score))
    return matches


def _f1(pred: set[str], ref: set[str]) -> float:
    if not pred and not ref:
        return 1.0
    tp = len(pred & ref)
    if tp == 0:
        return 0.0
    p, r = tp / len(pred), tp / len(ref)
    return 2 * p * r / (p + r)


def tool_items(steps: list[dict[str, Any]]) -> dict[str, set[Any]]:
    """One plan's TaskBench items: `node` tool ids, `link` (source, target) tool pairs, `arg`
    (tool, value) pairs (references `<step-k>` as `<tool of step k>`). Untooled steps add none."""
    tool = {st["step"]: st.get("tool") for st in steps}
    nodes = {t for t in tool.values() if t}
    links = {(tool[d], tool[st["step"]]) for st in steps for d in st.get("depends_on") or () if tool.get(d)}
    links = {(a, b) for a, b in links if b}
    args = set()
    for st in steps:
        if not st.get("tool"):
            continue
        for value in st.get("args") or ():
            ref = reference_step(value)
            args.add((st["tool"], f"<{tool.get(ref) or 'step'}>" if ref is not None else value.strip()))
    return {"node": nodes, "link": links, "arg": args}


def micro_f1(predicted: list[set[Any]], reference: list[set[Any]]) -> float:
    """F1 from the counts summed over examples; 1.0 when neither side has any item."""
    tp = sum(len(p & r) for p, r in zip(predicted, reference, strict=True))
    n_pred, n_ref = sum(map(len, predicted)), sum(map(len, reference))
    if not n_pred and not n_ref:
        return 1.0
    if not tp:
        return 0.0
    precision, recall = tp / n_pred, tp / n_ref
    return 2 * precision * recall / (precision + recall)


def tool_scores(
    predicted: list[list[dict[str, Any]]], reference: list[list[dict[str, Any]]]
) -> dict[str, float]:
    """node_f1, link_f1, arg_f1 of parsed predictions against parsed references."""
    pred = [tool_items(p) for p in predicted]
    ref = [tool_items(r) for r in reference]
    return {
        f"{kind}_f1": micro_f1([p[kind] for p in pred], [r[kind] for r in ref])
        for kind in ("node", "link", "arg")
    }


def _plan_valid(text: str, catalogue: Any = None) -> bool:
    return not answer_errors(text, catalogue=catalogue)[1]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TaskDecomposition(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(
        self,
        predictions: list[str],
        references: list[str],
        step_match_threshold: float = 0.5,
        catalogue: str | None = None,
    ) -> dict[str, float]:
        n = len(predictions)
        if n == 0:
            return {}
        tools = None
        if catalogue:
            from taskdecomp.catalogue import load_catalogue

            tools = load_catalogue(catalogue)
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
        sums = dict.fromkeys(
            ("format_validity", "plan_validity", "step_count_exact", "step_count_mae", "modality_f1"), 0.0
        )
        rouge = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
        matched = n_pred = n_ref = 0
        parsed: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
        for pred_text, ref_text in zip(predictions, references, strict=True):
            pred, ref = parse_output(pred_text or ""), parse_output(ref_text or "")
            parsed.append((pred, ref))
            sums["format_validity"] += bool(pred)
            sums["plan_validity"] += _plan_valid(pred_text or "", tools)
            sums["step_count_exact"] += len(pred) == len(ref)
            sums["step_count_mae"] += abs(len(pred) - len(ref))
            sums["modality_f1"] += _f1({s["modality"] for s in pred}, {s["modality"] for s in ref})

            pred_desc, ref_desc = step_descriptions(pred), step_descriptions(ref)
            pred_joined = "\n".join(pred_desc) if pred else strip_tags(pred_text or "")
            ref_joined = "\n".join(ref_desc) if ref else strip_tags(ref_text or "")
            for key, score in scorer.score(ref_joined, pred_joined).items():
                rouge[key] += score.fmeasure

            matched += len(match_steps(pred_desc, ref_desc, step_match_threshold, scorer))
            n_pred += len(pred_desc)
            n_ref += len(ref_desc)
        precision = matched / n_pred if n_pred else 0.0
        recall = matched / n_ref if n_ref else 0.0
        out = {k: v / n for k, v in sums.items()}
        out.update({k: v / n for k, v in rouge.items()})
        out["step_precision"] = precision
        out["step_recall"] = recall
        out["step_f1"] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if any(st.get("tool") for _, ref in parsed for st in ref):
            out.update(tool_scores([p for p, _ in parsed], [r for _, r in parsed]))
        return {k: round(float(v), 6) for k, v in out.items()}
