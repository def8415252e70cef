"""validate_row: good rows pass, each defect is rejected with its own reason code."""

from __future__ import annotations

import copy

import pytest

from taskdecomp.schema import make_row, parse_output, render_output, row_id, schema_errors
from taskdecomp.taxonomy import Cell
from taskdecomp.validation import REASON_CODES, reason_code, validate_row

from conftest import reference_rows

GOOD = {
    "instruction": "Record a two-minute voice memo about the bakery's new sourdough class and turn it into a "
    "written announcement for the newsletter.",
    "input": "",
    "structure": "chain",
    "subtasks": [
        {
            "step": 1,
            "description": "Record a two-minute voice memo describing the sourdough class.",
            "modality": "audio",
            "operation": "generation",
            "depends_on": [],
        },
        {
            "step": 2,
            "description": "Transcribe the voice memo into plain text.",
            "modality": "text",
            "operation": "transformation",
            "depends_on": [1],
        },
        {
            "step": 3,
            "description": "Edit the transcript into a short newsletter announcement.",
            "modality": "text",
            "operation": "generation",
            "depends_on": [2],
        },
    ],
}
CELL = Cell(("audio", "text"), "chain")


def good_row() -> dict:
    return make_row(copy.deepcopy(GOOD), "offline")


def codes(row: dict, cell: Cell | None = None) -> set[str]:
    return {reason_code(r) for r in validate_row(row, cell)}


def rerender(row: dict) -> dict:
    """Keep output/modalities/id consistent after editing subtasks or instruction."""
    row["output"] = render_output(row["subtasks"])
    row["modalities"] = sorted({st["modality"] for st in row["subtasks"]})
    row["id"] = row_id(row["instruction"])
    return row


def test_good_row_passes_with_and_without_cell():
    assert validate_row(good_row()) == []
    assert validate_row(good_row(), CELL) == []


def test_parallel_and_dag_rows_pass():
    row = good_row()
    row["subtasks"][2]["depends_on"] = [1, 2]
    assert codes(row) == {"output-mismatch", "structure-mismatch"}
    rerender(row)
    row["structure"] = "dag"
    assert validate_row(row) == []


@pytest.mark.parametrize(
    "edit, code",
    [
        (lambda r: r["subtasks"][0].update(modality="smell"), "schema"),
        (lambda r: r.pop("source"), "schema"),
        (lambda r: r.update(subtasks=[]), "schema"),
        (lambda r: r.update(id="0" * 16), "id-mismatch"),
        (lambda r: r.update(output=r["output"] + "\n4. Extra."), "output-mismatch"),
        (lambda r: r.update(modalities=["audio", "image", "text"]), "modalities-field"),
        (lambda r: r.update(structure="parallel"), "structure-mismatch"),
    ],
)
def test_field_defects(edit, code):
    row = good_row()
    edit(row)
    got = validate_row(row)
    assert code in {reason_code(r) for r in got}, got


def test_a_one_step_row_is_valid_but_fills_no_multi_step_cell():
    row = good_row()
    row["subtasks"] = row["subtasks"][:1]
    rerender(row)
    row["modalities"] = [row["subtasks"][0]["modality"]]
    assert schema_errors(row) == [] and "too-few-steps" not in codes(row)
    assert "too-few-steps" in codes(row, Cell(tuple(row["modalities"]), "chain"))


def test_schema_reason_names_the_path():
    row = good_row()
    row["subtasks"][0]["modality"] = "smell"
    (reason,) = validate_row(row)
    assert reason.startswith("schema: subtasks/0/modality: 'smell' is not one of")


def test_step_numbering_and_dag_order():
    row = good_row()
    row["subtasks"][2]["step"] = 4
    assert "step-numbering" in codes(rerender(row))
    row = good_row()
    row["subtasks"][1]["depends_on"] = [3]
    got = validate_row(rerender(row))
    assert "dag-order: step 2 depends on later step 3" in got
    row["subtasks"][1]["depends_on"] = [2]
    assert "dag-order: step 2 depends on itself" in validate_row(rerender(row))


