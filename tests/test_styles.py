"""Request styles, single-step rows and back-instruction (issue 12, part 2): every style is
built and does what it promises, quotas hold, 1-step plans are valid and take their share, the
request agrees with the plan, and the `style` column survives schema, Parquet and stats."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest

from taskdecomp.dataset_builder.backend import GenerationRequest
from taskdecomp.dataset_builder.cli import main
from taskdecomp.dataset_builder.offline import drafts, generate_rows
from taskdecomp.dataset_builder.openai_backend import (
    build_messages,
    parse_candidates,
    plan_skeletons,
    styled_candidate_schema,
)
from taskdecomp.dataset_builder.sampler import plan_quotas
from taskdecomp.schema import make_row, render_output, row_schema, schema_errors
from taskdecomp.stats import coverage, coverage_table, style_coverage
from taskdecomp.taxonomy import (
    CELLS,
    FILE_OR_URL,
    QUOTA_CELLS,
    SINGLE_CELLS,
    STYLES,
    Cell,
    assign_styles,
    infer_style,
)
from taskdecomp.validation import validate_row

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_offline import named  # noqa: E402


def sample(n: int, weights=None, seed: int = 0, per_call: int = 10):
    """(cell, draft) pairs as a build asks for them: quotas, requests of `per_call` rows."""
    out = []
    for ci, (cell, q) in enumerate(plan_quotas(n, weights, seed=seed).items()):
        for r, start in enumerate(range(0, q, per_call)):
            out += [(cell, d) for d in drafts(cell, min(per_call, q - start), seed * 7919 + ci * 101 + r)]
    return out


@pytest.fixture(scope="module")
def built():
    return sample(1200)


# --- the style axis ---------------------------------------------------------------------------
def test_schema_enum_is_the_taxonomy_styles():
    assert tuple(row_schema()["properties"]["style"]["enum"]) == STYLES
    assert "style" not in row_schema()["required"]  # optional for older rows, always written now


def test_every_style_present_and_flat_over_cells_and_styles(built):
    styles = Counter(d.style for _, d in built)
    assert set(styles) == set(STYLES)
    assert max(styles.values()) / min(styles.values()) < 1.2, styles
    cells = Counter(c.key for c, _ in built)
    multi = [cells[c.key] for c in CELLS]
    assert max(multi) - min(multi) <= 1
    # every row says which style it is in, and is a valid row of its cell
    for cell, d in built:
        row = make_row(d.candidate, "offline")
        assert row["style"] == d.style
        assert validate_row(row, cell) == [], (cell.key, d.style, row["instruction"])


def test_assign_styles_rotates_deterministically_and_follows_weights():
    assert assign_styles(12, 5) == assign_styles(12, 5)
    assert assign_styles(8, 5)[:5] == assign_styles(5, 5)  # a request's first rows are a prefix
    assert Counter(assign_styles(12, 3)) == Counter(dict.fromkeys(STYLES, 2))  # flat: a rotation
    picked = Counter(s for seed in range(200) for s in assign_styles(10, seed, {"question": 3, "terse": 0}))
    assert picked["terse"] == 0
    assert (
        0.41 < picked["question"] / sum(picked.values()) < 0.45
    )  # 3 of 3 + 4 x 1 (a missing style weighs 1)
    with pytest.raises(ValueError):
        assign_styles(3, 0, dict.fromkeys(STYLES, 0))


def test_style_quotas_are_respected_in_a_build(tmp_path):
    quotas = tmp_path / "q.yaml"
    quotas.write_text("styles:\n  question: 3\n  terse: 0\n  first-person: 2\n")
    out = tmp_path / "ds"
    assert main(["--n", "240", "--out", str(out), "--quotas", str(quotas), "--quiet"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    counts = stats["style_coverage"]
    assert counts["terse"] == 0 and sum(counts.values()) == 240
    share = {s: n / 240 for s, n in counts.items()}
    assert 0.33 < share["question"] < 0.42  # 3 / 8
    assert 0.21 < share["first-person"] < 0.29  # 2 / 8
    assert all(0.09 < share[s] < 0.16 for s in ("imperative", "brief", "implicit"))  # 1 / 8 each


def test_first_person_files_reappear_in_the_steps_that_use_them(built):
    seen = 0
    for _, d in built:
        if d.style != "first-person":
            continue
        seen += 1
        text = d.candidate["instruction"]
        assert d.files and all(f in text for f in d.files), text
        assert re.search(r"\b(I|I've|I'm|my|My|we|We|our|Our|me)\b", text), text
        for name in (m.group(0) for m in FILE_OR_URL.finditer(text)):
            users = [st for st in d.candidate["subtasks"] if name in st["description"]]
            assert users, (name, text)
            # the step on the file is a root that examines it, or edits it into a new version,
            # in the file's own modality
            assert users[0]["operation"] in ("analysis", "transformation") or users[0]["depends_on"], users[0]
    assert seen > 150


def test_a_first_person_row_whose_file_no_step_uses_is_rejected():
    row = make_row(
        {"instruction": "I have interview.wav and cover.jpg. Please transcribe the interview.",
         "style": "first-person",
         "subtasks": [{"step": 1, "description": "Transcribe interview.wav into a transcript.",
                       "modality": "audio", "operation": "analysis", "depends_on": []}]},
        "offline",
    )  # fmt: skip
    reasons = validate_row(row)
    assert [r.split(":")[0] for r in reasons] == ["files-unused"] and "cover.jpg" in reasons[0]


def test_questions_end_with_a_question_mark_and_terse_commands_are_short(built):
    for _, d in built:
        text = d.candidate["instruction"]
        if d.style == "question":
            assert text.endswith("?"), text
        if d.style == "terse":
            assert 5 <= len(text.split()) <= 20, text
        if d.style == "brief":
            assert len(re.findall(r"[.!?](?:\s|$)", text)) >= 2, text
    bad = make_row({"instruction": "Could you write a poem about the sea for my class.", "style": "question",
                    "subtasks": [{"description": "Write a short poem about the sea", "modality": "text",
                                  "operation": "generation"}]}, "offline")  # fmt: skip
    assert [r.split(":")[0] for r in validate_row(bad)] == ["style-mismatch"]


def test_implicit_requests_leave_the_modality_to_infer(built):
    seen = 0
    for cell, d in built:
        if d.style != "implicit":
            continue
        seen += 1
        text = d.candidate["instruction"]
        assert not named(text) & (set(cell.modalities) - {"text"}), (cell.key, text)
        for noun in d.deliverables:  # what a final step makes is not named either
            if cell.modalities != ("text",):
                assert noun.lower() not in text.lower(), (noun, text)
    assert seen > 150


def test_infer_style_reads_requests_written_without_one():
    assert infer_style("Can you tell me what is said in this clip and make a poster of it?") == "question"
    assert infer_style("I have interview.wav and cover.jpg from Saturday. Make a poster.") == "first-person"
    assert (
        infer_style("I found an article at https://example.org/a. Can you make a video of it?")
        == "first-person"
    )
    assert infer_style("transcribe meeting.mp3") == "terse"
    assert infer_style("bake sale: poster + 30s reel") == "terse"
    brief = (
        "We run a bakery in Leeds. We need a poster and a short video. Keep it under a minute. Due Friday."
    )
    assert infer_style(brief) == "brief"
    assert (
        infer_style("Write a blog post about urban beekeeping and record a podcast episode about it.")
        == "imperative"
    )
    assert make_row({"instruction": "transcribe meeting.mp3 now", "subtasks": []}, "seed")["style"] == "terse"


# --- single-step rows ---------------------------------------------------------------------
def test_one_step_plans_are_valid_for_single_step_cells_only():
    one = {"instruction": "Transcribe meeting.mp3 for the minutes, please.", "style": "imperative",
           "subtasks": [{"description": "Listen through meeting.mp3 and note the main points", "modality": "audio",
                         "operation": "analysis"}]}  # fmt: skip
    row = make_row(one, "offline")
    assert validate_row(row) == [] and validate_row(row, Cell.from_key("audio/single")) == []
    assert [r.split(":")[0] for r in validate_row(row, Cell.from_key("audio/chain"))] == ["too-few-steps"]
    two = make_row(generate_rows(Cell.from_key("audio/chain"), 1, 3)[0], "offline")
    assert "too-many-steps" in {r.split(":")[0] for r in validate_row(two, Cell.from_key("audio/single"))}


def test_single_step_share_is_15_percent_by_default_and_configurable(built, tmp_path):
    singles = sum(1 for _, d in built if len(d.candidate["subtasks"]) == 1)
    assert abs(singles / len(built) - 0.15) < 0.01
    assert all(len(d.candidate["subtasks"]) == 1 for c, d in built if c.single)
    assert {c.key for c, _ in built if c.single} == {c.key for c in SINGLE_CELLS}
    quotas = tmp_path / "q.yaml"
    quotas.write_text("single_step: 0.3\n")
    out = tmp_path / "ds"
    assert main(["--n", "200", "--out", str(out), "--quotas", str(quotas), "--quiet"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    single = sum(v.get("single", 0) for v in stats["coverage"].values())
    assert 0.27 <= single / 200 <= 0.33 and stats["taxonomy"]["min_steps"] == 1
    none = sample(300, {"single_step": 0})
    assert not any(len(d.candidate["subtasks"]) == 1 for _, d in none)


# --- back-instruction: the request asks for what the plan makes -------------------------------
def bare(text: str) -> str:
    return " ".join(w for w in text.lower().split() if w not in ("a", "an", "the"))


def test_every_final_artefact_is_asked_for_and_made(built):
    for cell, d in built:
        if d.style == "implicit":
            continue
        text = bare(d.candidate["instruction"])  # a terse command drops the articles
        steps = d.candidate["subtasks"]
        finals = [st for st in steps if not any(st["step"] in o["depends_on"] for o in steps)]
        assert len(finals) == len(d.deliverables)
        for noun, st in zip(d.deliverables, finals, strict=True):
            assert bare(noun) in text, (cell.key, d.style, noun, text)
            assert bare(noun) in bare(st["description"]), (noun, st["description"])


def test_a_review_is_revised_at_most_once(built):
    for _, d in built:
        steps = d.candidate["subtasks"]
        for st in steps:
            if st["operation"] != "analysis" or not st["depends_on"]:
                continue
            revisions = [
                o for o in steps
                if st["step"] in o["depends_on"] and o["operation"] == "generation"
                and re.match(r"(Revise|Polish|Correct|Produce a final version)", o["description"])
            ]  # fmt: skip
            assert len(revisions) <= 1, render_output(steps)


# --- the LLM prompts get the plan first --------------------------------------------------------
def test_llm_prompt_carries_each_rows_plan_and_style():
    cell = Cell.from_key("audio+text/dag")
    req = GenerationRequest("r", cell, 4, 11)
    system, user = (m["content"] for m in build_messages(req))
    assert "Back-instruction" in system and all(f"`{s}`" in system for s in STYLES)
    plans = plan_skeletons(req)
    assert [p["style"] for p in plans] == assign_styles(4, 11)
    for k, plan in enumerate(plans, start=1):
        assert f"Plan {k}, style `{plan['style']}`" in user
        for line in plan["steps"]:
            assert line in user and re.match(
                r"^\d+\. \[(text|audio) (generation|analysis|transformation)", line
            )
    # the same drafts the offline backend writes, without their words
    draft = drafts(cell, 4, 11)[0]
    assert len(plans[0]["steps"]) == len(draft.candidate["subtasks"])
    assert draft.candidate["subtasks"][0]["description"] not in user
    assert build_messages(req) == build_messages(req)  # a retry or resume sends the same prompt
    single = build_messages(GenerationRequest("s", Cell.from_key("video/single"), 2, 1))[1]["content"]
    assert "cell: `video/single`" in single and "Steps per plan: 1," in single


def test_llm_reply_schema_and_parser_keep_the_style():
    row = styled_candidate_schema()["properties"]["rows"]["items"]
    assert row["properties"]["style"]["enum"] == list(STYLES) and "style" in row["required"]
    reply = {"rows": [
        {"instruction": "Can you transcribe the interview and write a blog post from it?", "input": "",
         "structure": "chain", "style": "question", "subtasks": []},
        {"instruction": "Write a blog post about the fete.", "input": "", "structure": "chain", "style": "sonnet",
         "subtasks": [{"step": 1}]},
    ]}  # fmt: skip
    reply["rows"][0]["subtasks"] = [{"step": 1}]
    cands = parse_candidates(json.dumps(reply))
    assert (
        cands[0]["style"] == "question" and "style" not in cands[1]
    )  # an unknown style is read off the text


# --- the column: schema, features, Parquet, stats ----------------------------------------------
def test_style_column_round_trips_through_parquet_and_stats(tmp_path):
    from taskdecomp.dataset_builder.output import write_splits
    from taskdecomp.loader_script.features import FEATURES, read_rows, shard_features

    rows = [make_row(c, "offline") for c in generate_rows(Cell.from_key("image+text/chain"), 6, 2)]
    rows += [make_row(c, "offline") for c in generate_rows(Cell.from_key("text/single"), 3, 2)]
    assert all(schema_errors(r) == [] and r["style"] in STYLES for r in rows)
    write_splits({"train": rows}, tmp_path / "ds")
    assert shard_features(tmp_path / "ds") is FEATURES and "style" in FEATURES
    loaded = datasets.load_dataset(str(tmp_path / "ds"))["train"]
    assert sorted(loaded["style"]) == sorted(r["style"] for r in rows)
    assert sorted(read_rows(tmp_path / "ds")["train"], key=lambda r: r["id"]) == sorted(
        rows, key=lambda r: r["id"]
    )
    # a dataset written before styles existed still loads, without the column
    old = [{k: v for k, v in r.items() if k != "style"} for r in rows]
    write_splits({"train": old}, tmp_path / "old")
    assert "style" not in shard_features(tmp_path / "old")
    assert sorted(read_rows(tmp_path / "old")["train"], key=lambda r: r["id"]) == sorted(
        old, key=lambda r: r["id"]
    )
    # coverage: one-step plans in their own column, styles counted, every style listed
    cov = coverage(rows)
    assert cov["text"]["single"] == 3 and "single" not in cov["image+text"]
    assert "| 1 step |" in coverage_table(cov).splitlines()[0] and "| – |" in coverage_table(cov)
    assert sum(style_coverage(rows).values()) == 9 and set(style_coverage(rows)) == set(STYLES)


def test_built_dataset_has_the_style_column_and_coverage(tmp_path):
    out = tmp_path / "ds"
    assert main(["--n", "98", "--out", str(out), "--quiet"]) == 0
    rows = [r for split in datasets.load_dataset(str(out)).values() for r in split]
    assert {r["style"] for r in rows} == set(STYLES)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["style_coverage"] == dict(Counter(r["style"] for r in rows)) | {
        s: 0 for s in STYLES if s not in {r["style"] for r in rows}
    }
    card = (out / "README.md").read_text()
    assert "### Request styles" in card and "| `style` | string |" in card
    assert sum(1 for r in rows if len(r["subtasks"]) == 1) == sum(
        v.get("single", 0) for v in stats["coverage"].values()
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("styles: {haiku: 1}\n", "haiku"),
        ("styles: [question]\n", "styles"),
        ("single_step: 2\n", "single_step"),
        ("single_step: yes\n", "single_step"),
        ("styles: {question: -1}\n", "question"),
        ("styles: {'*': 0}\n", "every request style"),
    ],
)
def test_bad_style_quotas_are_one_line_exit_2(tmp_path, capsys, text, needle):
    quotas = tmp_path / "q.yaml"
    quotas.write_text(text)
    assert main(["--n", "10", "--out", str(tmp_path / "o"), "--quotas", str(quotas)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and needle in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_quota_cells_cover_the_taxonomy():
    assert set(plan_quotas(1000)) == set(QUOTA_CELLS)
