"""Tool-graph rows: typed links, shapes and sizes, quotas and tool coverage, references only to
earlier steps, determinism, impossible cells, the validator, the LLM prompt/reply, and
`build-dataset --tools` end to end (Parquet carries tool/args, the card has the tool section),
bad input through the CLI."""

from __future__ import annotations

import json
import random

import datasets
import pytest

from taskdecomp.catalogue import Catalogue, Tool, default_catalogue
from taskdecomp.dataset_builder.cli import main
from taskdecomp.dataset_builder.openai_backend import InvalidReply
from taskdecomp.dataset_builder.toolgraph import (
    TOOL_CELLS,
    ToolGraph,
    compose_row,
    find_graph,
    impossible_cells,
    parse_tool_cell,
    parse_tool_reply,
    plan_tool_quotas,
    sample_graph,
    tool_coverage,
    tool_messages,
    tool_response_format,
    tool_rows,
    validate_tool_row,
)
from taskdecomp.loader_script.features import read_rows
from taskdecomp.schema import STEP_REF, make_row, parse_output, render_output
from taskdecomp.validation import tool_errors, validate_row

CAT = default_catalogue()


def _tool(tid: str, inputs: str, outputs: str) -> Tool:
    return Tool(
        tid,
        f"The {tid} tool does its job",
        tuple(inputs.split()),
        tuple(outputs.split()),
        "text",
        "generation",
    )


def _rows(cell, n=10, seed=3, catalogue=CAT):
    return [make_row(c, "offline") for c in tool_rows(catalogue, cell, n, seed)]


@pytest.mark.parametrize("cell", TOOL_CELLS, ids=[c.label for c in TOOL_CELLS])
def test_sampled_graphs_are_typed_and_of_their_cell(cell):
    rng = random.Random(11)
    for _ in range(25):
        g = sample_graph(CAT, cell, rng)
        assert g is not None and g.size == cell.size and g.shape == cell.shape
        assert len(set(g.tools)) == g.size  # distinct tools
        for i, deps in enumerate(g.deps, start=1):
            assert all(1 <= d < i for d in deps)  # only earlier steps
        for src, dst in g.links():
            assert CAT.feeds(src, dst), (src, dst)  # every link type-compatible


@pytest.mark.parametrize("cell", TOOL_CELLS, ids=[c.label for c in TOOL_CELLS])
def test_rows_validate_and_refer_only_to_earlier_dependencies(cell):
    rows = _rows(cell)
    assert len(rows) == 10 and len({r["instruction"] for r in rows}) == 10
    for row in rows:
        assert validate_tool_row(row, cell, CAT) == [], (row["output"], validate_tool_row(row, cell, CAT))
        text = row["instruction"].lower()
        for st in row["subtasks"]:
            assert st["tool"] in CAT and st["args"]
            for arg in st["args"]:
                ref = STEP_REF.match(arg)
                if ref:
                    assert int(ref.group(1)) in st["depends_on"] and int(ref.group(1)) < st["step"]
                else:
                    assert arg.lower() in text  # the request names every literal the steps use
            # each dependency is an input of the step
            assert {int(STEP_REF.match(a).group(1)) for a in st["args"] if STEP_REF.match(a)} == set(
                st["depends_on"]
            )
        # the rendered plan parses back to the same subtasks (tool and args segments)
        assert parse_output(row["output"]) == row["subtasks"]


def test_literals_are_files_urls_and_short_texts():
    args = [a for cell in TOOL_CELLS for r in _rows(cell, 6, 5) for st in r["subtasks"] for a in st["args"]]
    assert any(a.endswith((".wav", ".mp3", ".m4a")) for a in args)
    assert any(a.endswith((".jpg", ".png", ".webp")) for a in args)
    assert any(a.endswith((".mp4", ".mov")) for a in args)
    assert any(a.startswith("https://") for a in args)
    assert any(" " in a and not STEP_REF.match(a) for a in args)  # a prompt, a voice, a language phrase


