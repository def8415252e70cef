"""Plans drawn as Mermaid flowcharts: `Plan.to_mermaid`, `decompose --format mermaid`, the
example plans of the dataset card and of the model card (evaluate-adapter's valid plans).

The diagrams' syntax is checked here line by line; tests/test_app_browser.py renders them with
mermaid.js in a real browser (Gradio's Markdown), hostile descriptions included."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import ModelCard

from taskdecomp.evaluation.evaluate_adapter import valid_example_plans
from taskdecomp.loader_script.dataset_card import write_dataset_card
from taskdecomp.mermaid import (
    MODALITY_COLOURS,
    escape_label,
    escape_markdown,
    mermaid_block,
    pick_examples,
    shorten,
    subtasks_to_mermaid,
)
from taskdecomp.model_card import write_model_card
from taskdecomp.plan import Plan, Step
from taskdecomp.planner.cli import main as decompose_main

from dataset_fixture import build_fixture

NODE = re.compile(r'^    s(\d+)\["([^"\[\]]*)"\]:::mod_(\w+)$')
EDGE = re.compile(r"^    s(\d+) --> s(\d+)$")
CLASS = re.compile(r"^    classDef mod_(\w+) fill:#[0-9a-f]{6},stroke:#[0-9a-f]{6},color:#[0-9a-f]{6}$")
HOSTILE = 'Write a "quoted" [draft] {with} (parens) & <b>tags</b> #1 | pipe `tick` --> x :::y'


def parse(diagram: str) -> tuple[str, dict[int, tuple[str, str]], set[tuple[int, int]], set[str]]:
    """(direction, {step: (label, class)}, edges, classDefs); fails on any other line."""
    lines = diagram.rstrip("\n").split("\n")
    head = re.fullmatch(r"flowchart (TD|LR)", lines[0])
    assert head, lines[0]
    nodes, edges, classes = {}, set(), set()
    for line in lines[1:]:
        if m := NODE.match(line):
            nodes[int(m.group(1))] = (m.group(2), m.group(3))
        elif m := EDGE.match(line):
            edges.add((int(m.group(1)), int(m.group(2))))
        elif m := CLASS.match(line):
            classes.add(m.group(1))
        else:
            raise AssertionError(f"unexpected line {line!r}")
    return head.group(1), nodes, edges, classes


def dag_plan(
    description: str = "Write the episode script about urban bees", tool: str | None = "text-to-image"
) -> Plan:
    steps = (
        Step(1, description, "text", "generation"),
        Step(2, "Record the episode from the script", "audio", "generation", (1,)),
        Step(3, "Design a cover image for the episode", "image", "generation", (1, 2), tool=tool),
        Step(4, "Cut a video teaser from the cover", "video", "transformation", (3,)),
    )
    return Plan("Make a podcast about bees with a cover and a teaser", steps, structure="dag")


def test_one_node_per_step_edges_from_depends_on_and_a_colour_per_modality() -> None:
    direction, nodes, edges, classes = parse(dag_plan().to_mermaid())
    assert direction == "TD"
    assert set(nodes) == {1, 2, 3, 4}
    assert edges == {(1, 2), (1, 3), (2, 3), (3, 4)}
    assert {cls for _, cls in nodes.values()} == classes == {"text", "audio", "image", "video"}
    label, cls = nodes[3]
    assert label.split("<br/>") == [
        "3 · image generation",
        "Design a cover image for the episode",
        "tool: text-to-image",
    ]
    assert cls == "image"
    assert nodes[4][0].startswith("4 · video transformation<br/>")
    assert "tool:" not in nodes[1][0]  # only a step with a tool names one
    colours = dict(re.findall(r"classDef mod_(\w+) fill:(#[0-9a-f]{6})", dag_plan().to_mermaid()))
    assert colours == {m: MODALITY_COLOURS[m][0] for m in colours}
    assert len(set(colours.values())) == 4  # the modalities are told apart


def test_left_to_right_and_a_one_step_plan() -> None:
    plan = Plan("Transcribe meeting.mp3 into text", (Step(1, "Transcribe meeting.mp3", "audio", "analysis"),))
    direction, nodes, edges, classes = parse(plan.to_mermaid("LR"))
    assert (direction, set(nodes), edges, classes) == ("LR", {1}, set(), {"audio"})
    with pytest.raises(ValueError, match="direction"):
        plan.to_mermaid("BT")  # type: ignore[arg-type]


def test_descriptions_are_shortened_and_escaped() -> None:
    long = "Write " + " ".join(f"word{i}" for i in range(40))
    label = parse(dag_plan(long).to_mermaid())[1][1][0].split("<br/>")[1]
    assert len(label) <= 60 and label.endswith("…") and long.startswith(label[:-1])
    assert shorten("short text") == "short text"
    assert len(shorten("x" * 100, 20)) == 20  # no word boundary: a hard cut

    escaped = escape_label(HOSTILE)
    for ch in '"[]{}()<>|`':
        assert ch not in escaped, ch
    assert "#quot;quoted#quot;" in escaped and "#91;draft#93;" in escaped and "#lt;b#gt;" in escaped
    assert "#35;1" in escaped and "#amp;" in escaped  # '#' and '&' cannot start an entity by accident
    # entity codes decode back to the text (what Mermaid shows)
    decoded = re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), escaped)
    decoded = decoded.replace("#quot;", '"').replace("#amp;", "&").replace("#lt;", "<").replace("#gt;", ">")
    assert decoded == HOSTILE
    parse(dag_plan(HOSTILE).to_mermaid(label_chars=200))  # still one node line per step


def test_rows_draw_like_plans() -> None:
    plan = dag_plan()
    row = plan.to_row()
    assert subtasks_to_mermaid(row["subtasks"]) == plan.to_mermaid()
    assert mermaid_block("flowchart TD\n") == "```mermaid\nflowchart TD\n```"


def test_pick_examples_prefers_distinct_kinds_in_order() -> None:
    items = ["chain1", "chain2", "parallel1", "chain3", "dag1", "dag2"]
    kind = lambda s: s.rstrip("0123456789")  # noqa: E731
    assert pick_examples(items, kind) == ["chain1", "parallel1", "dag1"]
    assert pick_examples(["chain1", "chain2", "chain3", "parallel1"], kind) == [
        "chain1",
        "parallel1",
        "chain2",
    ]
    assert pick_examples(["chain1"], kind) == ["chain1"]
    assert pick_examples([], kind) == []
    assert escape_markdown("a *b* [c](d) <e>\n f_g") == r"a \*b\* \[c\](d) \<e\> f\_g"


def test_decompose_format_mermaid(capsys) -> None:
    task = "Record a podcast about bees, transcribe it and draw a cover image"
    assert decompose_main([task, "--planner", "heuristic", "--format", "mermaid"]) == 0
    out = capsys.readouterr().out
    direction, nodes, edges, _ = parse(out)
    assert direction == "TD" and nodes and all(b == a + 1 for a, b in edges)  # the heuristic chains
    assert decompose_main([task, "--planner", "heuristic", "--format", "mermaid", "--direction", "LR"]) == 0
    assert capsys.readouterr().out.startswith("flowchart LR\n")


def test_decompose_format_mermaid_with_a_file_is_json_lines(tmp_path, capsys) -> None:
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("Transcribe interview.wav and write show notes\nhi\n")
    assert decompose_main(["--file", str(tasks), "--planner", "heuristic", "--format", "mermaid"]) == 1
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["instruction"].startswith("Transcribe") and parse(first["mermaid"])[1]
    assert "error" in second  # a too-short line gets its error line, as with every format


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--json", "--format", "mermaid"], "--json and --format mermaid exclude each other"),
        (["--direction", "LR"], "--direction only applies with --format mermaid"),
        (["--format", "svg"], "format"),
    ],
)
def test_decompose_mermaid_bad_flags_are_one_line(args, message) -> None:
    exe = Path(sys.executable).parent / "decompose"
    cmd = (
        [str(exe)]
        if exe.exists()
        else [sys.executable, "-c", "import sys; from taskdecomp.planner.cli import main; sys.exit(main())"]
    )
    proc = subprocess.run(
        [*cmd, "Record a podcast about bees and draw a cover", "--planner", "heuristic", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("decompose: error: ") and message in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


# --- the dataset card -------------------------------------------------------------------------


def _write_train(out: Path, rows: list[dict]) -> None:
    (out / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out / "data" / "train-00000-of-00001.parquet")


def test_dataset_card_draws_three_rows_of_different_structures(tmp_path) -> None:
    out = tmp_path / "ds"
    splits = build_fixture(out, n=40)  # chain and parallel rows
    dag = dag_plan(tool=None).to_row()
    dag["instruction"] = "Make a *podcast* about [bees] with a cover and a teaser"
    train = sorted((out / "data").glob("train-*.parquet"))
    rows = pq.read_table(train[0]).to_pylist()
    table = pa.Table.from_pylist([*rows, {k: dag.get(k) for k in rows[0]}], schema=pq.read_schema(train[0]))
    pq.write_table(table, train[0])

    text = write_dataset_card(out).read_text()
    section = text[text.index("### Example plans") : text.index("## Coverage")]
    blocks = re.findall(r"```mermaid\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    structures = re.findall(r"^\*\*(chain|parallel|dag)\*\* \(", section, re.M)
    assert structures == ["chain", "parallel", "dag"]  # one of each, in the schema's order
    first_chain = next(r for r in rows if r["structure"] == "chain")  # the first of each, in shard order
    first_parallel = next(r for r in rows if r["structure"] == "parallel")
    assert blocks[0] == subtasks_to_mermaid(first_chain["subtasks"])
    assert blocks[1] == subtasks_to_mermaid(first_parallel["subtasks"])
    assert blocks[2] == subtasks_to_mermaid(dag["subtasks"])
    assert r"Make a \*podcast\* about \[bees\]" in section  # the request is shown as written
    for block in blocks:
        parse(block)
    assert write_dataset_card(out).read_text() == text  # deterministic
    assert splits  # the fixture's splits are what the card counts elsewhere (test_dataset_card.py)


def test_dataset_card_with_one_structure_still_shows_three_rows(tmp_path) -> None:
    out = tmp_path / "ds"
    build_fixture(out, n=40)
    chains = [
        r
        for r in pq.read_table(sorted((out / "data").glob("train-*.parquet"))[0]).to_pylist()
        if r["structure"] == "chain"
    ]
    _write_train(out, chains)
    text = write_dataset_card(out).read_text()
    section = text[text.index("### Example plans") : text.index("## Coverage")]
    assert re.findall(r"^\*\*(\w+)\*\* \(", section, re.M) == ["chain"] * 3
    assert section.count("```mermaid") == 3


# --- the model card ---------------------------------------------------------------------------


def _adapter_folder(tmp_path: Path) -> Path:
    out = tmp_path / "adapter"
    out.mkdir()
    config = {"base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "dataset": "alice/task-decomposition",
              "lora_r": 16, "recipe": "smollm2-135m-cpu"}  # fmt: skip
    (out / "train_config.yaml").write_text(yaml.safe_dump(config))
    return out


CHAIN = "1. Write a script about urban bees for the episode. [text generation]\n2. Record the podcast episode from the script. [audio generation; after 1]"
PARALLEL = "1. Write a script about urban bees for the episode. [text generation]\n2. Design a cover image showing a city beehive. [image generation]"
DAG = (
    "1. Write a script about urban bees for the episode. [text generation]\n"
    "2. Record the podcast episode from the script. [audio generation; after 1]\n"
    "3. Design a cover image that quotes the episode. [image generation; after 1, 2]"
)


def test_valid_example_plans_are_the_first_valid_ones_of_different_structures() -> None:
    rows = [
        {"instruction": f"Make a podcast episode about urban bees, number {i}", "input": ""} for i in range(6)
    ]
    answers = [
        "Sure! I would first think.",
        CHAIN,
        CHAIN,
        "1. Do it. [text generation; after 3]",
        PARALLEL,
        DAG,
    ]
    plans = valid_example_plans(rows, answers)
    assert [p.structure for p in plans] == ["chain", "parallel", "dag"]
    assert [p.instruction for p in plans] == [rows[i]["instruction"] for i in (1, 4, 5)]
    assert valid_example_plans(rows[:3], answers[:3]) == valid_example_plans(rows[:2], answers[:2]) + [
        valid_example_plans(rows[2:3], answers[2:3])[0]
    ]  # fewer structures: the next valid ones fill up
    assert valid_example_plans(rows[:1], answers[:1]) == []


def test_model_card_draws_the_example_plans(tmp_path) -> None:
    out = _adapter_folder(tmp_path)
    assert "### Example plans" not in write_model_card(out).read_text()
    rows = [{"instruction": "Make a *bee* podcast episode with a cover and a teaser", "input": ""}] * 3
    plans = valid_example_plans(rows, [CHAIN, PARALLEL, DAG])
    results = {
        "base": {"rougeL": 0.1},
        "adapter": {"rougeL": 0.2},
        "dataset": "alice/task-decomposition",
        "split": "test",
    }
    card = ModelCard.load(write_model_card(out, results, examples=plans))
    text = card.text
    section = text[text.index("### Example plans") : text.index("## Usage")]
    blocks = re.findall(r"```mermaid\n(.*?)```", section, re.S)
    assert blocks == [p.to_mermaid() for p in plans]
    assert re.findall(r"^\*\*(\w+)\*\* \(", section, re.M) == ["chain", "parallel", "dag"]
    assert r"Make a \*bee\* podcast" in section
    assert card.data.eval_results  # the model-index is still filled
    for block in blocks:
        parse(block)
