"""The lexicon that types free-text steps, measured on hand-labelled steps.

`tests/data/lexicon_labels.jsonl` holds 149 steps drawn at random (fixed seeds) from the
original project's 1,000 rows and labelled by reading them, before the lexicon was tuned:
- `tune` (80 steps): the lexicon's rules were developed looking at these;
- `heldout` (30): never looked at while tuning (only the overall score was seen);
- `heldout2` (39): drawn and labelled after tuning had finished; no rule was changed after.

Labelling guidelines (the same the lexicon's docstring states):
- transformation: existing content re-expressed in another modality (transcribe, caption,
  translate, narrate / voice-over a text, convert X into Y, summarise a video in words);
  modality = the one produced.
- analysis: examining something (analyse, assess, survey, gather feedback, write an
  analysis of ...); modality = what is examined, and feedback / metrics / comments / survey
  answers count as text.
- generation: producing something new (including combining or editing into a new artefact,
  and delivering it: publish, distribute); modality = what is produced.

Thresholds: the lexicon the project started with scores 0.66 / 0.87 / 0.75 (tune / heldout /
heldout2). Many steps are genuinely ambiguous (is a slideshow "from the speech" a
transformation?), so a perfect score is not expected on unseen steps. We assert >= 0.85
joint (modality and operation both right) on the 69 held-out steps: at the measured ~0.96
that is about four standard errors of margin (sqrt(.96*.04/69) = 0.023), yet a lexicon as
weak as the original one (0.80 on them) fails. On the tuning split we assert >= 0.95 as a
regression guard.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskdecomp.lexicon import infer_step
from taskdecomp.schema import MODALITIES, OPERATIONS, _split_numbered

from conftest import reference_rows

LABELS = Path(__file__).parent / "data" / "lexicon_labels.jsonl"


def _labelled(*splits: str) -> list[dict]:
    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r["split"] in splits]


def _accuracy(rows: list[dict]) -> tuple[float, float, float]:
    pred = [infer_step(r["description"]) for r in rows]
    joint = sum(p == (r["modality"], r["operation"]) for p, r in zip(pred, rows, strict=True)) / len(rows)
    mod = sum(p[0] == r["modality"] for p, r in zip(pred, rows, strict=True)) / len(rows)
    op = sum(p[1] == r["operation"] for p, r in zip(pred, rows, strict=True)) / len(rows)
    return joint, mod, op


def test_labels_file_is_well_formed():
    rows = _labelled("tune", "heldout", "heldout2")
    assert len(rows) == 149
    assert len({r["description"] for r in rows}) == len(rows)
    for r in rows:
        assert r["modality"] in MODALITIES and r["operation"] in OPERATIONS
    # every modality and operation is represented, so the score is not one class's
    assert {r["modality"] for r in rows} == set(MODALITIES)
    assert {r["operation"] for r in rows} == set(OPERATIONS)


def test_accuracy_on_tuning_split(record_property):
    joint, mod, op = _accuracy(_labelled("tune"))
    record_property("lexicon_tune_joint", joint)
    print(f"lexicon tune (80): joint {joint:.3f} modality {mod:.3f} operation {op:.3f}")
    assert joint >= 0.95


def test_accuracy_on_held_out_steps(record_property):
    rows = _labelled("heldout", "heldout2")
    joint, mod, op = _accuracy(rows)
    record_property("lexicon_heldout_joint", joint)
    print(f"lexicon held-out ({len(rows)}): joint {joint:.3f} modality {mod:.3f} operation {op:.3f}")
    assert joint >= 0.85
    assert mod >= 0.90


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        # the head noun decides, not the first modality word
        ("Write a script for a motivational speech.", ("text", "generation")),
        ("Write the podcast episode script.", ("text", "generation")),
        ("Produce a short tutorial video on knot tying.", ("video", "generation")),
        ("Record an audio narrative of the story.", ("audio", "transformation")),
        # products after "into"
        ("Combine the slogans and images into a poster layout.", ("image", "generation")),
        ("Convert the written story into an audio narration.", ("audio", "transformation")),
        ("Turn the podcast transcript into an animated video.", ("video", "transformation")),
        # transformations name the produced modality
        ("Transcribe the interview recording.", ("text", "transformation")),
        ("Add subtitles to the documentary.", ("text", "transformation")),
        ("Summarize the lecture video in a short paragraph.", ("text", "transformation")),
        # analysis: what is examined; collected data is text
        ("Analyze the video for pacing problems.", ("video", "analysis")),
        ("Analyze viewer comments on the video.", ("text", "analysis")),
        ("Conduct a survey among listeners of the podcast.", ("text", "analysis")),
        ("Write an analysis of the painting's composition.", ("image", "analysis")),
        # a trailing participle clause does not decide the step
        ("Compile the photos into an album, adding short captions.", ("image", "generation")),
        # no cue at all: text generation
        ("Decide on the next steps with the team.", ("text", "generation")),
    ],
)
def test_rules(step, expected):
    assert infer_step(step) == expected


def test_every_reference_step_gets_a_valid_type(reference_data_dir):
    seen = set()
    for row in reference_rows():
        for step in _split_numbered(row["output"]):
            modality, operation = infer_step(step)
            assert modality in MODALITIES and operation in OPERATIONS
            seen.add((modality, operation))
    assert len(seen) >= 10  # not collapsing onto a few classes
    assert infer_step("") in {(m, o) for m in MODALITIES for o in OPERATIONS}
