"""The row schema and the helpers every stage shares.

A *candidate* (what a backend proposes) has `instruction`, `input`, `structure`, `subtasks`.
`make_row` turns it into a *row*: adds the stable `id`, the sorted `modalities` and the
`output` text, which we always render ourselves from `subtasks`, never take from a model.

Output lines carry a compact type tag so that a model trained on them emits typed plans:

    1. Record a two-minute voice memo about the launch. [audio generation]
    2. Transcribe the memo into text. [text transformation; after 1]

A step of a tool plan (a row built over a tool catalogue, `taskdecomp.catalogue`) also names
its tool and, optionally, its arguments, in this order before `after`:

    3. Transcribe the interview [audio analysis; tool speech-recognition; args interview.wav; after 1, 2]

Arguments are literals (a file name, a URL, a short text without `,;[]`) or `<step-k>`, the
output of an earlier step; they are separated by ", ". Subtasks carry them as the optional
`tool` and `args` fields; rows without them render and parse as before.

`parse_output` reads that back, and also plain `1. ... 2. ...` / `1) ...` text (the original
project's format), inferring untagged steps' modality with the lexicon and chaining them.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

__all__ = [
    "MODALITIES",
    "OPERATIONS",
    "STRUCTURES",
    "STYLES",
    "ROW_FIELDS",
    "FILE_OR_URL",
    "infer_style",
    "ARG_PATTERN",
    "STEP_REF",
    "row_schema",
    "schema_errors",
    "normalise",
    "row_id",
    "render_output",
    "parse_output",
    "untagged_steps",
    "classify_structure",
    "make_row",
]

MODALITIES = ("text", "image", "audio", "video")
OPERATIONS = ("generation", "analysis", "transformation")
STRUCTURES = ("chain", "parallel", "dag")
#: request styles (the row schema's `style` enum; `taxonomy` describes them)
STYLES = ("imperative", "first-person", "question", "terse", "brief", "implicit")
ROW_FIELDS = ("id", "instruction", "input", "output", "subtasks", "modalities", "structure", "source", "style")  # fmt: skip
ARG_PATTERN = re.compile(r"^[^,;\[\]\n]{1,80}$")  # a literal argument (row.schema.json says the same)
STEP_REF = re.compile(r"^<step-(\d+)>$")  # an argument that is an earlier step's output


@cache
def row_schema() -> dict[str, Any]:
    text = resources.files("taskdecomp").joinpath("row.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = row_schema()
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def schema_errors(row: dict[str, Any]) -> list[str]:
    """Human-readable JSON-Schema violations ('' path = the row itself); empty when valid."""
    out = []
    for err in sorted(_validator().iter_errors(row), key=lambda e: list(e.absolute_path)):
        path = "/".join(str(p) for p in err.absolute_path) or "row"
        out.append(f"{path}: {err.message}")
    return out


_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower-case, strip accents and punctuation, collapse whitespace: the dedup/ID form.
    Letters of every script stay (only the accents NFKD splits off go), so a Russian or
    Chinese instruction keeps its words: dropping all non-ASCII made all such texts ''."""
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def row_id(instruction: str) -> str:
    return hashlib.sha256(normalise(instruction).encode()).hexdigest()[:16]


def render_output(subtasks: list[dict[str, Any]]) -> str:
    lines = []
    for st in subtasks:
        tag = f"{st['modality']} {st['operation']}"
        if st.get("tool"):
            tag += f"; tool {st['tool']}"
            if st.get("args"):
                tag += "; args " + ", ".join(str(a).strip() for a in st["args"])
        if st.get("depends_on"):
            tag += "; after " + ", ".join(str(d) for d in st["depends_on"])
        desc = st["description"].strip()
        lines.append(f"{st['step']}. {desc} [{tag}]")
    return "\n".join(lines)