def test_deterministic_per_seed():
    cell = parse_tool_cell("dag/5")
    assert tool_rows(CAT, cell, 6, 42) == tool_rows(CAT, cell, 6, 42)
    assert tool_rows(CAT, cell, 6, 42) != tool_rows(CAT, cell, 6, 43)


def test_quotas_over_structure_and_size():
    q = plan_tool_quotas(103, None, 0)
    assert sum(q.values()) == 103 and set(q) == set(TOOL_CELLS)
    assert max(q.values()) - min(q.values()) <= 1
    bigger = plan_tool_quotas(160, None, 0)
    assert all(bigger[c] >= q[c] for c in q)  # a larger n only extends
    weighted = plan_tool_quotas(100, {"*": 0, "dag": 1, "chain/2": 2}, 0)
    assert {c.label for c, n in weighted.items() if n} == {"dag/3", "dag/4", "dag/5", "dag/6", "chain/2"}
    assert abs(weighted[parse_tool_cell("chain/2")] - 2 * weighted[parse_tool_cell("dag/3")]) <= 1
    assert sum(plan_tool_quotas(50, None, 0, exclude=[parse_tool_cell("dag/6")]).values()) == 50


def test_a_build_sized_sample_covers_every_tool():
    quotas = plan_tool_quotas(100, None, 0)
    rows = [r for i, (cell, n) in enumerate(quotas.items()) for r in _rows(cell, n, seed=i)]
    cov = tool_coverage(rows, CAT.ids)
    assert list(cov)[: len(CAT.ids)] == list(CAT.ids)
    assert all(cov[t] >= 1 for t in CAT.ids), [t for t in CAT.ids if not cov[t]]


def test_impossible_cells_are_named():
    # text -> image -> audio -> video, each typed link one way only: chains up to 3, no DAG
    line = Catalogue("line", (_tool("draw", "text", "image"), _tool("sonify", "image", "audio"),
                              _tool("film", "audio", "video")))  # fmt: skip
    bad = {c.label for c in impossible_cells(line)}
    assert bad == {"chain/4", "chain/5", "chain/6", "dag/3", "dag/4", "dag/5", "dag/6"}
    assert find_graph(line, parse_tool_cell("chain/3")) == ToolGraph(
        ("draw", "sonify", "film"), ((), (1,), (2,))
    )
    # a join makes a DAG of 3 possible: two tools feeding a third
    join = Catalogue("join", (_tool("a", "text", "image"), _tool("b", "text", "audio"),
                              _tool("c", "image audio", "video")))  # fmt: skip
    assert "dag/3" not in {c.label for c in impossible_cells(join)}
    g = find_graph(join, parse_tool_cell("dag/3"))
    assert g is not None and g.shape == "dag" and g.tools[-1] == "c" and g.deps[-1] == (1, 2)
    # no links at all: only single tools
    lone = Catalogue("lone", (_tool("a", "text", "image"), _tool("b", "audio", "video")))
    assert {c.label for c in TOOL_CELLS} - {c.label for c in impossible_cells(lone)} == {"single/1"}
    assert impossible_cells(CAT) == []


