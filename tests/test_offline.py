"""The built-in offline backend: valid, cell-exact, deterministic, varied candidates, in every
request style (tests/test_styles.py checks what each style promises)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from taskdecomp.dataset_builder.backend import Backend, GenerationRequest
from taskdecomp.dataset_builder.offline import OfflineBackend, generate_rows, vocabulary
from taskdecomp.schema import FILE_OR_URL, classify_structure, make_row, schema_errors
from taskdecomp.taxonomy import CELLS, MAX_STEPS, QUOTA_CELLS, Cell
from taskdecomp.validation import validate_row

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from offline_backend import distinct_n, offline_sample  # noqa: E402

# Words that name image / audio / video work (the lexicon's nouns and then some), matched as
# word prefixes, which is stricter than the lexicon: "photography" counts as image here.
_WORDS = {
    "image": "image photo picture illustrat poster infographic logo painting drawing diagram chart graph visual "
    "artwork thumbnail flyer sketch storyboard banner portrait mockup mock-up meme emoji brochure cartoon icon "
    "slide map comic collage wallpaper sticker screenshot postcard render mood_board moodboard cover_art",
    "audio": "audio podcast music song jingle voice speech sound narrat recording melody audiobook radio tune "
    "playlist ringtone lullaby anthem symphony beat",
    "video": "video animat footage clip film movie trailer vlog reel documentary screencast walkthrough "
    "livestream timelapse time-lapse montage webinar commercial virtual_tour",
}
_WORD_RE = {
    m: re.compile(r"\b(" + "|".join(w.replace("_", " ") for w in ws.split()) + ")")
    for m, ws in _WORDS.items()
}
# Plain-English words that name text work in an instruction.
_TEXT_RE = re.compile(
    r"\b(text|writ|article|post|blog|script|report|summar|transcri|caption|notes?\b|guide|newsletter|"
    r"letter|email|essay|brief|faq|copy|quiz|questionnaire|glossary|abstract|description|story|proposal|"
    r"plan\b|checklist|research|document|thread|listing|programme|handbook|reviews|responses|log\b|"
    r"fact|release|page|recap|quotes|sheet|digest|explanation|outline|synopsis|message|manual|instructions|"
    r"headline|slogan|tagline|poem|haiku|limerick|biograph|lyrics|chapter|paragraph|agenda|list)"
)


# A file name's extension names its modality too ("IMG_2231.jpg" is an image).
_EXT_RE = {
    "image": re.compile(r"\.(jpe?g|png|heic|tiff?|svg|webp|gif)\b"),
    "audio": re.compile(r"\.(wav|mp3|m4a|flac|ogg|aac)\b"),
    "video": re.compile(r"\.(mp4|mov|mkv|webm|avi)\b"),
    "text": re.compile(r"\.(txt|md|docx?|csv|xlsx|pdf)\b|https?://"),
}


def named(text: str) -> set[str]:
    low = text.lower()
    found = {m for m, rx in _WORD_RE.items() if rx.search(low)}
    found |= {m for m, rx in _EXT_RE.items() if rx.search(low)}
    if _TEXT_RE.search(low):
        found.add("text")
    return found


ROWS_PER_CELL = 12


@pytest.fixture(scope="module")
def rows_by_cell() -> dict[Cell, list[dict]]:
    return {cell: generate_rows(cell, ROWS_PER_CELL, seed=1000 + i) for i, cell in enumerate(QUOTA_CELLS)}


def test_every_candidate_is_a_valid_row_of_its_cell(rows_by_cell):
    for cell, cands in rows_by_cell.items():
        for cand in cands:
            row = make_row(cand, "offline")
            assert schema_errors(row) == [], (cell.key, row)
            subtasks = row["subtasks"]
            assert tuple(row["modalities"]) == cell.modalities, (cell.key, row["output"])
            assert cand["structure"] == cell.structure == classify_structure(subtasks), (
                cell.key,
                row["output"],
            )
            assert cell.min_steps <= len(subtasks) <= cell.max_steps <= MAX_STEPS
            assert [st["step"] for st in subtasks] == list(range(1, len(subtasks) + 1))
            for st in subtasks:
                assert all(1 <= d < st["step"] for d in st["depends_on"]), row["output"]
                assert 8 <= len(st["description"]) <= 400
            descs = [st["description"].lower() for st in subtasks]
            assert len(set(descs)) == len(descs), row["output"]
            assert 20 <= len(row["instruction"]) <= 1200
            assert not re.search(r"[{}]|\b(\w+) \1\b|\s[,.]", row["instruction"] + row["output"]), row
            if row["style"] != "terse":  # a terse command may be lower-case and unpunctuated
                assert row["instruction"][0].isupper() and row["instruction"][-1] in ".?!", row["instruction"]


def test_the_build_validator_accepts_every_candidate(rows_by_cell):
    for cell, cands in rows_by_cell.items():
        for cand in cands:
            assert validate_row(make_row(cand, "offline"), cell) == [], (cell.key, cand)


def test_instruction_names_exactly_the_cell_modalities(rows_by_cell):
    for cell, cands in rows_by_cell.items():
        for cand in cands:
            text = cand["instruction"]
            found = named(text)
            if cand["style"] == "implicit":  # leaves them to infer: never names a non-text one
                assert not found & (set(cell.modalities) - {"text"}), (cell.key, text)
            else:
                assert set(cell.modalities) <= found, (cell.key, cand["style"], text)
            # never mentions image/audio/video work the plan does not contain
            assert found - {"text"} <= set(cell.modalities), (cell.key, text)
            if cand["input"]:
                assert named(cand["input"]) - {"text"} <= set(cell.modalities), (cell.key, cand["input"])


def test_transformations_produce_their_step_modality(rows_by_cell):
    # a transformation changes modality (it reads a step of another modality than its own), or
    # edits the user's own file into a new version of it (a root step that names the file)
    seen = edits = 0
    for cands in rows_by_cell.values():
        for cand in cands:
            steps = cand["subtasks"]
            for st in steps:
                if st["operation"] != "transformation":
                    continue
                if not st["depends_on"]:
                    edits += 1
                    assert FILE_OR_URL.search(st["description"]), st
                    continue
                seen += 1
                assert any(steps[d - 1]["modality"] != st["modality"] for d in st["depends_on"]), st
    assert seen > 50 and edits > 10


def test_requests_return_n_rows(rows_by_cell):
    assert all(len(cands) == ROWS_PER_CELL for cands in rows_by_cell.values())


def test_some_inputs_are_filled_and_operations_vary(rows_by_cell):
    cands = [c for cs in rows_by_cell.values() for c in cs]
    with_input = sum(1 for c in cands if c["input"])
    assert 0.05 * len(cands) < with_input < 0.6 * len(cands)
    ops = {st["operation"] for c in cands for st in c["subtasks"]}
    assert ops == {"generation", "analysis", "transformation"}


def test_deterministic_per_seed_and_seeds_differ():
    cell = Cell(("audio", "text"), "dag")
    assert generate_rows(cell, 5, 7) == generate_rows(cell, 5, 7)
    other = generate_rows(cell, 5, 8)
    assert {c["instruction"] for c in other}.isdisjoint(c["instruction"] for c in generate_rows(cell, 5, 7))
    # a request is a pure function of its seed: the first rows of a larger request are the same
    assert generate_rows(cell, 8, 7)[:5] == generate_rows(cell, 5, 7)


def test_same_rows_in_a_fresh_process_with_another_hash_seed():
    code = (
        "import json; from taskdecomp.dataset_builder.offline import generate_rows; "
        "from taskdecomp.taxonomy import CELLS; "
        "print(json.dumps([generate_rows(c, 2, i) for i, c in enumerate(CELLS[:9])]))"
    )
    outs = [
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": h},
            check=True,
            capture_output=True,
        ).stdout
        for h in ("1", "2")
    ]
    assert outs[0] == outs[1]
    assert json.loads(outs[0]) == [generate_rows(c, 2, i) for i, c in enumerate(CELLS[:9])]


def test_every_style_and_single_step_cells_appear(rows_by_cell):
    from taskdecomp.taxonomy import SINGLE_CELLS, STYLES

    assert {c["style"] for cands in rows_by_cell.values() for c in cands} == set(STYLES)
    for cell in SINGLE_CELLS:
        assert all(len(c["subtasks"]) == 1 for c in rows_by_cell[cell])
    assert all(len(c["subtasks"]) >= 2 for cell in CELLS for c in rows_by_cell[cell])


def test_no_repeated_instruction_inside_a_request():
    cands = generate_rows(Cell(("text",), "chain"), 60, 3)
    assert len({c["instruction"].lower() for c in cands}) == 60


def test_backend_protocol_and_async_generate():
    backend = OfflineBackend(seed=3)
    assert isinstance(backend, Backend)
    assert backend.source == "offline"
    cell = Cell(("image", "video"), "parallel")
    req = GenerationRequest(request_id="r1", cell=cell, n_rows=4, seed=42)

    async def run():
        try:
            return await backend.generate(req)
        finally:
            await backend.aclose()

    result = asyncio.run(run())
    assert result.request_id == "r1"
    assert result.candidates == generate_rows(cell, 4, 42)
    assert result.usage.total_tokens == 0 and result.cost_usd == 0.0


def test_vocabulary_stays_inside_its_modality():
    """Topic words never name a modality; a modality's artefacts name their own modality and
    no other (so a row only ever names the modalities of its cell)."""
    v = vocabulary()
    for domain in v["domains"]:
        for phrase in domain["orgs"] + domain["subjects"] + domain["audiences"]:
            assert named(phrase) - {"text"} == set(), phrase
    for phrase in v["purposes"] + v["constraints"] + v["places"] + v["determiners"]:
        assert named(phrase) - {"text"} == set(), phrase
    for m in ("image", "audio", "video"):
        spec = v[m]
        for noun, _ in spec["artefacts"]:
            assert m in named(noun), (m, noun)
        for phrase in spec["derived"] + [x["ref"] for x in spec["materials"]]:
            assert m in named(phrase), (m, phrase)
        others = {"image", "audio", "video"} - {m}
        for phrase in (
            [n for n, _ in spec["artefacts"]]
            + spec["derived"]
            + [p for pair in spec["styles"] for p in pair]
            + spec["criteria"]
            + spec["adjectives"]
            + [x["ref"] for x in spec["materials"]]
            + [x["input"] for x in spec["materials"]]
        ):
            assert not named(phrase) & others, (m, phrase)
    for noun, _ in v["text"]["artefacts"]:  # a text artefact names text too (so the test below can see it)
        assert "text" in named(noun), noun
    for (src, dst), spec in v["transforms"].items():
        for noun in spec["artefacts"]:
            assert dst in named(noun), (src, dst, noun)
    # the user's files name their modality and only it; what a first step does with one too
    for m in ("text", "image", "audio", "video"):
        for kind in v["files"][m]:
            for ext in kind["ext"]:
                assert named(f"{kind['noun']} x.{ext}") - {"text"} <= {m}, (m, kind)
        for step, clauses in v["file_steps"][m]:
            for phrase in (step, *clauses):
                assert named(phrase) - {"text"} <= {m} - {"text"}, (m, phrase)
    # the implicit style's cues name no modality at all, nor do the styles' frames
    cues = v["cues"]
    for m in ("text", "image", "audio", "video"):
        spec = cues[m]
        for phrase in spec["forms"] + spec.get("when", []) + spec.get("where", []):
            assert named(phrase) - {"text"} == set(), (m, phrase)
    frames = (
        v["have"]["verb"] + v["have"]["origin"] + v["ask_first"] + v["need_first"]["forms"] + v["event"]
        + v["question"]["asks"] + v["question"]["frames"] + v["question"]["context"] + v["question"]["things"]
        + v["brief"]["context"] + v["brief"]["ask"] + v["brief"]["checked"] + v["brief"]["me"]
        + v["implicit"]["frames"] + v["implicit"]["need"] + v["implicit"]["checked"] + cues["who"] + cues["heads"]
        + v["specifics"]["venues"] + v["terse"]["forms"]
    )  # fmt: skip
    for phrase in frames:
        assert named(phrase) - {"text"} == set(), phrase


@pytest.mark.slow
def test_variety_matches_the_original_rows():
    """Behaviour check of the issue's target: distinct-3 of 1,000 instructions >= 0.70 (the
    original rows: 0.648), over every style and the single-step rows."""
    ins = [r["instruction"] for r in offline_sample(1000, seed=0)]
    assert distinct_n(ins, 3) >= 0.70
    assert distinct_n(ins, 2) >= 0.30
    assert len({t.lower() for t in ins}) == len(ins)
