"""Semantic validation of one row: what the JSON Schema cannot say.

`validate_row(row, cell)` returns reasons, each `"<code>: <detail>"` (or a bare code), so
the summary can count `reason_code(r)` and rejects.jsonl keeps the detail. An empty list
means the row is valid. Codes:

schema, id-mismatch, output-mismatch, step-numbering, dag-order, too-few-steps,
too-many-steps, modalities-field, modalities-mismatch, structure-mismatch, boilerplate,
too-short, too-long, duplicate-steps, style-mismatch, files-unused; over a tool catalogue (`validate_row(row, catalogue=...)`,
`tool_errors`): tool-unknown, tool-tag, tool-types, tool-args.

The schema is checked first; when it fails, the semantic checks (which assume its types)
are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taskdecomp.rouge import rouge_l, rouge_tokens
from taskdecomp.schema import STEP_REF, classify_structure, normalise, render_output, row_id, schema_errors
from taskdecomp.taxonomy import FILE_OR_URL, MAX_STEPS, Cell

if TYPE_CHECKING:
    from taskdecomp.catalogue import Catalogue

__all__ = ["validate_row", "tool_errors", "reason_code", "repeats_a_step", "REASON_CODES"]

REASON_CODES = (
    "schema",
    "id-mismatch",
    "output-mismatch",
    "step-numbering",
    "dag-order",
    "too-few-steps",
    "too-many-steps",
    "modalities-field",
    "modalities-mismatch",
    "structure-mismatch",
    "boilerplate",
    "too-short",
    "too-long",
    "duplicate-steps",
    "style-mismatch",
    "files-unused",
    "tool-unknown",
    "tool-tag",
    "tool-types",
    "tool-args",
)

# Length bounds in words (the schema bounds characters). Generous: they catch truncated or
# runaway text, not style.
INSTRUCTION_WORDS = (5, 150)
DESCRIPTION_WORDS = (3, 60)
# Two steps of one row say the same thing when their descriptions have ROUGE-L at or above
# this, or the same content words. Templated steps that differ in one noun ("draft a poster"
# / "draft a flyer") are different steps, hence high.
STEP_SIMILARITY = 0.95
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "for",
        "to",
        "in",
        "on",
        "with",
        "by",
        "from",
        "into",
        "as",
        "at",
        "it",
        "its",
        "this",
        "that",
        "then",
    ]
)

# Placeholder / template debris a model (or a template bug) leaves behind.
_BOILERPLATE = re.compile(
    r"lorem ipsum|\btodo\b|\btbd\b|\bplaceholder\b|\[insert\b|<[a-z_ -]{1,30}>|\{\{?\s*[a-z_]+\s*\}?\}"
    r"|\bxxx+\b|\bn/a\b|\.\.\.|…",
    re.IGNORECASE,
)
_ONLY_STEP = re.compile(r"^\s*(step|task|subtask)\s*\d*\s*[.:)]?\s*$", re.IGNORECASE)


def reason_code(reason: str) -> str:
    """'dag-order: step 3 ...' → 'dag-order' (for summary counts)."""
    return reason.split(":", 1)[0].strip()


def _boilerplate(where: str, text: str) -> str | None:
    m = _BOILERPLATE.search(text)
    if m:
        return f"boilerplate: {where} contains placeholder text {m.group(0)!r}"
    if _ONLY_STEP.match(text):
        return f"boilerplate: {where} is only {text.strip()!r}"
    return None


def _words(text: str) -> int:
    return len(text.split())


def _length(where: str, text: str, bounds: tuple[int, int]) -> str | None:
    n = _words(text)
    if n < bounds[0]:
        return f"too-short: {where} has {n} words (at least {bounds[0]})"
    if n > bounds[1]:
        return f"too-long: {where} has {n} words (at most {bounds[1]})"
    return None


def _graph(subtasks: list[dict[str, Any]]) -> list[str]:
    reasons = []
    steps = [st["step"] for st in subtasks]
    if steps != list(range(1, len(steps) + 1)):
        reasons.append(f"step-numbering: steps are {steps}, expected 1..{len(steps)}")
        return reasons  # dependencies are meaningless without numbering
    for st in subtasks:
        for d in st["depends_on"]:
            if d >= st["step"]:
                kind = (
                    "itself"
                    if d == st["step"]
                    else f"later step {d}"
                    if d <= len(steps)
                    else f"missing step {d}"
                )
                reasons.append(f"dag-order: step {st['step']} depends on {kind}")
    return reasons


def _text(row: dict[str, Any]) -> list[str]:
    reasons = []
    instruction, subtasks = row["instruction"], row["subtasks"]
    for where, text in [("instruction", instruction), ("input", row["input"])] + [
        (f"step {st['step']}", st["description"]) for st in subtasks
    ]:
        if r := _boilerplate(where, text):
            reasons.append(r)
    if r := _length("instruction", instruction, INSTRUCTION_WORDS):
        reasons.append(r)
    # each description's normalised form, content words and ROUGE tokens, once: the pair
    # checks below are O(steps^2) and run on every candidate of a build
    norms = [normalise(st["description"]) for st in subtasks]
    instr_norm = normalise(instruction)
    for st, norm in zip(subtasks, norms, strict=True):
        where = f"step {st['step']}"
        if norm == instr_norm:
            reasons.append(f"boilerplate: {where} only repeats the instruction")
        if r := _length(where, st["description"], DESCRIPTION_WORDS):
            reasons.append(r)
    # distinct steps: exact (normalised) repeats, then near-repeats
    seen: dict[str, int] = {}
    for st, norm in zip(subtasks, norms, strict=True):
        if norm in seen:
            reasons.append(f"duplicate-steps: steps {seen[norm]} and {st['step']} are the same")
        else:
            seen[norm] = st["step"]
    if len(seen) == len(subtasks):
        forms = [_step_form(st["description"], norm) for st, norm in zip(subtasks, norms, strict=True)]
        for i, a in enumerate(subtasks):
            for j in range(i + 1, len(subtasks)):
                near, score = _near(forms[i], forms[j])
                if near:
                    reasons.append(
                        f"duplicate-steps: steps {a['step']} and {subtasks[j]['step']} are near-identical "
                        f"(ROUGE-L {score:.2f})"
                    )
    return reasons


# a terse command is short: more words than this and it is a plain request
TERSE_WORDS = 20
_SENTENCE = re.compile(r"[^.!?]+[.!?]?")


def _style(row: dict[str, Any]) -> list[str]:
    """What the row's `style` promises of its request: a question ends with '?'; a first-person
    request names a file or URL, and every one it names is used by a step (its description or
    tool arguments name it); a terse command is short; a brief has several sentences."""
    style, instruction = row.get("style"), row["instruction"]
    if style == "question" and not instruction.rstrip().endswith("?"):
        return ["style-mismatch: a question-style request must end with '?'"]
    if style == "terse" and _words(instruction) > TERSE_WORDS:
        return [f"style-mismatch: a terse request has {_words(instruction)} words (at most {TERSE_WORDS})"]
    if style == "brief" and len([s for s in _SENTENCE.findall(instruction) if s.strip()]) < 2:
        return ["style-mismatch: a brief has at least two sentences"]
    if style != "first-person":
        return []
    named = list(dict.fromkeys(m.group(0) for m in FILE_OR_URL.finditer(instruction)))
    if not named:
        return ["style-mismatch: a first-person request names the user's files or a URL; this one names none"]
    steps = " ".join(
        st["description"] + " " + " ".join(st.get("args") or ()) for st in row["subtasks"]
    ).lower()
    unused = [name for name in named if name.lower() not in steps]
    if unused:
        return [f"files-unused: the request names {', '.join(unused)}, which no step uses"]
    return []


# A description as the distinct-steps rule compares it: normalised text, content words, ROUGE tokens.
_StepForm = tuple[str, frozenset[str], list[str]]


def _step_form(description: str, norm: str | None = None) -> _StepForm:
    norm = normalise(description) if norm is None else norm
    return norm, frozenset(norm.split()) - _STOP, rouge_tokens(description)


def _near(a: _StepForm, b: _StepForm) -> tuple[bool, float]:
    """Whether two (not equal) descriptions are near-identical: the same content words or
    ROUGE-L of at least STEP_SIMILARITY; and the ROUGE-L F."""
    score = rouge_l(a[2], b[2])
    return score >= STEP_SIMILARITY or a[1] == b[1], score


def repeats_a_step(description: str, earlier: Sequence[str]) -> bool:
    """Whether a step described so would fail `validate_row`'s distinct-steps check next to the
    `earlier` steps' descriptions (the same normalised text, or near-identical). The
    constrained decoder asks it before it lets a description end."""
    form = _step_form(description)
    if not form[0]:
        return False
    return any(other[0] == form[0] or _near(form, other)[0] for other in map(_step_form, earlier))


def tool_errors(row: dict[str, Any], catalogue: Catalogue) -> list[str]:
    """Why the tools of a (schema-valid) row do not fit `catalogue` (empty: they do). For each
    step that names a tool: the tool exists; the step's tag is the tool's modality and
    operation; every dependency's tool feeds it (an output type of the dependency is an input
    type of the step's tool); each `<step-k>` argument refers to an earlier step k that is in
    its depends_on. Steps without a tool are not checked here."""
    reasons: list[str] = []
    tools = {st["step"]: st.get("tool") for st in row["subtasks"]}
    for st in row["subtasks"]:
        where, tid = f"step {st['step']}", st.get("tool")
        for arg in st.get("args") or ():
            ref = STEP_REF.match(arg)
            if ref and int(ref.group(1)) not in st["depends_on"]:
                k = int(ref.group(1))
                why = "an earlier step not in its depends_on" if k < st["step"] else "no earlier step"
                reasons.append(f"tool-args: {where} refers to <step-{k}>, {why}")
        if not tid:
            continue
        if tid not in catalogue:
            reasons.append(
                f"tool-unknown: {where} names tool '{tid}', which catalogue '{catalogue.name}' lacks"
            )
            continue
        tool = catalogue.get(tid)
        if (st["modality"], st["operation"]) != (tool.modality, tool.operation):
            reasons.append(
                f"tool-tag: {where} is tagged [{st['modality']} {st['operation']}], tool '{tid}' is "
                f"[{tool.modality} {tool.operation}]"
            )
        for d in st["depends_on"]:
            src = tools.get(d)
            if src and src in catalogue and not catalogue.feeds(src, tid):
                reasons.append(
                    f"tool-types: {where} ('{tid}' takes {'/'.join(tool.inputs)}) depends on step {d} "
                    f"('{src}' gives {'/'.join(catalogue.get(src).outputs)})"
                )
    return reasons


def validate_row(
    row: dict[str, Any], cell: Cell | None = None, *, catalogue: Catalogue | None = None
) -> list[str]:
    """Why `row` is not a good training row (empty list: it is). With `cell`, the row must
    also be what was asked for: that cell's modalities and structure, enough steps. With
    `catalogue`, its tools must fit the catalogue too (`tool_errors`)."""
    errors = schema_errors(row)
    if errors:
        return [f"schema: {e}" for e in errors]
    reasons = []
    subtasks = row["subtasks"]
    if row["id"] != row_id(row["instruction"]):
        reasons.append(f"id-mismatch: id {row['id']} is not the hash of the normalised instruction")
    if row["output"] != render_output(subtasks):
        reasons.append("output-mismatch: output is not rendered from subtasks")
    graph = _graph(subtasks)
    reasons += graph
    n = len(subtasks)
    need = cell.min_steps if cell else 1  # a plan may be one step; a multi-step cell needs more
    if n < need:
        reasons.append(f"too-few-steps: {n} steps, {cell.key if cell else 'a row'} needs at least {need}")
    if cell is not None and n > cell.max_steps and n <= MAX_STEPS:
        reasons.append(f"too-many-steps: {n} steps, {cell.key} takes at most {cell.max_steps}")
    if n > MAX_STEPS:  # the schema says so too; kept for a schema that is relaxed later
        reasons.append(f"too-long: {n} steps (at most {MAX_STEPS})")
    used = sorted({st["modality"] for st in subtasks})
    if row["modalities"] != used:
        reasons.append(
            f"modalities-field: field says {'+'.join(row['modalities'])}, steps use {'+'.join(used)}"
        )
    if cell is not None and tuple(used) != cell.modalities:
        reasons.append(f"modalities-mismatch: wanted {'+'.join(cell.modalities)}, got {'+'.join(used)}")
    if not graph:
        shape = classify_structure(subtasks)
        if row["structure"] != shape:
            reasons.append(f"structure-mismatch: declared {row['structure']}, graph is {shape}")
        if cell is not None and shape != cell.structure:
            reasons.append(f"structure-mismatch: wanted {cell.structure}, graph is {shape}")
    reasons += _text(row)
    reasons += _style(row)
    if catalogue is not None:
        reasons += tool_errors(row, catalogue)
    return reasons
