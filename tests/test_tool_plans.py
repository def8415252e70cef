"""Planning with tools: HuggingGPT / TaskBench output, the catalogue's grammar (compiled by
llguidance with the tiny model's tokenizer), `decompose --tools` end to end with the heuristic,
and a constrained tiny-model decode that parses into a tool plan."""

from __future__ import annotations

import json
import textwrap

import pytest

from taskdecomp.catalogue import Catalogue, Tool, default_catalogue, load_catalogue
from taskdecomp.grammar import (
    TOOL_PLAN_MAX_STEPS,
    plan_json_schema,
    plan_text_from_json,
    tool_plan_grammar,
    typed_steps_for,
)
from taskdecomp.heuristic import heuristic_plan
from taskdecomp.plan import Plan, Step, answer_errors
from taskdecomp.planner.cli import main as decompose_main
from taskdecomp.promptfmt import system_prompt

TOOLS = Catalogue(
    name="tiny",
    tools=(
        Tool("speech-recognition", "Transcribe the speech in a recording", ("audio",), ("text",), "audio",
             "analysis", ("audio",)),
        Tool("summarization", "Shorten a text to its key points", ("text",), ("text",), "text",
             "transformation", ("text",)),
        Tool("image-generation", "Draw a picture from a text prompt", ("text",), ("image",), "image",
             "generation", ("prompt",)),
        Tool("narrated-slideshow", "Turn a script and a picture into a narrated video", ("text", "image"),
             ("video",), "video", "generation", ("script", "image")),
    ),
)  # fmt: skip

PLAN_TEXT = (
    "1. Transcribe the interview recording. [audio analysis; tool speech-recognition; args interview.wav]\n"
    "2. Summarise the transcript in five lines. [text transformation; tool summarization; args <step-1>; after 1]\n"
    "3. Draw a cover picture for the episode. [image generation; tool image-generation; args a watercolour microphone]\n"
    "4. Make a narrated video of the summary. [video generation; tool narrated-slideshow; after 2, 3]"
)
TASK = "Transcribe interview.wav, summarise it, draw a cover and make a narrated video of it all"


@pytest.fixture(scope="module")
def plan() -> Plan:
    row, errors = answer_errors(PLAN_TEXT, TASK, catalogue=TOOLS)
    assert errors == []
    return Plan.from_row(row)


def test_the_plan_text_round_trips_with_its_tools(plan):
    assert [s.tool for s in plan.steps] == [t.id for t in TOOLS.tools]
    assert plan.steps[0].args == ("interview.wav",) and plan.steps[1].args == ("<step-1>",)
    assert plan.steps[3].args == () and plan.steps[3].depends_on == (2, 3)
    assert plan.render() == PLAN_TEXT
    assert Plan.from_row(plan.to_row()) == plan
    # a step without a tool keeps today's dict (no tool/args keys)
    assert set(Step(1, "Write the notes for me", "text", "generation").to_dict()) == {
        "step", "description", "modality", "operation", "depends_on"
    }  # fmt: skip


def test_hugginggpt_format(plan):
    assert plan.to_hugginggpt(TOOLS) == [
        {"task": "speech-recognition", "id": 0, "dep": [-1], "args": {"audio": "interview.wav"}},
        {"task": "summarization", "id": 1, "dep": [0], "args": {"text": "<GENERATED>-0"}},
        {"task": "image-generation", "id": 2, "dep": [-1], "args": {"prompt": "a watercolour microphone"}},
        # each dependency is an input: the step names none, so both come in as references
        {"task": "narrated-slideshow", "id": 3, "dep": [1, 2],
         "args": {"script": "<GENERATED>-1", "image": "<GENERATED>-2"}},
    ]  # fmt: skip
    # without the catalogue the keys are the resource types, as HuggingGPT writes them
    assert [t["args"] for t in plan.to_hugginggpt()] == [
        {"audio": "interview.wav"},
        {"text": "<GENERATED>-0"},
        {"text": "a watercolour microphone"},
        {"text": "<GENERATED>-1", "image": "<GENERATED>-2"},
    ]


