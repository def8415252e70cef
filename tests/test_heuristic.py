"""The heuristic planner: a keyword baseline that always returns a valid plan."""

from __future__ import annotations

import json
from pathlib import Path

from taskdecomp.evaluation import load_metric
from taskdecomp.heuristic import heuristic_answer, heuristic_plan
from taskdecomp.plan import answer_errors
from taskdecomp.planner.cli import main as decompose_main
from taskdecomp.schema import render_output

REQUESTS = Path(__file__).parent / "data" / "realistic_requests.jsonl"


def test_files_and_urls_are_read_and_what_is_asked_is_made():
    plan = heuristic_plan("I've just filmed clip.mp4 and have a separate voiceover, vo.wav. Line them up?")
    assert [(s.modality, s.operation) for s in plan.steps] == [("video", "analysis"), ("audio", "analysis")]
    assert "clip.mp4" in plan.steps[0].description and "vo.wav" in plan.steps[1].description
    assert plan.steps[1].depends_on == (1,) and plan.source == "heuristic"
    plan = heuristic_plan(
        "I found an article at https://example.org/a. Make a short video of its key points."
    )
    assert [(s.modality, s.operation) for s in plan.steps] == [("text", "analysis"), ("video", "generation")]
    assert "https://example.org/a" in plan.steps[0].description  # no trailing full stop
    assert [s.modality for s in heuristic_plan("Please help me plan my week properly").steps] == ["text"]


def test_valid_on_every_hand_labelled_request_and_scored_by_the_metric():
    rows = [json.loads(line) for line in REQUESTS.read_text(encoding="utf-8").splitlines()]
    answers = [heuristic_answer(r["instruction"]) for r in rows]
    assert all(answer_errors(a, r["instruction"])[1] == [] for a, r in zip(answers, rows, strict=True))
    refs = [render_output(r["steps"]) for r in rows]
    scores = load_metric().compute(predictions=answers, references=refs)
    assert scores["plan_validity"] == 1.0
    # a baseline, not an oracle: it finds most modalities but not the step structure
    assert 0.5 < scores["modality_f1"] < 1.0 and scores["step_count_exact"] < 1.0


def test_cli_heuristic_needs_no_model(capsys):
    assert (
        decompose_main(["Transcribe meeting.mp3 and email me a summary", "--planner", "heuristic", "--json"])
        == 0
    )
    row = json.loads(capsys.readouterr().out)
    assert row["source"] == "heuristic" and row["subtasks"][0]["description"].startswith(
        "Listen to meeting.mp3"
    )
    assert (
        decompose_main(["Transcribe meeting.mp3 for me", "--planner", "heuristic", "--adapter", "x/y"]) == 2
    )
    assert "uses no model" in capsys.readouterr().err
