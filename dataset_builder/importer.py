"""`import-dataset`: existing Alpaca-style rows (the original project's 1,000 included) → our layout.

Data flow, one function each, in this order:

    discover(paths) → read_json_records(file) → check_record → repair_output → to_row
        → validate_row → Deduplicator → split_rows / write_splits → stats, report, rejects

Inputs are JSON arrays (the original project's `{instruction, output}` files and Alpaca's
`{instruction, input, output}`) or JSONL. Files whose *shape* is wrong (corrupt JSON, not a
list of objects, a missing or non-string field) stop the import with one line naming the file
and position: the user has to fix them. Rows whose *content* is wrong (one step, more than 8,
empty text, ...) are rejected with reasons in `rejects.jsonl` and `import_report.json`, never
silently dropped. What we can fix (numbering style, gaps in numbering, bullets, whitespace,
missing `input`) we fix and say so.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskdecomp.config import to_dict
from taskdecomp.dataset_builder.dedup import Deduplicator
from taskdecomp.dataset_builder.journal import JOURNAL_DIR
from taskdecomp.dataset_builder.output import check_out_location, write_dataset
from taskdecomp.errors import ConfigError, InputError
from taskdecomp.records import read_json_records
from taskdecomp.reporter import Reporter
from taskdecomp.schema import classify_structure, make_row, parse_output
from taskdecomp.stats import DatasetStats, Dedup, Taxonomy, coverage_table
from taskdecomp.taxonomy import CELLS, COMBINATIONS, MAX_STEPS, MIN_STEPS
from taskdecomp.validation import reason_code, validate_row

__all__ = [
    "ImportConfig",
    "ImportResult",
    "SOURCE",
    "discover",
    "repair_output",
    "import_dataset",
]

SOURCE = "seed"


@dataclass
class ImportConfig:
    paths: list[str] = field(
        default_factory=list, metadata={"help": "JSON/JSONL files or folders holding them"}
    )
    out: str = field(default="./task-decomposition", metadata={"help": "output folder"})
    test_size: float = field(default=0.1, metadata={"help": "share of rows in the test split"})
    seed: int = field(default=0, metadata={"help": "seed for the split"})
    dedup_threshold: float = field(
        default=0.7, metadata={"help": "ROUGE-L at or above which two instructions are duplicates"}
    )
    quiet: bool = field(default=False, metadata={"help": "print only warnings and errors"})

    def __post_init__(self) -> None:
        if not self.paths:
            raise ConfigError("give at least one PATH (a .json/.jsonl file or a folder of them)")
        if not 0 <= self.test_size < 1:
            raise ConfigError(f"--test-size must be in [0, 1), got {self.test_size}")
        if not 0 < self.dedup_threshold <= 1:
            raise ConfigError(f"--dedup-threshold must be in (0, 1], got {self.dedup_threshold}")


@dataclass
class ImportResult:
    rows: list[dict[str, Any]]
    splits: dict[str, int]
    stats: DatasetStats
    report: dict[str, Any]


# --- 1. files --------------------------------------------------------------------------------

_SUFFIXES = (".json", ".jsonl")


def _natural_key(path: Path) -> list[Any]:
    # dataset_2.json before dataset_10.json, as the original project numbered its files
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def discover(paths: list[str]) -> list[Path]:
    """Files to read, in order: each PATH as given; a folder's *.json/*.jsonl sorted naturally."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            inside = sorted(
                (f for f in p.iterdir() if f.is_file() and f.suffix in _SUFFIXES), key=_natural_key
            )
            if not inside:
                raise InputError(
                    f"{p} holds no .json or .jsonl files; point at the data files or their folder"
                )
            files.extend(inside)
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p} does not exist; give a .json/.jsonl file or a folder of them")
    return files


# --- 2. records ------------------------------------------------------------------------------


_FIELDS = ("instruction", "output")


def check_record(record: Any, path: Path, index: int) -> None:
    """Shape errors stop the import (InputError naming file, index and field)."""
    where = f"{path}: record {index}"
    if not isinstance(record, dict):
        raise InputError(
            f"{where} is a JSON {type(record).__name__}, expected an object with instruction/output"
        )
    for name in _FIELDS:
        if name not in record:
            raise InputError(f"{where} lacks '{name}'; every record needs instruction and output strings")
        if not isinstance(record[name], str):
            raise InputError(f"{where}: '{name}' must be a string, got {type(record[name]).__name__}")
    if record.get("input") is not None and not isinstance(record["input"], str):
        raise InputError(f"{where}: 'input' must be a string, got {type(record['input']).__name__}")


# --- 3. repairs ------------------------------------------------------------------------------