def test_taskbench_format(plan):
    assert plan.to_taskbench() == {
        "task_steps": [
            "Step 1: Transcribe the interview recording.",
            "Step 2: Summarise the transcript in five lines.",
            "Step 3: Draw a cover picture for the episode.",
            "Step 4: Make a narrated video of the summary.",
        ],
        "task_nodes": [
            {"task": "speech-recognition", "arguments": ["interview.wav"]},
            {"task": "summarization", "arguments": ["<node-0>"]},
            {"task": "image-generation", "arguments": ["a watercolour microphone"]},
            {"task": "narrated-slideshow", "arguments": ["<node-1>", "<node-2>"]},
        ],
        "task_links": [
            {"source": "speech-recognition", "target": "summarization"},
            {"source": "summarization", "target": "narrated-slideshow"},
            {"source": "image-generation", "target": "narrated-slideshow"},
        ],
    }


MISTYPED = (
    "1. Draw a cover picture for the episode. [image generation; tool image-generation; args a microphone]\n"
    "2. Transcribe the interview recording. [audio analysis; tool speech-recognition; after 1]"
)  # an image cannot feed the speech recogniser


def test_links_fit_holds_types_arguments_and_the_after_list():
    """Hand-made lines: a link to a step whose tool cannot feed this one, an argument whose step
    is not in the closed `after` list, or one the increasing list has skipped, never fits."""
    from taskdecomp.constrain import links_fit, tool_of

    audio_then_image = ["speech-recognition", "image-generation"]  # text, then image
    head = "3. Make the narrated video. [video generation; tool narrated-slideshow"  # takes text + image
    for tail, fits in [
        ("", True),
        ("; after 1, 2]", True),
        ("; args <step-1>, <step-2>; after 1, 2]", True),
        ("; args <step-1>; after 1", True),  # the list is still open
        ("; args <step-1>]", False),  # an argument's step missing from the closed tag
        ("; args <step-2>; after 1]", False),
        ("; args <step-1>; after 2", False),  # 1 was skipped: it cannot come back
    ]:
        assert links_fit(head + tail, audio_then_image, TOOLS) is fits, tail
    # an image feeds no speech recogniser: neither as a link nor as an argument
    transcribe = "2. Transcribe the recording. [audio analysis; tool speech-recognition"
    assert not links_fit(transcribe + "; after 1", ["image-generation"], TOOLS)
    assert not links_fit(transcribe + "; args <step-1", ["image-generation"], TOOLS)
    assert links_fit(transcribe + "; args interview.wav]", ["image-generation"], TOOLS)
    assert links_fit(
        "2. Transcribe the recording. [audio analysis; tool speech-rec", ["image-generation"], TOOLS
    )
    assert (
        tool_of(PLAN_TEXT.splitlines()[1]) == "summarization"
        and tool_of("1. Write it. [text generation]") is None
    )


def _allowed_after(gc, tok, text: str, proc) -> list[str]:
    """The texts of the tokens `proc` allows after the model wrote `text` (fed one token a step)."""
    import torch

    ids = tok(text, add_special_tokens=False)["input_ids"]
    scores = None
    for k in range(len(ids) + 1):
        scores = proc(torch.tensor([[tok.eos_token_id] + ids[:k]]), torch.zeros((1, gc.vocab_size)))
    return [tok.decode([t]) for t in (scores[0] > float("-inf")).nonzero().flatten().tolist()]


