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


def _mask_after(constraint, tok, text: str, proc=None):
    """The allowed-token mask of `proc` (default: a fresh processor) after the model wrote
    `text` (fed one token a step)."""
    import torch

    ids = tok(text, add_special_tokens=False)["input_ids"]
    proc = proc or constraint.processor(1)
    vocab = constraint.vocab_size
    prompt = [tok.eos_token_id]  # one prompt token: the processor skips it at the first call
    scores = None
    for k in range(len(ids) + 1):
        seq = torch.tensor([prompt + ids[:k]])
        scores = proc(seq, torch.zeros((1, vocab)))
    return scores[0] > float("-inf")


FIRST = "1. Design a poster about urban beekeeping for the fair. [image generation]\n"
REPEAT = "2. Design a poster about urban beekeeping for the fair."


def test_a_repeat_that_reaches_the_length_bound_is_abandoned(constraint):
    """Where a repeat cannot go on (the description is at the grammar's length bound), the
    step is abandoned: the row may only end (EOS), and its unfinished line is dropped, so the
    answer is the plan before it and valid, instead of a plan the validator rejects."""
    from taskdecomp.constrain import drop_last_line

    gc, tok = constraint
    # a description as long as the grammar allows after two short words
    long = "Design a " + ("poster about urban beekeeping for the autumn fair, with bees " * 3)[:116] + "s"
    assert not accepts(constraint, f"1. {long}x [image generation]")  # one more character: too long
    first = f"1. {long} [image generation]\n"
    proc = gc.processor(1)
    allowed = _mask_after(gc, tok, first + f"2. {long}", proc=proc)
    assert proc.abandoned == [True]
    assert allowed.nonzero().flatten().tolist() == [tok.eos_token_id]
    # with room left, a repeat is not abandoned: it must write on
    roomy = gc.processor(1)
    allowed = _mask_after(gc, tok, FIRST + REPEAT, proc=roomy)
    assert roomy.abandoned == [False] and allowed.sum() > 1
    plan = drop_last_line(first + f"2. {long}")
    assert plan == first.strip()
    assert answer_errors(plan)[1] == []
    assert answer_errors(first + f"2. {long} [image generation; after 1]")[1]  # what it prevents


def test_a_repeat_in_the_closing_margin_is_abandoned_not_closed(constraint):
    """Near the end of the token budget a plan is steered to close; a last step that repeats
    an earlier one is abandoned instead (closing it would make the plan invalid), while a new
    step is closed as before."""
    gc, tok = constraint
    n = len(tok(FIRST + REPEAT, add_special_tokens=False)["input_ids"])
    budget = n + 4  # the next token is inside the closing margin
    proc = gc.processor(1, budget)
    allowed = _mask_after(gc, tok, FIRST + REPEAT, proc=proc)
    assert proc.abandoned == [True]
    assert allowed.nonzero().flatten().tolist() == [tok.eos_token_id]
    fresh = gc.processor(1, budget)
    allowed = _mask_after(
        gc, tok, FIRST + "2. Record a podcast about urban beekeeping for the fair.", proc=fresh
    )
    assert fresh.abandoned == [False]
    assert (allowed & gc.closers()[1]).any() and not allowed[tok.eos_token_id]


def test_a_one_step_plan_may_restate_the_request():
    """The generator's rule against a step that only repeats the instruction (a lazy generated
    row) does not apply to plans: a one-step task planned as itself is right."""
    task = "Transcribe the meeting.mp3 recording"
    assert answer_errors("1. Transcribe the meeting.mp3 recording [audio analysis]", task)[1] == []


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


def test_a_description_cannot_hold_a_step_marker(constraint):
    """The parser splits a one-line plan at "2. " ("1. Mark Davis (video generation) and 2. Mark
    ..." became two steps, the first without a tag: invalid), so after a description word like
    "2." or "3)" no token starting with a space is allowed; the word goes on instead."""
    gc, tok = constraint
    marker = _mask_after(gc, tok, "1. Mark Davis talks first and 2.")
    plain = _mask_after(gc, tok, "1. Mark Davis talks first and 2")
    space = gc.space_tokens()[: marker.shape[0]]
    assert (plain & space).any() and not (marker & space).any() and marker.any()
    assert not (_mask_after(gc, tok, "1. Mark Davis talks first, 3)") & space).any()
    assert (_mask_after(gc, tok, "1. Compare the takes of scene 2.5") & space).any()
    assert answer_errors("1. Mark Davis (video generation) and 2. Mark Davis speaks [audio analysis]")[1]