# A step marker: a number followed by '.' or ')' at a line start or after a sentence end.
_MARKER = re.compile(r"(?:^|(?<=[.!?;:])[ \t]+|(?<=\n))[ \t]*(\d{1,2})([.)])(?=\s)", re.MULTILINE)
_BULLET = re.compile(r"^[ \t]*[-*\u2022][ \t]+", re.MULTILINE)
_WS = re.compile(r"\s+")
_TAGGED = re.compile(
    r"\[(?:text|image|audio|video)\s+(?:generation|analysis|transformation)\b", re.IGNORECASE
)


def repair_output(output: str) -> tuple[str, list[str]]:
    """Normalise a numbered output before parsing; returns (text, fixes applied).

    `1)` becomes `1.`, numbering that does not run 1, 2, 3, ... (starts at 0, skips, repeats)
    is renumbered, and a bullet list becomes a numbered one."""
    fixes: list[str] = []
    marks = list(_MARKER.finditer(output))
    if not marks and len(_BULLET.findall(output)) >= 2:
        counter = iter(range(1, 100))
        output = _BULLET.sub(lambda m: f"{next(counter)}. ", output)
        fixes.append("bullets_numbered")
        marks = list(_MARKER.finditer(output))
    if len(marks) < 2:
        return output, fixes
    numbers = [int(m.group(1)) for m in marks]
    increasing = all(b > a for a, b in zip(numbers, numbers[1:], strict=False))
    repeated = len(set(numbers)) == 1  # Markdown's "1. 1. 1."
    # Only a sequence that is clearly a list is renumbered (0-based, gaps, repeats); any
    # other pattern is left to parse_output, which splits on the next expected number only.
    renumber = numbers != list(range(1, len(numbers) + 1)) and (increasing or repeated)
    paren = any(m.group(2) == ")" for m in marks)
    if renumber:
        fixes.append("renumbered")
    if paren:
        fixes.append("paren_numbering_normalised")
    if renumber or paren:
        pieces, last = [], 0
        for i, m in enumerate(marks, start=1):
            pieces.append(output[last : m.start(1)])
            pieces.append(f"{i if renumber else m.group(1)}.")
            last = m.end(2)
        pieces.append(output[last:])
        output = "".join(pieces)
    return output, fixes


def _clean(text: str) -> str:
    return _WS.sub(" ", text).strip()