def test_the_processor_holds_links_the_grammar_does_not_type(tokenizer):
    """With the two-level grammar (what the default catalogue's last step gets), only the
    catalogue-aware processor stops a mistyped `after` and an argument left out of `after`."""
    gc = matcher_for(tokenizer, tool_plan_grammar(TOOLS, typed_steps=0))
    first = MISTYPED.splitlines()[0] + "\n"
    tag = first + "2. Transcribe the interview recording. [audio analysis; tool speech-recognition;"
    free = _allowed_after(gc, tokenizer, tag, gc.processor(1))
    held = _allowed_after(gc, tokenizer, tag, gc.processor(1, catalogue=TOOLS))
    # no earlier step feeds the speech recogniser: no "after" may begin; "args" still may
    assert any("after" in t for t in free) and not any("after" in t for t in held)
    assert any("args" in t for t in held)
    forced = gc.processor(1, catalogue=TOOLS)  # a step forced past that point can only be abandoned
    assert "1" in _allowed_after(gc, tokenizer, tag + " after ", gc.processor(1))
    assert _allowed_after(gc, tokenizer, tag + " after ", forced) == [
        tokenizer.eos_token
    ] and forced.abandoned == [True]
    # an argument that names step 1 must be followed by "; after 1", not by the closing bracket
    summary = PLAN_TEXT.splitlines()[0] + "\n2. Summarise the transcript in five lines. "
    summary += "[text transformation; tool summarization; args <step-1>"
    free = _allowed_after(gc, tokenizer, summary, gc.processor(1))
    held = _allowed_after(gc, tokenizer, summary, gc.processor(1, catalogue=TOOLS))
    assert any("]" in t for t in free) and not any("]" in t for t in held) and any(";" in t for t in held)


def test_acceptance_checks_the_catalogue():
    assert answer_errors(MISTYPED, TASK, catalogue=TOOLS)[1]
    assert answer_errors(PLAN_TEXT.replace("tool summarization", "tool summariser"), TASK, catalogue=TOOLS)[1]
    wrong_tag = PLAN_TEXT.replace(
        "[text transformation; tool summarization", "[text generation; tool summarization"
    )
    assert answer_errors(wrong_tag, TASK, catalogue=TOOLS)[1]
    untooled = "1. Transcribe the interview recording. [audio analysis]"
    assert any("names no tool" in e for e in answer_errors(untooled, TASK, catalogue=TOOLS)[1])
    assert answer_errors(untooled, TASK)[1] == []  # without a catalogue it is a plain valid plan


# --- grammar ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from taskdecomp.models import load_tokenizer, resolve_base

    return load_tokenizer(resolve_base("smollm2-135m-gguf"))


def matcher_for(tokenizer, grammar: str):
    from taskdecomp.constrain import GrammarConstraint

    gc = GrammarConstraint(tokenizer, grammar, eos_ids=[tokenizer.eos_token_id], vocab_size=len(tokenizer))
    return gc


def accepts(gc, tokenizer, text: str) -> bool:
    matcher = gc.matcher()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return matcher.try_consume_tokens(ids) == len(ids) and matcher.is_accepting()


@pytest.mark.parametrize("typed", [TOOL_PLAN_MAX_STEPS, 0])
def test_the_tool_grammar_holds_ids_tags_and_earlier_steps(tokenizer, typed):
    gc = matcher_for(tokenizer, tool_plan_grammar(TOOLS, typed_steps=typed))
    assert accepts(gc, tokenizer, PLAN_TEXT)
    assert accepts(gc, tokenizer, PLAN_TEXT.split("\n")[0])  # one step
    for bad in (
        PLAN_TEXT.replace("tool summarization", "tool summariser"),  # not in the catalogue
        PLAN_TEXT.replace("[text transformation; tool summarization", "[text generation; tool summarization"),
        PLAN_TEXT.replace("after 2, 3]", "after 3, 2]"),
        PLAN_TEXT.replace("after 1]", "after 2]"),  # not an earlier step
        "1. Transcribe the interview recording. [audio analysis]",  # no tool
        PLAN_TEXT.replace("args interview.wav", "args a.wav, b.wav"),  # speech-recognition takes one
    ):
        assert not accepts(gc, tokenizer, bad), bad


def test_only_the_typed_grammar_refuses_an_incompatible_after(tokenizer):
    fine = MISTYPED.replace("[audio analysis; tool speech-recognition; after 1]",
                            "[video generation; tool narrated-slideshow; after 1]")  # fmt: skip
    mistyped_ref = MISTYPED.replace("; after 1]", "; args <step-1>]")
    typed = matcher_for(tokenizer, tool_plan_grammar(TOOLS, typed_steps=TOOL_PLAN_MAX_STEPS))
    assert accepts(typed, tokenizer, fine)
    assert not accepts(typed, tokenizer, MISTYPED) and not accepts(typed, tokenizer, mistyped_ref)
    two_level = matcher_for(tokenizer, tool_plan_grammar(TOOLS, typed_steps=0))
    assert accepts(two_level, tokenizer, MISTYPED)  # the two-level grammar leaves types to the validator
    assert answer_errors(MISTYPED, TASK, catalogue=TOOLS)[1]  # ... which refuses the plan