def test_tool_errors_and_the_validator_reject_what_is_wrong():
    cell = parse_tool_cell("chain/3")
    row = _rows(cell, 1)[0]
    assert tool_errors(row, CAT) == [] and validate_row(row, catalogue=CAT) == []

    def broken(edit):
        r = json.loads(json.dumps(row))
        edit(r["subtasks"])
        return make_row(r, "offline")

    unknown = broken(lambda sts: sts[0].update(tool="teleportation"))
    assert any(e.startswith("tool-unknown") for e in tool_errors(unknown, CAT))
    retagged = broken(
        lambda sts: sts[0].update(modality="video" if sts[0]["modality"] != "video" else "text")
    )
    assert any(e.startswith("tool-tag") for e in tool_errors(retagged, CAT))
    # a tool whose inputs no earlier tool of the chain gives (text -> image generation after an image)
    chain = {"instruction": "Draw a cat picture and then generate another one from it please", "subtasks": [
        {"step": 1, "description": "Draw a cat picture", "modality": "image", "operation": "generation",
         "depends_on": [], "tool": "image-generation", "args": ["a cat"]},
        {"step": 2, "description": "Draw another picture from it", "modality": "image", "operation": "generation",
         "depends_on": [1], "tool": "image-generation", "args": ["<step-1>"]}]}  # fmt: skip
    assert any(e.startswith("tool-types") for e in tool_errors(make_row(chain, "offline"), CAT))
    far = broken(lambda sts: sts[2].update(args=["<step-1>"]))  # step 3 depends on 2 only
    assert any(e.startswith("tool-args") for e in tool_errors(far, CAT))
    later = broken(lambda sts: sts[0].update(args=["<step-3>"]))
    assert any("no earlier step" in e for e in tool_errors(later, CAT))
    literal = broken(lambda sts: sts[0].update(args=["never-mentioned.wav"]))
    assert any("not named in the request" in e for e in validate_tool_row(literal, cell, CAT))
    assert any(
        "structure-mismatch" in e or "too-few" in e
        for e in validate_tool_row(row, parse_tool_cell("dag/3"), CAT)
    )
    # rows without tools stay valid and render as before
    plain = make_row({"instruction": "Write a short poem about the sea for my class", "subtasks": [
        {"step": 1, "description": "Write a short poem about the sea", "modality": "text",
         "operation": "generation", "depends_on": []}]}, "offline")  # fmt: skip
    assert "tool" not in plain["subtasks"][0] and "tool" not in plain["output"]
    assert validate_row(plain, catalogue=CAT) == [] and tool_errors(plain, CAT) == []


def test_args_without_a_tool_or_with_commas_fail_the_schema():
    row = _rows(parse_tool_cell("single/1"), 1)[0]
    bad = json.loads(json.dumps(row))
    del bad["subtasks"][0]["tool"]
    bad["output"] = render_output(bad["subtasks"])
    assert any("tool" in e for e in validate_row(bad))
    comma = json.loads(json.dumps(row))
    comma["subtasks"][0]["args"] = ["a, b"]
    assert validate_row(comma)[0].startswith("schema")


def test_the_llm_prompt_carries_the_graph_and_the_reply_parses():
    rng = random.Random(2)
    graphs = [
        sample_graph(CAT, parse_tool_cell("dag/4"), rng),
        sample_graph(CAT, parse_tool_cell("chain/2"), rng),
    ]
    system, user = tool_messages(CAT, graphs, avoid=["An earlier request about the bakery"])
    assert system["role"] == "system" and user["role"] == "user"
    for g in graphs:
        for i, tid in enumerate(g.tools, start=1):
            assert f"{i}. {tid} [" in user["content"] and f"- {tid} [" in system["content"]
    assert "after " in user["content"] and "earlier request about the bakery" in user["content"]
    fmt = tool_response_format(CAT)["json_schema"]["schema"]
    step = fmt["properties"]["rows"]["items"]["properties"]["subtasks"]["items"]
    assert step["properties"]["tool"]["enum"] == list(CAT.ids) and "args" in step["required"]
    # a reply in the asked-for shape goes through the OpenAI backend's parser and validates
    cands = [compose_row(g, CAT, rng) for g in graphs]
    parsed = parse_tool_reply(json.dumps({"rows": cands}))
    rows = [make_row(c, "openai:test") for c in parsed]
    cells = [parse_tool_cell("dag/4"), parse_tool_cell("chain/2")]
    assert [validate_tool_row(r, c, CAT) for r, c in zip(rows, cells, strict=True)] == [[], []]
    with pytest.raises(InvalidReply):
        parse_tool_reply("not json at all")


# --- build-dataset --tools ---------------------------------------------------------------


