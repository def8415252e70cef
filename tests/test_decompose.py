"""`decompose`: parsing, validation and the re-ask loop (with a scripted generator: the model is
not what these test), then the real tiny model through the CLI (valid row or the explicit error)."""

from __future__ import annotations

import io
import json

import pytest

from taskdecomp.errors import InputError
from taskdecomp.planner import Decomposer, DecompositionError, Plan
from taskdecomp.planner.cli import main as decompose_main
from taskdecomp.schema import schema_errors

TASK = "Record a podcast episode about urban bees and design a cover image for it."
GOOD = (
    "1. Write a script about urban bees for the episode. [text generation]\n"
    "2. Record the podcast episode from the script. [audio generation; after 1]\n"
    "3. Design a cover image showing a city beehive. [image generation]"
)
PLAIN = "1. Write a script about urban bees. 2. Record the podcast episode from the script."
FORWARD = "1. Record the podcast episode. [audio generation; after 2]\n2. Write the podcast script. [text generation]"
PROSE = "Sure, here is how I would do that: first think about bees."


class Scripted:
    """A deterministic stand-in for the model: answers from a script, records what it was asked."""

    def __init__(self, answers: dict[str, list[str]] | list[str]) -> None:
        self.answers = answers
        self.calls: list[list[list[dict[str, str]]]] = []

    def __call__(self, conversations):
        self.calls.append(conversations)
        out = []
        for conv in conversations:
            script = self.answers if isinstance(self.answers, list) else self.answers[conv[1]["content"]]
            out.append(script[min(len(conv) // 2 - 1, len(script) - 1)])  # 2 messages per round
        return out


def test_valid_answer_becomes_a_typed_plan_and_a_valid_row():
    d = Decomposer("my/adapter", generator=Scripted([GOOD]))
    plan = d.decompose(TASK)
    assert isinstance(plan, Plan)
    assert [s.modality for s in plan.steps] == ["text", "audio", "image"]
    assert plan.steps[1].depends_on == (1,)
    assert plan.waves() == [[1, 3], [2]]
    row = plan.to_row()
    assert schema_errors(row) == []
    assert row["source"] == "model:my/adapter" and row["structure"] == "parallel"
    assert Plan.from_row(row) == plan


def test_untagged_numbered_answer_is_typed_by_the_lexicon():
    plan = Decomposer(generator=Scripted([PLAIN])).decompose(TASK)
    assert [(s.modality, s.depends_on) for s in plan.steps] == [("text", ()), ("audio", (1,))]


def test_invalid_answer_is_re_asked_with_the_error():
    gen = Scripted([PROSE, FORWARD, GOOD])
    plan = Decomposer(generator=gen, retries=2).decompose(TASK)
    assert plan.render().startswith("1. Write a script")
    assert len(gen.calls) == 3
    last = gen.calls[-1][0]
    # system, user, then (assistant answer, user re-ask) per failed round
    assert [m["role"] for m in last] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert last[2]["content"] == PROSE and "no numbered steps" in last[3]["content"]
    assert "step 1 depends on" in last[5]["content"]  # the forward dependency


CUT = "1. Write a script about urban bees for the episode. [text generation]\n2. Record the podcast episo"


def test_never_returns_a_broken_plan():
    gen = Scripted([PROSE, FORWARD, CUT])
    with pytest.raises(DecompositionError) as info:
        Decomposer(generator=gen, retries=2).decompose(TASK)
    assert len(info.value.attempts) == 3 and len(gen.calls) == 3
    assert "step 2 has no [modality operation] tag" in str(info.value)  # cut at max_new_tokens


def test_a_single_step_plan_is_a_plan():
    one = "1. Write a short caption for the photo of the bees. [text generation]"
    plan = Decomposer(generator=Scripted([one])).decompose("Write a caption for my photo bees.jpg, please.")
    assert len(plan.steps) == 1 and plan.structure == "chain" and schema_errors(plan.to_row()) == []


def test_batched_rounds_only_re_ask_the_failures():
    other = "Film a short video about composting at home and write a blog post about it."
    gen = Scripted({TASK: [GOOD], other: [PROSE, PROSE]})
    results = Decomposer(generator=gen, retries=1).decompose_many([TASK, other])
    assert isinstance(results[0], Plan) and isinstance(results[1], DecompositionError)
    assert [len(c) for c in gen.calls] == [2, 1]  # one batch of 2, then only the failure


@pytest.mark.parametrize("task", ["", "   ", "too short"])
def test_bad_task_text(task):
    with pytest.raises(InputError):
        Decomposer(generator=Scripted([GOOD])).decompose(task)


def test_cli_bad_input_exits_2_with_one_line(capsys):
    assert decompose_main([""]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("decompose: error: the task text is empty") and "\n" not in err
    assert decompose_main([]) == 2
    assert decompose_main(["--file", "/nonexistent/tasks.txt"]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_with_the_real_tiny_model(tmp_path_factory, capsys, monkeypatch):
    """The base tiny model (no adapter): each line is a schema-valid row or an explicit error;
    a single task is a valid row (exit 0) or one error line (exit 2), never a broken plan."""
    # the dequantised model is cached once per test session (conftest.pytest_configure)
    monkeypatch.setattr(
        "sys.stdin", io.StringIO(TASK + "\n\nWrite a poem about the sea and record it as audio.\n")
    )
    args = ["--max-new-tokens", "48", "--retries", "1", "--quiet"]
    rc = decompose_main(["--file", "-", *args])
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2 and rc in (0, 1)
    for line in lines:
        assert ("error" in line and "no valid plan" in line["error"]) or schema_errors(line) == []
    assert rc == (1 if any("error" in line for line in lines) else 0)
    assert "no --adapter" in err  # the low-quality warning

    rc = decompose_main([TASK, "--json", "--run", "--dry-run", *args])
    out, err = capsys.readouterr()
    if rc == 0:
        row = json.loads(out)
        assert row.pop("run")["ok"] is True and schema_errors(row) == []
    else:
        assert rc == 2 and out == ""
        assert err.strip().splitlines()[-1].startswith("decompose: error: no valid plan")