def test_the_default_catalogue_gets_the_typed_grammar_and_a_prompt_listing_it(tokenizer):
    cat = default_catalogue()
    grammar = tool_plan_grammar(cat)
    # (46 tools making 5 output sets when this was written: typed links in 5 of the 6 steps)
    typed = typed_steps_for(cat)
    assert (
        typed >= 4 and f"typed links in steps 1-{typed} of {TOOL_PLAN_MAX_STEPS}" in grammar.splitlines()[0]
    )
    assert typed_steps_for(TOOLS) == TOOL_PLAN_MAX_STEPS
    gc = matcher_for(tokenizer, grammar)
    tool = cat.tools[0]
    line = f"1. Do the first thing of the plan. [{tool.modality} {tool.operation}; tool {tool.id}]"
    assert accepts(gc, tokenizer, line)
    prompt = system_prompt(cat)
    # every tool is listed under its tag: "- [image analysis] image-captioning, ..."
    listed = {
        line.split("] ")[0][3:]: line.split("] ")[1].split(", ")
        for line in prompt.splitlines()
        if line.startswith("- [")
    }
    assert all(t.id in listed[f"{t.modality} {t.operation}"] for t in cat.tools)


def test_json_schema_variant_carries_the_tools():
    schema = plan_json_schema(catalogue=TOOLS)
    branches = schema["properties"]["steps"]["items"]["anyOf"]
    assert [b["properties"]["tool"]["const"] for b in branches] == [t.id for t in TOOLS.tools]
    assert branches[0]["properties"]["modality"] == {"const": "audio"}
    answer = json.dumps(
        {"steps": [{"description": "Transcribe the interview recording.", "modality": "audio",
                    "operation": "analysis", "tool": "speech-recognition", "args": ["interview.wav"],
                    "after": []}]}
    )  # fmt: skip
    assert plan_text_from_json(answer) == PLAN_TEXT.split("\n")[0]


# --- decompose --tools ---------------------------------------------------------------------


def write_catalogue(tmp_path) -> str:
    path = tmp_path / "tiny.yaml"
    tools = "".join(
        textwrap.dedent(
            f"""\
            - id: {t.id}
              description: "{t.description}"
              inputs: [{", ".join(t.inputs)}]
              outputs: [{", ".join(t.outputs)}]
              modality: {t.modality}
              operation: {t.operation}
              args: [{", ".join(t.args)}]
            """
        )
        for t in TOOLS.tools
    )
    path.write_text("name: tiny\nversion: 1\ntools:\n" + textwrap.indent(tools, "  "))
    assert load_catalogue(path).ids == tuple(t.id for t in TOOLS.tools)
    return str(path)