def test_build_dataset_tools_end_to_end(tmp_path, capsys):
    out = tmp_path / "ds"
    assert (
        main(["--tools", "default", "--n", "40", "--out", str(out), "--backend", "offline", "--quiet"]) == 0
    )
    ds = datasets.load_dataset(str(out))
    rows = [r for split in ds.values() for r in split]
    assert len(rows) == 40
    step = ds["train"].features["subtasks"].feature
    assert step["tool"].dtype == "string" and step["args"].feature.dtype == "string"
    assert all(st["tool"] in CAT and st["args"] for r in rows for st in r["subtasks"])
    assert {len(r["subtasks"]) for r in rows} == {1, 2, 3, 4, 5, 6}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["catalogue"]["name"] == "multimedia" and stats["catalogue"]["digest"] == CAT.digest
    assert list(stats["tool_coverage"])[: len(CAT.ids)] == list(CAT.ids)
    assert sum(stats["tool_graphs"].values()) == 40 and len(stats["tool_graphs"]) == len(TOOL_CELLS)
    card = (out / "README.md").read_text()
    assert "### Tools" in card and "tools covered" in card and "`subtasks[].tool`" in card
    assert "tool-graph" in card and "| `dag/6` |" in card
    assert "| `image-captioning` |" in card or stats["tool_coverage"]["image-captioning"] == 0
    alpaca = datasets.load_dataset(str(out), "alpaca")
    assert "; tool " in alpaca["train"][0]["output"]
    assert all(validate_tool_row(r, None, CAT) == [] for r in read_rows(out)["train"])
    # the same command again replays the journal: the same rows
    before = sorted(r["id"] for r in rows)
    assert (
        main(["--tools", "default", "--n", "40", "--out", str(out), "--backend", "offline", "--quiet"]) == 0
    )
    assert sorted(r["id"] for split in datasets.load_dataset(str(out)).values() for r in split) == before
    # another catalogue is another build
    other = tmp_path / "cat.yaml"
    other.write_text(json.dumps(CAT.to_dict() | {"name": "renamed"}))
    assert (
        main(["--tools", str(other), "--n", "40", "--out", str(out), "--backend", "offline", "--quiet"]) == 2
    )
    assert "holds a different build" in capsys.readouterr().err


SMALL = (
    "name: small\nversion: 1\ntools:\n"
    "  - {id: ocr, description: Read text, inputs: [image], outputs: [text], modality: image, operation: analysis}\n"
    "  - {id: tts, description: Speak a text, inputs: [text], outputs: [audio], modality: audio, operation: transformation}\n"
)


