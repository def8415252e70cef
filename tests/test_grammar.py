"""The plan grammar: generated from the schema, compiled by llguidance with the real tiny
model's tokenizer, and holding the rules it claims (checked by feeding it strings)."""

from __future__ import annotations

import json

import pytest

from taskdecomp.grammar import (
    DESC_MAX_CHARS,
    PLAN_MAX_STEPS,
    plan_grammar,
    plan_json_schema,
    plan_text_from_json,
)
from taskdecomp.plan import answer_errors
from taskdecomp.schema import MODALITIES, OPERATIONS


@pytest.fixture(scope="module")
def constraint():
    from taskdecomp.constrain import GrammarConstraint
    from taskdecomp.models import load_tokenizer, resolve_base

    tok = load_tokenizer(resolve_base("smollm2-135m-gguf"))
    return GrammarConstraint(tok, plan_grammar(), eos_ids=[tok.eos_token_id], vocab_size=len(tok)), tok


def accepts(constraint, text: str, *, complete: bool = True) -> bool:
    """Whether the grammar lets a model write `text` (token by token), and end there."""
    gc, tok = constraint
    matcher = gc.matcher()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if matcher.try_consume_tokens(ids) != len(ids):
        return False
    return matcher.is_accepting() if complete else True


GOOD = (
    "1. Listen to interview.wav and transcribe it. [audio analysis]\n"
    "2. Design a cover image for the episode. [image generation]\n"
    "3. Write show notes from the transcript and the cover. [text generation; after 1, 2]"
)


def test_grammar_is_generated_from_the_schema():
    g = plan_grammar()
    for word in (*MODALITIES, *OPERATIONS):
        assert f'"{word}"' in g
    assert f"s{PLAN_MAX_STEPS} ::=" in g and f"s{PLAN_MAX_STEPS + 1} ::=" not in g
    assert f"dchar{{3,{DESC_MAX_CHARS - 84}}}" in g  # within DESC_MAX_CHARS: 1 + 39 + 1 + 40 + 1 + rest + 1
    with pytest.raises(ValueError):
        plan_grammar(max_steps=PLAN_MAX_STEPS + 1)


def test_valid_plans_are_accepted(constraint):
    assert accepts(constraint, GOOD)
    assert accepts(constraint, "1. Transcribe meeting.mp3 into text. [audio analysis]")  # one step
    # a cut-off plan is a prefix (the matcher can go on) but not a whole plan
    assert accepts(constraint, GOOD[:40], complete=False) and not accepts(constraint, GOOD[:40])


@pytest.mark.parametrize(
    "text",
    [
        "1. Write the notes. [text generation; after 1]",  # a dependency on itself
        "1. Write the notes. [text generation]\n2. Draw the cover. [image generation; after 2]",
        "1. Write the notes. [text generation]\n2. Draw it. [image generation]\n3. Mix it all. [audio generation; after 1, 1]",
        "1. Write the notes. [text generation]\n2. Draw the cover. [image generation]\n3. Film it. [video generation; after 2, 1]",
        "1. Write the notes. [smell generation]",  # not a modality
        "1. Write the notes. [text creation]",  # not an operation
        "2. Write the notes. [text generation]",  # numbering starts at 1
        "1. Write the notes. [text generation]\n3. Draw the cover. [image generation]",
        "1. Write [the] notes. [text generation]",  # brackets inside a description
        "1. " + "audio-" * 40 + " [audio generation]",  # a runaway description
        "1.  Write the notes. [text generation]",  # description starting with a space
        "\n".join(
            f"{k}. Write part {k} of the notes. [text generation]" for k in range(1, PLAN_MAX_STEPS + 2)
        ),
    ],
)
def test_what_the_grammar_forbids(constraint, text):
    assert not accepts(constraint, text)


def test_eight_steps_with_increasing_dependencies(constraint):
    lines = ["1. Write the first part of the notes. [text generation]"]
    for k in range(2, PLAN_MAX_STEPS + 1):
        deps = ", ".join(str(d) for d in range(1, k))
        lines.append(f"{k}. Write part number {k} of the notes. [text generation; after {deps}]")
    assert accepts(constraint, "\n".join(lines))


def test_json_constraint_round_trip():
    schema = plan_json_schema()
    assert schema["properties"]["steps"]["maxItems"] == PLAN_MAX_STEPS
    answer = json.dumps(
        {
            "steps": [
                {"description": "Listen to interview.wav and transcribe it.", "modality": "audio",
                 "operation": "analysis", "after": []},
                {"description": "Write show notes from the transcript.", "modality": "text",
                 "operation": "generation", "after": [1]},
            ]
        }
    )  # fmt: skip
    text = plan_text_from_json(answer)
    assert text.splitlines()[1] == "2. Write show notes from the transcript. [text generation; after 1]"
    assert answer_errors(text)[1] == []
    assert plan_text_from_json("not json") == "not json"  # left for the parser to reject


def test_descriptions_have_the_validators_minimum_of_words(constraint):
    """A constrained plan cannot fail the validator's too-short check: the grammar asks for as
    many words as it does, and a two-word description does not parse."""
    from taskdecomp.grammar import DESC_MIN_WORDS
    from taskdecomp.validation import DESCRIPTION_WORDS

    assert DESCRIPTION_WORDS[0] == DESC_MIN_WORDS
    assert accepts(constraint, "1. Transcribe the interview. [audio analysis]")
    assert not accepts(constraint, "1. Transcribe interview.wav [audio analysis]")
    assert not accepts(constraint, "1. Transcribe [audio analysis]")
    assert not accepts(constraint, "1. Transcribe  interview.wav [audio analysis]")  # two spaces, two words


def _mask_after(constraint, tok, text: str):
    """The processor's allowed-token mask after the model wrote `text` (fed one token a step)."""
    import torch

    ids = tok(text, add_special_tokens=False)["input_ids"]
    proc = constraint.processor(1)
    vocab = constraint.vocab_size
    prompt = [tok.eos_token_id]  # one prompt token: the processor skips it at the first call
    scores = None
    for k in range(len(ids) + 1):
        seq = torch.tensor([prompt + ids[:k]])
        scores = proc(seq, torch.zeros((1, vocab)))
    return scores[0] > float("-inf")


def test_a_description_that_repeats_an_earlier_step_cannot_open_its_tag(constraint):
    """A small model repeats a step word for word; the validator would reject the plan. Under the
    processor, a description may only end (open its `[` tag) once it differs from every earlier one."""
    gc, tok = constraint
    open_ = gc.closers()[1]
    first = "1. Design a poster about urban beekeeping for the fair. [image generation]\n"
    repeated = _mask_after(gc, tok, first + "2. Design a poster about urban beekeeping for the fair.")
    fresh = _mask_after(gc, tok, first + "2. Record a podcast about urban beekeeping for the fair.")
    assert (fresh & open_).any()  # a new step may end here
    assert not (repeated & open_).any() and repeated.any()  # the repeat must go on writing
    # the same words in another order are the same content: still a repeat
    shuffled = _mask_after(gc, tok, first + "2. For the fair, design a poster about urban beekeeping.")
    assert not (shuffled & open_).any()