def test_decompose_tools_with_the_heuristic_end_to_end(tmp_path, capsys):
    cat = write_catalogue(tmp_path)
    task = "Transcribe interview.wav and draw a cover image for the episode"
    assert decompose_main([task, "--planner", "heuristic", "--tools", cat]) == 0
    out = capsys.readouterr().out
    assert "tool speech-recognition; args interview.wav]" in out and "tool image-generation" in out
    assert decompose_main([task, "--planner", "heuristic", "--tools", cat, "--format", "hugginggpt"]) == 0
    tasks = json.loads(capsys.readouterr().out)
    assert tasks[0] == {
        "task": "speech-recognition",
        "id": 0,
        "dep": [-1],
        "args": {"audio": "interview.wav"},
    }
    assert tasks[1]["task"] == "image-generation" and tasks[1]["dep"] == [0]
    assert decompose_main([task, "--planner", "heuristic", "--tools", cat, "--format", "taskbench"]) == 0
    bench = json.loads(capsys.readouterr().out)
    assert bench["task_links"] == [{"source": "speech-recognition", "target": "image-generation"}]
    assert decompose_main([task, "--planner", "heuristic", "--tools", cat, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert [st["tool"] for st in row["subtasks"]] == ["speech-recognition", "image-generation"]
    plan = heuristic_plan(task, catalogue=default_catalogue())  # the default catalogue too
    assert all(s.tool for s in plan.steps)


def test_decompose_tools_bad_catalogue_is_one_line(tmp_path, capsys):
    bad = tmp_path / "dup.yaml"
    bad.write_text(
        "name: x\nversion: 1\ntools:\n"
        + "".join(
            "  - {id: ocr, description: Read text, inputs: [image], outputs: [text], modality: image, "
            "operation: analysis}\n"
            for _ in range(2)
        )
    )
    for path in (str(bad), str(tmp_path / "missing.yaml")):
        assert (
            decompose_main(
                ["Read the receipt in photo.jpg for me", "--planner", "heuristic", "--tools", path]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and "CATALOGUE" in err, err


@pytest.mark.slow
@pytest.mark.parametrize("typed", [None, 0])
def test_a_constrained_tiny_model_decode_is_a_tool_plan(typed):
    from taskdecomp.generation import generate_batched
    from taskdecomp.models import load_base_model
    from taskdecomp.promptfmt import render_prompt
    from taskdecomp.validation import tool_errors

    model, tok = load_base_model("smollm2-135m-gguf", quantize_4bit=False)
    model.eval()
    tasks = ["Transcribe interview.wav and summarise it", "Draw a cover picture and make a narrated video"]
    prompts = [render_prompt(tok, t, catalogue=TOOLS) for t in tasks]
    grammar = tool_plan_grammar(TOOLS, max_steps=2, desc_max_chars=24, typed_steps=typed)
    # 2 lines of at most 24 + ~70 tag characters fit in 200 tokens: no answer is cut off; with
    # the two-level grammar (typed=0) the processor types the links from the catalogue
    answers = generate_batched(
        model, tok, prompts, max_new_tokens=200, batch_size=2, grammar=grammar, catalogue=TOOLS
    )
    for task, answer in zip(tasks, answers, strict=True):
        row, _ = answer_errors(answer, task, catalogue=TOOLS)
        assert row["subtasks"] and all(st.get("tool") in TOOLS.ids for st in row["subtasks"]), answer
        assert tool_errors(row, TOOLS) == [], answer  # ids, tags and typed links: all from the grammar


class ToolPlanServer:
    """A loopback OpenAI-compatible server that answers PLAN_TEXT when the request carries the
    catalogue's grammar (or its JSON Schema), and prose otherwise."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def _json(self, data) -> None:
                body = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._json({"object": "list", "data": [{"id": "task-adapter", "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
                if schema == plan_json_schema(catalogue=TOOLS):
                    steps = [
                        {"description": s.description, "modality": s.modality, "operation": s.operation,
                         "tool": s.tool, "args": list(s.args), "after": list(s.depends_on)}
                        for s in Plan.from_row(answer_errors(PLAN_TEXT, TASK)[0]).steps
                    ]  # fmt: skip
                    content = json.dumps({"steps": steps})
                elif body.get("ebnf") == tool_plan_grammar(TOOLS):
                    content = PLAN_TEXT
                else:
                    content = "Sure! Here is what I would do."
                self._json(
                    {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": content}}]}
                )  # fmt: skip

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_remote_servers_get_the_catalogues_grammar_and_prompt(tmp_path, capsys):
    cat = write_catalogue(tmp_path)
    srv = ToolPlanServer()
    try:
        for constraint in ("grammar", "json"):
            args = [TASK, "--base-url", srv.url, "--tools", cat, "--constraint", constraint, "--json"]
            assert decompose_main(args) == 0, capsys.readouterr().err
            row = json.loads(capsys.readouterr().out)
            assert [st["tool"] for st in row["subtasks"]] == [t.id for t in TOOLS.tools]
        system = srv.bodies[0]["messages"][0]["content"]
        assert system == system_prompt(TOOLS) and "narrated-slideshow" in system
    finally:
        srv.close()
