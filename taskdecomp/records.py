"""Reading a JSON array or JSON Lines file of records, with one-line errors that name the file
and the line: import-dataset reads the original project's files with it, evaluate-adapter its
`--dataset FILE.jsonl`. Shapes (which keys, which types) are the caller's to check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from taskdecomp.errors import InputError

__all__ = ["read_json_records"]


def _loads(text: str, path: Path, line: int | None = None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        hint = "fix the file and retry"
        if exc.msg == "Extra data" and path.suffix == ".json":
            hint = "one JSON value per line is JSON Lines: name the file .jsonl"
        at = (
            f"line {line}, column {exc.colno}"
            if line is not None
            else f"line {exc.lineno}, column {exc.colno}"
        )
        raise InputError(f"{path}: corrupt JSON at {at}: {exc.msg}; {hint}") from None


def read_json_records(path: Path) -> list[Any]:
    """The records of `path`: JSON Lines for `.jsonl` (blank lines skipped), else a JSON array."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a BOM that Windows editors write
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text; save it as UTF-8 JSON or JSON Lines and retry") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc.__class__.__name__}") from None
    if path.suffix == ".jsonl":
        return [_loads(line, path, n) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not text.strip():
        return []
    data = _loads(text, path)
    if not isinstance(data, list):
        raise InputError(
            f"{path}: expected a JSON array of records (or JSON Lines in a .jsonl file), "
            f"found a JSON {type(data).__name__}"
        )
    return data