_TAG = re.compile(
    r"\s*\[(?P<mod>text|image|audio|video)\s+(?P<op>generation|analysis|transformation)"
    r"(?:\s*;\s*tool\s+(?P<tool>[a-z][a-z0-9-]*)(?:\s*;\s*args\s+(?P<args>[^;\[\]\n]+?))?)?"
    r"(?:\s*;\s*after\s+(?P<deps>\d+(?:\s*,\s*\d+)*))?\]\s*$",
    re.IGNORECASE,
)
_NUM = re.compile(r"(?:(?<=\s)|^)(\d{1,2})[.)](?=\s)", re.MULTILINE)


_LINE_TWO = re.compile(r"^\s*2[.)]\s", re.MULTILINE)


def _split_numbered(text: str) -> list[str]:
    """Split '1. a 2. b' / '1) a\\n2) b' into ['a', 'b']. Only the *next expected* number
    starts a new step, so 'version 2. of the app' inside step 1 does not split it. When steps
    start lines (a line begins with '2.'), only a number at the start of a line starts a step:
    a description may then say '... in 2. take' without being cut."""
    pieces: list[str] = []
    expected, start = 1, None
    by_line = _LINE_TWO.search(text) is not None
    for m in _NUM.finditer(text):
        if int(m.group(1)) != expected:
            continue
        if by_line and text[: m.start()].rstrip(" \t")[-1:] not in ("", "\n"):
            continue
        if start is not None:
            pieces.append(text[start : m.start()].strip())
        start, expected = m.end(), expected + 1
    if start is not None:
        pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def untagged_steps(text: str) -> list[int]:
    """Numbers of the steps in `text` that carry no `[modality operation]` tag."""
    return [
        i for i, piece in enumerate(_split_numbered(text), start=1) if not _TAG.search(_SPACE.sub(" ", piece))
    ]


def parse_output(text: str) -> list[dict[str, Any]]:
    """Numbered text → subtasks (possibly invalid: the caller validates). Empty list when no
    numbered steps are found."""
    from .lexicon import infer_step

    subtasks = []
    for i, piece in enumerate(_split_numbered(text), start=1):
        piece = _SPACE.sub(" ", piece)
        m = _TAG.search(piece)
        if m:
            desc = piece[: m.start()].strip()
            modality, operation = m.group("mod").lower(), m.group("op").lower()
            deps = [int(d) for d in re.findall(r"\d+", m.group("deps") or "")]
        else:
            desc = piece
            modality, operation = infer_step(desc)
            deps = [i - 1] if i > 1 else []
        st: dict[str, Any] = {
            "step": i, "description": desc, "modality": modality, "operation": operation, "depends_on": deps
        }  # fmt: skip
        if m and m.group("tool"):
            st["tool"] = m.group("tool")
            args = [a.strip() for a in (m.group("args") or "").split(",") if a.strip()]
            if args:
                st["args"] = args
        subtasks.append(st)
    return subtasks


def classify_structure(subtasks: list[dict[str, Any]]) -> str:
    """chain: each step needs exactly the one before. parallel: two or more independent
    branches (each a chain), optionally fanned out from one first step and/or joined by one
    last step. dag: any other acyclic graph."""
    n = len(subtasks)
    deps = {st["step"]: list(st.get("depends_on") or []) for st in subtasks}
    if all(deps[s] == ([s - 1] if s > 1 else []) for s in range(1, n + 1) if s in deps):
        return "chain"
    steps = list(range(1, n + 1))
    children: dict[int, list[int]] = {s: [] for s in steps}
    for s, ds in deps.items():
        for d in ds:
            children.setdefault(d, []).append(s)
    core = list(steps)
    # optional fan-out source: step 1 with several children and no deps
    if len(children.get(1, [])) >= 2 and not deps.get(1):
        core.remove(1)
    # optional fan-in sink: last step that depends on >= 2 steps and nothing depends on it
    if n in deps and len(deps[n]) >= 2 and not children.get(n):
        core.remove(n)
    core_set = set(core)
    # inside the core every step has at most one parent and one child within the core
    for s in core:
        inner_parents = [d for d in deps.get(s, []) if d in core_set]
        inner_children = [c for c in children.get(s, []) if c in core_set]
        if len(inner_parents) > 1 or len(inner_children) > 1:
            return "dag"
    roots = [s for s in core if not [d for d in deps.get(s, []) if d in core_set]]
    return "parallel" if len(roots) >= 2 else "dag"