def _bad(tmp_path, capsys, args):
    out = tmp_path / "o"
    assert main([*args, "--out", str(out), "--n", "20"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert not out.exists()  # nothing half-written
    return err


def test_build_dataset_tools_bad_input_is_one_line(tmp_path, capsys):
    small = tmp_path / "small.yaml"
    small.write_text(SMALL)
    err = _bad(tmp_path, capsys, ["--tools", str(small), "--backend", "offline"])
    assert "cannot be linked into chain/3, chain/4, chain/5, chain/6, dag/3, dag/4, dag/5, dag/6" in err
    assert "chain/2" not in err.split("(")[0]  # image -> text -> audio is a chain of two
    dup = tmp_path / "dup.yaml"
    dup.write_text(SMALL + SMALL.split("tools:\n")[1])
    assert "tool 'ocr' is listed twice" in _bad(
        tmp_path, capsys, ["--tools", str(dup), "--backend", "offline"]
    )
    assert "no such file" in _bad(
        tmp_path, capsys, ["--tools", str(tmp_path / "none.yaml"), "--backend", "offline"]
    )
    quotas = tmp_path / "q.yaml"
    quotas.write_text("weights: {audio+text/chain: 2}\n")
    err = _bad(tmp_path, capsys, ["--tools", "default", "--quotas", str(quotas), "--backend", "offline"])
    assert "unknown weights key 'audio+text/chain' for --tools" in err
    # the impossible cells weighted out: the small catalogue builds its single tools and chains of two
    quotas.write_text("weights: {'*': 0, single: 1, chain/2: 1}\n")
    out = tmp_path / "ok"
    assert (
        main(
            [
                "--tools",
                str(small),
                "--quotas",
                str(quotas),
                "--n",
                "4",
                "--out",
                str(out),
                "--backend",
                "offline",
                "--quiet",
            ]
        )
        == 0
    )
    rows = read_rows(out)
    assert sum(len(v) for v in rows.values()) == 4


def test_a_mix_of_rows_with_and_without_tools_round_trips(tmp_path):
    from taskdecomp.dataset_builder.output import write_splits
    from taskdecomp.loader_script.features import FEATURES, TOOL_FEATURES, shard_features

    tooled = _rows(parse_tool_cell("chain/2"), 2)
    tooled[1]["subtasks"][1].pop("args")  # a tool step without arguments
    tooled[1]["output"] = render_output(tooled[1]["subtasks"])
    plain = make_row({"instruction": "Write a short poem about the sea for my class", "subtasks": [
        {"step": 1, "description": "Write a short poem about the sea", "modality": "text",
         "operation": "generation", "depends_on": []}]}, "offline")  # fmt: skip
    write_splits({"train": [*tooled, plain]}, tmp_path / "mix")
    assert shard_features(tmp_path / "mix") is TOOL_FEATURES
    loaded = {r["id"]: r for r in datasets.load_dataset(str(tmp_path / "mix"))["train"]}
    assert loaded[plain["id"]]["subtasks"][0] | {} == plain["subtasks"][0] | {"tool": None, "args": []}
    assert loaded[tooled[1]["id"]]["subtasks"][1]["args"] == []
    assert sorted(read_rows(tmp_path / "mix")["train"], key=lambda r: r["id"]) == sorted(
        [*tooled, plain], key=lambda r: r["id"]
    )  # read back exactly as written
    # a dataset without tools keeps its columns as they were
    write_splits({"train": [plain]}, tmp_path / "plain")
    assert shard_features(tmp_path / "plain") is FEATURES
    assert "tool" not in datasets.load_dataset(str(tmp_path / "plain"))["train"][0]["subtasks"][0]


def test_build_dataset_tools_with_an_llm_sends_the_graphs_and_resumes(tmp_path, monkeypatch, capsys):
    """The LLM backend of --tools: each request's prompt holds its sampled graphs (the same
    on a re-run), the rows come back with their tools and pass the tool validator, and a
    re-run of the finished build sends nothing."""
    from taskdecomp.dataset_builder.toolgraph import TOOL_PROMPT_VERSION

    from fake_openai import FakeOpenAI

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-key-0123456789")
    out = tmp_path / "llm"
    with FakeOpenAI() as fake:
        argv = ["--tools", "default", "--n", "24", "--rows-per-call", "3", "--out", str(out)]
        assert main([*argv, "--base-url", fake.base_url, "--quiet"]) == 0
        sent = fake.stats["chat_requests"]
        prompts = ["\n".join(m["content"] for m in b["messages"]) for b in fake.bodies]
        assert sent >= 8 and all("Row 1:" in p and "Row 3:" in p for p in prompts)
        schema = fake.bodies[0]["response_format"]["json_schema"]["schema"]
        step = schema["properties"]["rows"]["items"]["properties"]["subtasks"]["items"]
        assert "tool" in step["required"] and "image-captioning" in step["properties"]["tool"]["enum"]
        assert main([*argv, "--base-url", fake.base_url, "--quiet"]) == 0
        assert fake.stats["chat_requests"] == sent  # resumed from the journal: nothing sent twice
    rows = [r for split in read_rows(out).values() for r in split]
    assert len(rows) == 24
    assert all(st["tool"] in CAT for r in rows for st in r["subtasks"])
    stats = json.loads((out / "stats.json").read_text())
    assert stats["prompt_version"] == TOOL_PROMPT_VERSION and stats["source"].startswith("openai:")
