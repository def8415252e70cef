"""`import-dataset`: the original 1,000 rows end to end, fixes, rejects, duplicates, bad input.

The reference import runs once per module (in-process through the console script's `main`),
then each test checks one property of its output folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard
from rouge_score import rouge_scorer

from taskdecomp.dataset_builder.import_cli import main
from taskdecomp.dataset_builder.importer import discover, repair_output
from taskdecomp.rouge import rouge_l, rouge_tokens
from taskdecomp.schema import row_id, schema_errors

from conftest import REFERENCE_DATA, reference_rows, subprocess_env

STATS_KEYS = {
    "n_rows", "splits", "coverage", "rejects", "duplicates", "usage", "requests", "cost_usd", "wall_time_s",
    "backend", "model", "source", "seed", "prompt_version", "taxonomy", "dedup", "config",
}  # fmt: skip


@pytest.fixture(scope="module")
def imported(tmp_path_factory, reference_data_dir):
    out = tmp_path_factory.mktemp("imported") / "ds"
    rc = main([str(reference_data_dir), "--out", str(out), "--quiet"])
    assert rc == 0
    stats = json.loads((out / "stats.json").read_text())
    report = json.loads((out / "import_report.json").read_text())
    return out, stats, report


def _all_rows(out: Path) -> list[dict]:
    ds = datasets.load_dataset(str(out))
    return [r for split in ds.values() for r in split]


def test_reference_rows_load_with_datasets(imported):
    out, stats, report = imported
    ds = datasets.load_dataset(str(out))
    assert set(ds) == {"train", "test"}
    assert {k: len(v) for k, v in ds.items()} == stats["splits"]
    rows = [r for split in ds.values() for r in split]
    assert len(rows) == stats["n_rows"] == report["n_rows"]
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert r["source"] == "seed" and r["input"] == ""
        assert schema_errors(r) == []
        # chained steps, typed by the lexicon, rendered output carries the tags
        assert all(st["depends_on"] == ([st["step"] - 1] if st["step"] > 1 else []) for st in r["subtasks"])
        assert r["structure"] == "chain"
        assert r["output"].startswith("1. ") and "[" in r["output"]


def test_every_input_row_is_accounted_for(imported):
    out, stats, report = imported
    n_dups = stats["duplicates"]["exact"] + stats["duplicates"]["near"]
    assert report["n_records"] == 1000
    assert stats["n_rows"] + len(report["rejected"]) + n_dups == 1000
    assert sum(stats["rejects"].values()) == len(report["rejected"])
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == len(report["rejected"])
    for r in rejects:
        assert r["reasons"] and Path(r["file"]).name.startswith("task_decomposition_dataset_")
        assert isinstance(r["index"], int)
    assert set(stats) >= STATS_KEYS
    assert stats["source"] == stats["backend"] == "seed"
    assert stats["requests"] == 0 and stats["cost_usd"] == 0 and stats["model"] is None
    assert sum(sum(c.values()) for c in stats["coverage"].values()) == stats["n_rows"]


def test_fixes_are_reported(imported):
    _, _, report = imported
    # no row of the original has `input`, 20 use `1)` numbering, none carries type tags
    assert report["fixed"]["input_filled"] == 1000
    assert report["fixed"]["paren_numbering_normalised"] == 20
    assert report["fixed"]["tags_added"] == 1000
    assert len(report["files"]) == 50 and sum(f["records"] for f in report["files"]) == 1000


def test_paren_numbered_rows_parse(imported):
    out, _, report = imported
    originals = [r for r in reference_rows() if r["output"].lstrip().startswith("1)")]
    assert len(originals) == 20
    kept = {r["id"]: r for r in _all_rows(out)}
    dropped = {d["row"]["id"] for d in report["duplicates"]} | {
        row_id(r["instruction"]) for r in report["rejected"]
    }
    for orig in originals:
        rid = row_id(orig["instruction"])
        n_markers = orig["output"].count(")")
        if rid in kept:
            subtasks = kept[rid]["subtasks"]
            assert 2 <= len(subtasks) <= n_markers
            assert ")" not in kept[rid]["output"].split(" ", 1)[0]
            # the first step's text is the original's, without its marker
            assert orig["output"].split("2)")[0].removeprefix("1)").strip() == subtasks[0]["description"]
        else:
            assert rid in dropped


def test_near_duplicates_match_pairwise_rouge(imported):
    """The dedup index finds what exact pairwise ROUGE-L finds (about 46 near-duplicate rows).

    The index is MinHash-LSH, probabilistic by design (its target: recall >= 0.95), so a kept
    pair may rarely remain; every dropped row must be a true duplicate."""
    out, stats, report = imported
    assert stats["duplicates"]["exact"] == 0  # the original has no verbatim repeats
    dropped = stats["duplicates"]["near"]
    assert 38 <= dropped <= 54
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    for d in report["duplicates"]:
        assert d["kind"] == "near" and "file" in d["of"] and "index" in d["of"]
        score = scorer.score(d["of"]["instruction"], d["row"]["instruction"])["rougeL"].fmeasure
        assert score >= 0.7 and score == pytest.approx(d["score"], abs=1e-3)
    # rows kept although an earlier kept row is a near-duplicate: exhaustive over ~0.5M pairs
    toks = [rouge_tokens(r["instruction"]) for r in _all_rows(out)]
    missed = sum(any(rouge_l(toks[i], toks[j]) >= 0.7 for i in range(j)) for j in range(1, len(toks)))
    recall = dropped / (dropped + missed)
    print(f"near-duplicates dropped {dropped}, missed {missed}, recall {recall:.3f}")
    assert recall >= 0.9  # measured 0.956 (43 dropped, 2 kept pairs) with the default LSH bands


def test_card_is_written(imported):
    out, stats, _ = imported

    card = DatasetCard.load(out / "README.md")  # parses the YAML header (validate() needs the Hub)
    assert card.data.pretty_name and card.data.configs
    assert str(stats["n_rows"]) in card.text


# --- small hand-made inputs ------------------------------------------------------------------


def _write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


ALPACA = [
    {
        "instruction": "  Write a short poem about autumn   and record it as a spoken audio clip.",
        "input": "Tone: gentle.",
        "output": "0. Write a short poem about autumn leaves. 1. Record a spoken reading of the poem.",
    },
    {
        "instruction": "Photograph a city street at night and write a caption for the photo.",
        "input": "",
        "output": "- Photograph a busy city street at night.\n- Write a caption describing the photo.",
    },
    {
        "instruction": "Just do one thing with a single numbered step here.",
        "output": "1. Only one.",  # a one-step plan is valid, a two-word step is not
    },
    {
        "instruction": "Plan an absurdly long project with far too many steps in it.",
        "output": " ".join(f"{i}. Do the step number {i} of the plan." for i in range(1, 10)),
    },
]
JSONL = [
    # an exact duplicate of the first Alpaca row (after normalisation)
    {
        "instruction": "write a short poem about autumn and record it as a spoken audio clip!",
        "output": "1. Write a short poem about autumn leaves. 2. Record a spoken reading of the poem.",
    },
    {
        "instruction": "Create an animated video about recycling and transcribe its narration.",
        "output": "1) Create a short animated video about recycling.\n2) Transcribe the narration of the video.",
    },
]


def test_mixed_inputs_fixes_rejects_duplicates(tmp_path, capsys):
    src = tmp_path / "in"
    _write(src / "part_10.jsonl", "\n".join(json.dumps(r) for r in JSONL) + "\n\n")
    _write(src / "part_2.json", ALPACA)
    _write(src / "notes.txt", "not data")
    assert [p.name for p in discover([str(src)])] == ["part_2.json", "part_10.jsonl"]
    out = tmp_path / "out"
    assert main([str(src), "--out", str(out), "--test-size", "0"]) == 0
    printed = capsys.readouterr().err
    assert "imported 3 of 6 rows" in printed and "rejected: 2 rows" in printed

    report = json.loads((out / "import_report.json").read_text())
    fixes = {(Path(f["file"]).name, f["index"]): set(f["fixes"]) for f in report["fixes"]}
    assert {"renumbered", "whitespace"} <= fixes[("part_2.json", 0)]
    assert "bullets_numbered" in fixes[("part_2.json", 1)]
    assert "paren_numbering_normalised" in fixes[("part_10.jsonl", 1)]
    assert "input_filled" in fixes[("part_10.jsonl", 1)] and "input_filled" not in fixes[("part_2.json", 0)]

    rejected = {(Path(r["file"]).name, r["index"]): r["reasons"] for r in report["rejected"]}
    assert set(rejected) == {("part_2.json", 2), ("part_2.json", 3)}  # a 2-word step, 9 steps
    assert all(rejected.values())
    assert len((out / "rejects.jsonl").read_text().splitlines()) == 2

    (dup,) = report["duplicates"]
    assert (
        dup["kind"] == "exact"
        and dup["row"]["index"] == 0
        and Path(dup["row"]["file"]).name == "part_10.jsonl"
    )
    assert dup["of"]["index"] == 0 and Path(dup["of"]["file"]).name == "part_2.json"

    rows = {r["instruction"]: r for r in _all_rows(out)}
    poem = rows["Write a short poem about autumn and record it as a spoken audio clip."]
    assert poem["input"] == "Tone: gentle."
    assert [(s["step"], s["modality"], s["operation"]) for s in poem["subtasks"]] == [
        (1, "text", "generation"),
        (2, "audio", "transformation"),
    ]
    video = rows["Create an animated video about recycling and transcribe its narration."]
    assert [(s["modality"], s["operation"]) for s in video["subtasks"]] == [
        ("video", "generation"),
        ("text", "transformation"),
    ]
    assert video["modalities"] == ["text", "video"]


def test_repair_output():
    assert repair_output("1) a b c.\n2) d e f.") == ("1. a b c.\n2. d e f.", ["paren_numbering_normalised"])
    assert repair_output("0. a b. 1. c d.") == ("1. a b. 2. c d.", ["renumbered"])
    assert repair_output("1. a b.\n1. c d.\n1. e f.")[1] == ["renumbered"]
    assert repair_output("1. a b. 2. c d.") == ("1. a b. 2. c d.", [])
    # numbers that are not a list are left alone (parse_output splits on the next expected one)
    assert repair_output("1. Buy 3. apples. 2. Eat.")[1] == []


# --- bad input: one line, exit 2, nothing written ----------------------------------------------


def _one_line_error(capsys, argv, *needles):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("import-dataset: error: ")
    for needle in needles:
        assert needle in err, err
    return err


def test_bad_inputs(tmp_path, capsys):
    out = tmp_path / "out"
    good = _write(tmp_path / "good.json", ALPACA[:2])

    _one_line_error(
        capsys, [str(tmp_path / "missing.json"), "--out", str(out)], "missing.json", "does not exist"
    )
    _one_line_error(capsys, ["--out", str(out)], "PATH")
    # empty input
    _one_line_error(capsys, [str(_write(tmp_path / "empty.json", "[]")), "--out", str(out)], "no rows")
    _one_line_error(capsys, [str(_write(tmp_path / "blank.jsonl", "\n")), "--out", str(out)], "no rows")
    (tmp_path / "nodata").mkdir()
    _one_line_error(capsys, [str(tmp_path / "nodata"), "--out", str(out)], "no .json")
    # corrupt JSON: file and position
    bad = _write(tmp_path / "bad.json", '[\n  {"instruction": "x",\n   "output": }\n]')
    _one_line_error(capsys, [str(good), str(bad), "--out", str(out)], "bad.json", "line 3, column")
    badl = _write(tmp_path / "bad.jsonl", json.dumps(ALPACA[0]) + "\n{oops\n")
    _one_line_error(capsys, [str(badl), "--out", str(out)], "bad.jsonl", "line 2, column 2")
    # schema mismatch: file, index, field
    _one_line_error(
        capsys,
        [str(_write(tmp_path / "noout.json", [ALPACA[0], {"instruction": "a task"}])), "--out", str(out)],
        "noout.json",
        "record 1",
        "'output'",
    )
    _one_line_error(
        capsys,
        [str(_write(tmp_path / "num.json", [{"instruction": 5, "output": "1. a 2. b"}])), "--out", str(out)],
        "num.json",
        "record 0",
        "'instruction' must be a string",
    )
    _one_line_error(
        capsys, [str(_write(tmp_path / "obj.json", {"rows": []})), "--out", str(out)], "JSON array"
    )
    _one_line_error(capsys, [str(_write(tmp_path / "strs.jsonl", '"a"\n')), "--out", str(out)], "record 0")
    # --out that is a file
    _one_line_error(capsys, [str(good), "--out", str(good)], "is a file")
    _one_line_error(capsys, [str(good), "--out", str(out), "--test-size", "1.5"], "--test-size")

    assert not out.exists()  # nothing half-written by any of the failures
    assert json.loads(good.read_text()) == ALPACA[:2]


def test_cli_subprocess_corrupt_json(tmp_path):
    bad = _write(tmp_path / "broken.json", '[{"instruction": "x", "output": "1. a"')
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "taskdecomp.dataset_builder.import_cli", str(bad), "--out", str(out)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "broken.json: corrupt JSON at line 1, column" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_reference_dir_constant_points_at_data():
    # guard for the fixture: the tests above read the folder the issue names
    assert REFERENCE_DATA.as_posix().endswith("shared/reference/decompose_net/data")