def _subtask(st: dict[str, Any], i: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "step": int(st.get("step", i)),
        "description": _SPACE.sub(" ", str(st.get("description", ""))).strip(),
        "modality": str(st.get("modality", "")).lower(),
        "operation": str(st.get("operation", "")).lower(),
        "depends_on": sorted({int(d) for d in (st.get("depends_on") or [])}),
    }
    # The optional tool fields: kept only when set, so untooled rows are exactly as before
    # (a Parquet round trip gives tool None and args [] for them).
    # (args without a tool are kept for the schema to reject.)
    if st.get("tool"):
        out["tool"] = str(st["tool"]).strip()
    if st.get("args"):
        out["args"] = [_SPACE.sub(" ", str(a)).strip() for a in st["args"]]
    return out


def make_row(candidate: dict[str, Any], source: str) -> dict[str, Any]:
    """Candidate → row. Does not validate (see dataset_builder.validate). The row's `style` is
    the candidate's (a backend wrote the request in it), else the style the instruction reads
    as (`infer_style`: imported and tool-graph rows), so every row has one."""
    subtasks = [_subtask(st, i) for i, st in enumerate(candidate.get("subtasks") or [], start=1)]
    instruction = _SPACE.sub(" ", str(candidate.get("instruction", ""))).strip()
    style = candidate.get("style")
    return {
        "id": row_id(instruction),
        "instruction": instruction,
        "input": str(candidate.get("input") or "").strip(),
        "output": render_output(subtasks),
        "subtasks": subtasks,
        "modalities": sorted({st["modality"] for st in subtasks}),
        "structure": candidate.get("structure") or classify_structure(subtasks),
        "source": source,
        "style": str(style) if style else infer_style(instruction),
    }


#: a file name with a media or document extension, or a web address
FILE_OR_URL = re.compile(
    r"https?://[^\s,;]+[^\s,;.?!)]|\b[\w-]+(?:\.[\w-]+)*\.(?:wav|mp3|m4a|flac|ogg|aac|jpe?g|png|gif|webp|heic|tiff?|svg"
    r"|mp4|mov|avi|mkv|webm|txt|md|pdf|docx?|csv|xlsx|pptx?|srt|vtt|json|html?)\b",
    re.IGNORECASE,
)
_FIRST_PERSON = re.compile(r"\b(i|i'm|i've|i'd|my|me|we|we've|we're|our)\b", re.IGNORECASE)
_CONSTRAINT = re.compile(
    r"\b(must|should|needs? to|has to|have to|keep|no more than|at most|under|avoid|don't|do not|only|"
    r"deadline|budget|by (monday|tuesday|wednesday|thursday|friday|the))\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?](?:\s+|$)")


def infer_style(instruction: str) -> str:
    """The style a request reads as, for rows written without one: a question ends with '?';
    first-person names a file or URL and speaks as 'I'/'we'; a brief has several sentences and
    a constraint; a terse command is short and unpunctuated or joins items with '+'; anything
    else is imperative. ('implicit' is never inferred: what a request leaves unsaid cannot be
    read off it.)"""
    text = " ".join(instruction.split())
    if FILE_OR_URL.search(text) and _FIRST_PERSON.search(text):
        return "first-person"
    if text.endswith("?"):
        return "question"
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    if len(sentences) >= 3 and _CONSTRAINT.search(text):
        return "brief"
    words = len(text.split())
    if words <= 14 and (text[-1:] not in ".!" or " + " in text or text[:1].islower()):
        return "terse"
    return "imperative"