def to_row(record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """One checked record → (row, fixes). The row may still be invalid: validation decides."""
    fixes: list[str] = []
    instruction = record["instruction"]
    if "input" not in record or record["input"] is None:
        fixes.append("input_filled")
    text_input = record.get("input") or ""
    if _clean(instruction) != instruction or _clean(text_input) != text_input:
        fixes.append("whitespace")
    output, out_fixes = repair_output(record["output"])
    fixes.extend(out_fixes)
    head = _MARKER.search(output)
    if head and output[: head.start()].strip():
        fixes.append("preamble_dropped")  # "Here are the steps: 1. ..." keeps only the steps
    subtasks = parse_output(output)
    if subtasks and len(_TAGGED.findall(output)) < len(subtasks):
        fixes.append("tags_added")  # typed from the text by the lexicon
    candidate = {
        "instruction": instruction,
        "input": text_input,
        "subtasks": subtasks,
        "structure": classify_structure(subtasks) if subtasks else "chain",
    }
    return make_row(candidate, SOURCE), fixes


# --- 5. the whole import ---------------------------------------------------------------------


def _check_out(out: Path) -> None:
    """Before reading anything: `out` must be a folder we can write, and not a build-dataset
    build (its journal would outlive the import and a later build-dataset would resume it)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder (it is created if missing)")
    check_out_location(out)
    if (out / JOURNAL_DIR).exists():
        raise InputError(
            f"--out {out} holds a build-dataset build (its journal is in {out / JOURNAL_DIR}); "
            f"importing there would overwrite it: choose another --out"
        )


def import_dataset(cfg: ImportConfig, reporter: Reporter | None = None) -> ImportResult:
    reporter = reporter or Reporter.silent()
    t0 = time.monotonic()
    out = Path(cfg.out)
    _check_out(out)
    files = discover(cfg.paths)

    # Read and shape-check everything before writing anything.
    records: list[tuple[Path, int, dict[str, Any]]] = []
    per_file: list[dict[str, Any]] = []
    ignored: Counter[str] = Counter()
    for path in files:
        recs = read_json_records(path)
        for i, rec in enumerate(recs):
            check_record(rec, path, i)
            ignored.update(k for k in rec if k not in ("instruction", "input", "output"))
            records.append((path, i, rec))
        per_file.append({"file": str(path), "records": len(recs)})
    if not records:
        raise InputError(f"no rows found in {', '.join(str(f) for f in files)}; nothing to import")

    accepted: list[dict[str, Any]] = []
    where: dict[str, dict[str, Any]] = {}
    fixed: Counter[str] = Counter()
    fixes_per_row: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    reject_codes: Counter[str] = Counter()
    duplicates: list[dict[str, Any]] = []
    dup_counts = {"exact": 0, "near": 0}
    dedup = Deduplicator(threshold=cfg.dedup_threshold)

    with reporter.progress(len(records), "importing") as bar:
        for path, index, rec in records:
            loc = {"file": str(path), "index": index}
            row, fixes = to_row(rec)
            fixed.update(fixes)
            if fixes:
                fixes_per_row.append({**loc, "id": row["id"], "fixes": fixes})
            reasons = validate_row(row)
            if reasons:
                reject_codes[reason_code(reasons[0])] += 1  # per row, as build-dataset counts
                rejected.append({**loc, "instruction": row["instruction"], "reasons": reasons, "row": row})
            else:
                dup = dedup.check_and_add(row["id"], row["instruction"])
                if dup is not None:
                    dup_counts[dup.kind] = dup_counts.get(dup.kind, 0) + 1
                    duplicates.append(
                        {
                            "kind": dup.kind,
                            "score": round(float(dup.score), 4),
                            "row": {**loc, "id": row["id"], "instruction": row["instruction"]},
                            "of": where.get(dup.of_id, {"id": dup.of_id}),
                        }
                    )
                else:
                    accepted.append(row)
                    where[row["id"]] = {**loc, "id": row["id"], "instruction": row["instruction"]}
            bar.update(1, rejects=len(rejected), duplicates=len(duplicates))

    if not accepted:
        raise InputError(
            f"none of the {len(records)} rows passed validation "
            f"({', '.join(f'{c}: {n}' for c, n in reject_codes.most_common())}); nothing written"
        )

    report = {
        "source": SOURCE,
        "files": per_file,
        "n_records": len(records),
        "n_rows": len(accepted),
        "fixed": dict(sorted(fixed.items())),
        "ignored_fields": dict(sorted(ignored.items())),
        "fixes": fixes_per_row,
        "rejected": [{k: v for k, v in r.items() if k != "row"} for r in rejected],
        "duplicates": duplicates,
    }
    template = DatasetStats(
        n_rows=0,
        splits={},
        coverage={},  # filled in by write_dataset from the rows
        rejects=dict(sorted(reject_codes.items())),
        rejected_rows=len(rejected),
        dedup=Dedup(cfg.dedup_threshold, exact=dup_counts["exact"], near=dup_counts["near"]),
        wall_time_s=round(time.monotonic() - t0, 3),
        backend=SOURCE,
        source=SOURCE,
        seed=cfg.seed,
        taxonomy=Taxonomy(
            combinations=len(COMBINATIONS), cells=len(CELLS), min_steps=MIN_STEPS, max_steps=MAX_STEPS
        ),
        config=to_dict(cfg),
    )
    _, stats = write_dataset(
        out,
        accepted,
        rejected,
        template,
        test_size=cfg.test_size,
        seed=cfg.seed,
        extra={"import_report.json": json.dumps(report, ensure_ascii=False, indent=2) + "\n"},
    )
    split_sizes = stats.splits
    reporter.result(_summary(out, report, stats))
    return ImportResult(accepted, split_sizes, stats, report)


def _summary(out: Path, report: dict[str, Any], stats: DatasetStats) -> str:
    lines = [
        f"imported {report['n_rows']} of {report['n_records']} rows from {len(report['files'])} file(s) "
        f"into {out} ({', '.join(f'{k} {v}' for k, v in stats.splits.items())})",
    ]
    if report["fixed"]:
        lines.append("fixed: " + ", ".join(f"{k} {v}" for k, v in report["fixed"].items()))
    if report["rejected"]:
        codes = ", ".join(f"{k} {v}" for k, v in stats.rejects.items())
        lines.append(f"rejected: {len(report['rejected'])} rows ({codes}); see {out / 'rejects.jsonl'}")
        for r in report["rejected"][:5]:
            why = "; ".join(r["reasons"])
            lines.append(f"  {r['file']}[{r['index']}]: {why}")
    d = stats.dedup
    if d.exact or d.near:
        lines.append(f"duplicates dropped: {d.exact} exact, {d.near} near")
    lines.append(f"report: {out / 'import_report.json'}")
    lines.append(coverage_table(stats.coverage))
    return "\n".join(lines)