def test_cell_mismatches():
    assert codes(good_row(), Cell(("audio", "image", "text"), "chain")) == {"modalities-mismatch"}
    (reason,) = validate_row(good_row(), Cell(("text",), "chain"))
    assert reason == "modalities-mismatch: wanted text, got audio+text"
    assert codes(good_row(), Cell(("audio", "text"), "parallel")) == {"structure-mismatch"}
    # a dag cell needs at least 4 steps
    assert "too-few-steps" in codes(good_row(), Cell(("audio", "text"), "dag"))


@pytest.mark.parametrize(
    "text",
    [
        "Lorem ipsum dolor sit amet consectetur.",
        "TODO: describe this step properly.",
        "Write the <task> for the client.",
        "Step 2",
        "N/A",
        "Write the summary and then ...",
    ],
)
def test_boilerplate_descriptions(text):
    row = good_row()
    row["subtasks"][2]["description"] = text
    got = codes(rerender(row))
    assert "boilerplate" in got or "schema" in got, got


def test_step_repeating_the_instruction_is_boilerplate():
    row = good_row()
    row["subtasks"][2]["description"] = row["instruction"]
    assert "boilerplate" in codes(rerender(row))


def test_length_bounds():
    row = good_row()
    row["instruction"] = "Narrate a memo, transcribe it."  # 5 words: the floor
    assert validate_row(rerender(row)) == []
    row["instruction"] = "Narrate then transcribe it."  # passes the schema's 20 characters
    assert "too-short" in codes(rerender(row))
    row = good_row()
    row["subtasks"][2]["description"] = "Edit it."
    assert "too-short" in codes(rerender(row))
    row["subtasks"][2]["description"] = " ".join(["word"] * 61)
    assert "too-long" in codes(rerender(row))


def test_duplicate_and_near_duplicate_steps():
    row = good_row()
    row["subtasks"][2]["description"] = "Transcribe the voice memo into plain text!"
    assert "duplicate-steps" in codes(rerender(row))
    row["subtasks"][2]["description"] = "Transcribe a voice memo into the plain text."
    assert "duplicate-steps" in codes(rerender(row))
    # one different noun is a different step
    row["subtasks"][2]["description"] = "Transcribe the voice memo into a plain text poem."
    assert "duplicate-steps" not in codes(rerender(row))


def test_every_reason_has_a_known_code():
    row = good_row()
    row["subtasks"][1]["depends_on"] = [3]
    row["subtasks"][2]["description"] = "TODO"
    row["id"] = "f" * 16
    for reason in validate_row(rerender(row) | {"id": "f" * 16}, Cell(("image",), "dag")):
        assert reason_code(reason) in REASON_CODES, reason


def test_original_rows_are_valid(reference_data_dir):
    rows = reference_rows()
    bad = []
    for r in rows:
        row = make_row(
            {"instruction": r["instruction"], "input": "", "subtasks": parse_output(r["output"])}, "seed"
        )
        if reasons := validate_row(row):
            bad.append(reasons)
    assert len(bad) <= len(rows) // 100, bad[:5]


RU = {
    "instruction": "Запишите двухминутную голосовую заметку о новом курсе выпечки хлеба и превратите её в "
    "письменное объявление для рассылки.",
    "input": "",
    "structure": "chain",
    "subtasks": [
        {"step": 1, "description": "Запишите голосовую заметку о курсе выпечки.", "modality": "audio",
         "operation": "generation", "depends_on": []},
        {"step": 2, "description": "Расшифруйте заметку в обычный текст.", "modality": "text",
         "operation": "transformation", "depends_on": [1]},
        {"step": 3, "description": "Отредактируйте расшифровку в короткое объявление.", "modality": "text",
         "operation": "generation", "depends_on": [2]},
    ],
}  # fmt: skip


def test_non_latin_rows_keep_their_words():
    # normalise keeps letters of every script: such rows validate, and get ids of their own
    row = make_row(copy.deepcopy(RU), "openai:test")
    assert validate_row(row, CELL) == []
    other = copy.deepcopy(RU)
    other["instruction"] = other["instruction"].replace("хлеба", "пиццы")
    assert make_row(other, "openai:test")["id"] != row["id"] != row_id("")
    # accents still go, and ASCII text is unchanged
    assert row_id("Café — crème brûlée!") == row_id("cafe creme brulee")
