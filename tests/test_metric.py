"""The `task_decomposition` evaluate metric: loaded offline by path; every score can fail."""

from __future__ import annotations

import evaluate
import pytest

from taskdecomp.evaluation import METRIC_PATH, load_metric
from taskdecomp.evaluation.task_decomposition import match_steps, strip_tags

REF = (
    "1. Write a short script about urban beekeeping. [text generation]\n"
    "2. Record a narrated audio version of the script. [audio transformation; after 1]\n"
    "3. Design a poster image announcing the episode. [image generation]"
)
PLAIN_SAME = (
    "1. Write a short script about urban beekeeping. "
    "2. Record a narrated audio version of the script. "
    "3. Design a poster image announcing the episode."
)
WRONG = "1. Bake a chocolate cake for the party. [text generation]\n2. Eat the cake slowly. [text analysis]"
PARTIAL = (
    "1. Write a short script about urban beekeeping. [text generation]\n"
    "2. Film a video about honey. [video generation; after 1]"
)
PROSE = "Sure! Beekeeping is a wonderful hobby and you should try it."


@pytest.fixture(scope="module")
def metric():
    return load_metric()


def score(metric, pred: str, ref: str = REF) -> dict[str, float]:
    return metric.compute(predictions=[pred], references=[ref])


def test_loads_offline_by_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = evaluate.load(str(METRIC_PATH))
    assert score(m, REF)["step_f1"] == 1.0


def test_perfect_prediction_scores_one_everywhere(metric):
    s = score(metric, REF)
    assert s["step_count_mae"] == 0.0
    assert all(v == 1.0 for k, v in s.items() if k != "step_count_mae"), s


def test_tags_do_not_count_for_rouge_but_do_for_modality(metric):
    # Same descriptions without tags: ROUGE and step matching are perfect; the lexicon types
    # "Record a narrated audio version" as audio, so modality F1 is perfect too.
    s = score(metric, PLAIN_SAME)
    assert s["rouge1"] == s["rougeL"] == s["step_f1"] == 1.0
    assert s["modality_f1"] == 1.0
    # Right words, wrong modality tags: ROUGE unaffected, modality F1 drops.
    wrong_tags = REF.replace("[audio transformation; after 1]", "[video generation; after 1]").replace(
        "[image generation]", "[video generation]"
    )
    s2 = score(metric, wrong_tags)
    assert s2["rougeL"] == 1.0 and s2["step_f1"] == 1.0
    assert s2["modality_f1"] == pytest.approx(0.4)  # {text, video} vs {text, audio, image}: P 1/2, R 1/3


def test_wrong_prediction_scores_low(metric):
    s = score(metric, WRONG)
    assert s["format_validity"] == 1.0 and s["plan_validity"] == 1.0  # well-formed, just wrong
    assert s["step_count_exact"] == 0.0 and s["step_count_mae"] == 1.0
    assert s["step_f1"] == 0.0 and s["rouge2"] < 0.1
    assert s["modality_f1"] == pytest.approx(0.5)  # {text} vs {text, audio, image}


def test_partial_prediction_scores_in_between(metric):
    s = score(metric, PARTIAL)
    assert s["step_precision"] == pytest.approx(0.5)  # 1 of 2 predicted steps matches
    assert s["step_recall"] == pytest.approx(1 / 3)  # 1 of 3 reference steps found
    assert 0.0 < s["rougeL"] < 1.0
    assert s["step_count_mae"] == 1.0


def test_unparseable_prediction(metric):
    s = score(metric, PROSE)
    assert s["format_validity"] == 0.0 and s["plan_validity"] == 0.0
    assert s["step_count_mae"] == 3.0 and s["step_f1"] == 0.0 and s["modality_f1"] == 0.0


def test_plan_validity_takes_one_step_but_not_a_cut_plan_or_forward_dependencies(metric):
    assert score(metric, "1. Write a short script about urban beekeeping.")["plan_validity"] == 1.0
    cut = "1. Write a short script about urban beekeeping. [text generation]\n2. Record the episo"
    assert score(metric, cut)["plan_validity"] == 0.0
    forward = (
        "1. Write a script about bees. [text generation; after 2]\n2. Draw a bee poster. [image generation]"
    )
    s = score(metric, forward)
    assert s["format_validity"] == 1.0 and s["plan_validity"] == 0.0


def test_averages_over_examples(metric):
    s = metric.compute(predictions=[REF, PROSE], references=[REF, REF])
    assert s["format_validity"] == 0.5
    assert s["step_count_mae"] == 1.5
    assert s["step_f1"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # micro: P = 3/3, R = 3/6


def test_matching_is_one_to_one_and_thresholded():
    pred = ["Write a script about bees", "Write a script about bees"]
    ref = ["Write a script about bees", "Draw a poster of a bee"]
    matches = match_steps(pred, ref, threshold=0.5)
    assert len(matches) == 1 and matches[0][:2] == (0, 0)
    assert match_steps(["Write a script"], ["Write a long detailed script about honey bees"], 0.9) == []
    assert strip_tags("Draw it. [image generation; after 1]") == "Draw it."
