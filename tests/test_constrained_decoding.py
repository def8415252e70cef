"""Grammar-constrained decoding on the real tiny model: batched, left-padded, every answer in
the plan format (the untrained base model's answers are not, without the grammar)."""

from __future__ import annotations

import re

import pytest

from taskdecomp.grammar import plan_grammar
from taskdecomp.schema import MODALITIES, OPERATIONS

TASKS = [
    "Transcribe meeting.mp3",
    "I've just filmed clip.mp4 and have a separate voiceover, vo.wav. Could you help me line them up?",
    "Write a short poem about autumn and turn it into a narrated video with matching images and music.",
    "Can you tell me what is said in this clip and translate it to French?",
]
DESC = 40
LINE = re.compile(
    rf"^(\d)\. [^\[\]\n 0-9.,;:!?()\-][^\[\]\n]{{6,{DESC - 2}}}[^\[\]\n ] \[({'|'.join(MODALITIES)}) ({'|'.join(OPERATIONS)})"
    r"(?:; after (\d(?:, \d)*))?\]$"
)


@pytest.fixture(scope="module")
def model():
    from taskdecomp.models import load_base_model

    m, tok = load_base_model("smollm2-135m-gguf", quantize_4bit=False)
    m.eval()
    return m, tok


def in_format(text: str, max_steps: int) -> bool:
    lines = text.split("\n")
    if not 1 <= len(lines) <= max_steps:
        return False
    for k, line in enumerate(lines, start=1):
        m = LINE.match(line)
        if not m or int(m.group(1)) != k:
            return False
        deps = [int(d) for d in (m.group(4) or "").split(", ") if d]
        if deps != sorted(set(deps)) or any(d >= k for d in deps):
            return False
    return True


@pytest.mark.slow
def test_every_batched_answer_is_in_the_plan_format(model):
    from taskdecomp.generation import generate_batched
    from taskdecomp.promptfmt import render_prompt

    m, tok = model
    prompts = [render_prompt(tok, t) for t in TASKS]
    grammar = plan_grammar(max_steps=3, desc_max_chars=DESC)
    # 3 lines of at most ~75 characters fit in 240 tokens (a token has at least one
    # character): no answer is cut off
    free = generate_batched(m, tok, prompts, max_new_tokens=240, batch_size=4)
    held = generate_batched(m, tok, prompts, max_new_tokens=240, batch_size=4, grammar=grammar)
    assert all(in_format(a, 3) for a in held), held
    assert not all(in_format(a, 3) for a in free)  # the base model alone does not write plans


@pytest.mark.slow
def test_decompose_constrains_by_default_and_not_when_asked(model):
    from taskdecomp.planner import Decomposer, DecompositionError, Plan

    m, tok = model
    errors = {}
    for constrain in (True, False):
        dec = Decomposer.from_model(m, tok, retries=0, max_new_tokens=400, constrain=constrain)
        got = dec.decompose_many(TASKS)
        assert all(isinstance(r, Plan | DecompositionError) for r in got)
        errors[constrain] = [str(r) for r in got if isinstance(r, DecompositionError)]
    # unconstrained, the base model writes no numbered steps; constrained it always does (an
    # answer may still be cut at max_new_tokens or fail the validator: an error, not a plan)
    assert not any("no numbered steps" in e for e in errors[True])
    assert any("no numbered steps" in e for e in errors[False])


@pytest.mark.slow
def test_plans_close_before_the_token_budget_ends(model):
    """A tight budget cuts unconstrained steps mid-way; under the grammar the processor steers each
    row to the nearest end in the last CLOSE_MARGIN tokens, so every answer is a complete plan."""
    from taskdecomp.constrain import CLOSE_MARGIN
    from taskdecomp.generation import generate_batched
    from taskdecomp.promptfmt import render_prompt

    m, tok = model
    prompts = [render_prompt(tok, t) for t in TASKS]
    # descriptions of up to 120 characters, 8 steps allowed: the base model writes far more than
    # 48 tokens, so without the closing rule every answer would stop inside a step
    grammar = plan_grammar(max_steps=8, desc_max_chars=120)
    budget = 48
    held = generate_batched(m, tok, prompts, max_new_tokens=budget, batch_size=4, grammar=grammar)
    for answer in held:
        assert LINE_ANY.match(answer.split("\n")[-1]), answer  # the last step ends with its tag
    lengths = [len(tok(a, add_special_tokens=False)["input_ids"]) for a in held]
    assert max(lengths) <= budget
    # the budget binds: with room to spare, the same rows write longer plans than it allows
    roomy = generate_batched(m, tok, prompts, max_new_tokens=3 * budget, batch_size=4, grammar=grammar)
    assert max(len(tok(a, add_special_tokens=False)["input_ids"]) for a in roomy) > budget
    assert budget > CLOSE_MARGIN


LINE_ANY = re.compile(
    rf"^\d\. .+ \[({'|'.join(MODALITIES)}) ({'|'.join(OPERATIONS)})(?:; after \d(?:, \d)*)?\]$"
)
