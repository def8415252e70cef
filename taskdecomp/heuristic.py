"""The heuristic planner: the baseline every model is read against.

A keyword rule, no model: find the modalities a request mentions (file names by extension,
URLs as text to read, the lexicon's modality nouns: "podcast", "thumbnail", "vlog"), in the
order they first appear, and plan one step per modality, chained. A modality the user
*supplies* (a file of that type, or "my/this/the attached <noun>") is analysed; one the user
asks for is generated. A request that names none is one text step.

The plans are always valid (the descriptions are distinct templates of at least three words
that name the user's files), so the heuristic scores validity 1.0 by construction: an adapter
has to beat it on what the steps are, not on whether they parse.

With a tool catalogue (`decompose --tools`, the baseline of the tool metrics) each detected
modality gets the catalogue tool of that modality whose id and description share the most
words with the request (5-letter stems: "summary" matches "summarization"; a word counts for
one tool only), preferring the detected operation, a tool that takes the user's file when there
is one, and one the previous step can feed. The tools keep the order of mention except that a
tool moves after one it takes its input from; for each input type a step then comes after the
latest earlier step making that type (its `<step-k>` argument), else takes the user's file of
that type; its description is the tool's.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from taskdecomp.lexicon import modality_mentions
from taskdecomp.plan import Plan, check_task, plan_from_text
from taskdecomp.schema import render_output
from taskdecomp.tool_formats import EXTENSION_TYPES

if TYPE_CHECKING:
    from taskdecomp.catalogue import Catalogue, Tool

__all__ = ["heuristic_answer", "heuristic_plan", "HEURISTIC_SOURCE"]

HEURISTIC_SOURCE = "heuristic"

_EXT_MODALITY = {ext: m for m, exts in EXTENSION_TYPES.items() for ext in exts.split()}
_FILE = re.compile(r"\b[\w\-]+(?:\.[\w\-]+)*\.(" + "|".join(_EXT_MODALITY) + r")\b", re.IGNORECASE)
_URL = re.compile(
    r"https?://\S+?(?=[.,;:!?)]*(?:\s|$))|\b(?:link|url|website|web page|webpage)\b", re.IGNORECASE
)
_OWNED = re.compile(
    r"\b(?:my|this|these|that|our|the attached|attached|the uploaded|uploaded)\s+(?:\w+\s+)?$"
)

# One description per (modality, operation), worded apart so that no two steps of a plan are
# near-duplicates; {what} is the user's file name or a generic name for what they supplied.
_TEMPLATES = {
    ("text", "generation"): "Write the requested text",
    ("text", "analysis"): "Read {what} and extract the information the request needs",
    ("image", "generation"): "Create the requested image",
    ("image", "analysis"): "Examine {what} and describe what it shows",
    ("audio", "generation"): "Produce the requested audio",
    ("audio", "analysis"): "Listen to {what} and transcribe what is said",
    ("video", "generation"): "Make the requested video",
    ("video", "analysis"): "Watch {what} and note the relevant scenes",
}
_GENERIC = {
    "text": "the provided document",
    "image": "the supplied picture",
    "audio": "the recording",
    "video": "the footage",
}


def _mentions(task: str) -> tuple[list[str], dict[str, str]]:
    """Modalities in order of first mention, and for each supplied one, how to name it."""
    found: list[tuple[int, str]] = []
    supplied: dict[str, str] = {}
    for m in _FILE.finditer(task):
        modality = _EXT_MODALITY[m.group(1).lower()]
        found.append((m.start(), modality))
        supplied.setdefault(modality, m.group(0))
    for m in _URL.finditer(task):
        found.append((m.start(), "text"))
        supplied.setdefault(
            "text", m.group(0) if m.group(0).lower().startswith("http") else "the linked page"
        )
    for start, modality in modality_mentions(task):
        found.append((start, modality))
        if _OWNED.search(task[:start].lower()):
            supplied.setdefault(modality, _GENERIC[modality])
    order: list[str] = []
    for _, modality in sorted(found):
        if modality not in order:
            order.append(modality)
    return order or ["text"], supplied


_WORD = re.compile(r"[a-z]+")
_STOP = frozenset(
    "a an the and or of for to in on with by from into as at it its is be this that then one "  # noqa: SIM905
    "use using make give get my me our your".split()
)
_ARG = re.compile(r"^[^,;\[\]\n]{1,80}$")  # a literal argument (the row schema's rule)


def _stems(text: str) -> set[str]:
    """Content words cut to 5 letters: "summary" / "summarization", "remove" / "removal"."""
    return {w[:5] for w in _WORD.findall(text.lower().replace("-", " ")) if w not in _STOP and len(w) > 2}


def _pick_tool(
    catalogue: Catalogue, modality: str, operation: str, words: set[str], supplied: bool, fed_by: list[Tool]
) -> Tool | None:
    best: tuple[float, int] | None = None
    choice = None
    for i, tool in enumerate(catalogue.tools):
        if tool.modality != modality:
            continue
        score = 2.0 * len(words & _stems(f"{tool.id} {tool.description}"))
        score += 1.0 if tool.operation == operation else 0.0
        score += 1.0 if supplied and modality in tool.inputs else 0.0
        score += 0.5 if any(set(t.outputs) & set(tool.inputs) for t in fed_by) else 0.0
        if best is None or (score, -i) > best:
            best, choice = (score, -i), tool
    return choice


def _feeds(a: Tool, b: Tool) -> bool:
    return bool(set(a.outputs) & set(b.inputs))


def _tool_answer(task: str, catalogue: Catalogue) -> str:
    order, supplied = _mentions(task)
    words = _stems(task)
    chosen: list[Tool] = []
    for modality in order:
        op = "analysis" if modality in supplied else "generation"
        tool = _pick_tool(catalogue, modality, op, words, modality in supplied, chosen[-1:])
        if tool is None or tool in chosen:
            continue  # no tool of that modality (or the same tool again): the plan goes without it
        words -= _stems(f"{tool.id} {tool.description}")  # a word picks one tool, not every step's
        chosen.append(tool)
    if not chosen:  # no tool fits any detected modality: the catalogue's first text tool
        chosen.append(next((t for t in catalogue.tools if t.modality == "text"), catalogue.tools[0]))
    # mention order, except that a tool goes after the one it takes its input from ("a video of
    # the images and music": the video comes last)
    for _ in range(len(chosen) ** 2):
        swaps = [
            i
            for i in range(len(chosen) - 1)
            if _feeds(chosen[i + 1], chosen[i]) and not _feeds(chosen[i], chosen[i + 1])
        ]
        if not swaps:
            break
        i = swaps[0]
        chosen[i], chosen[i + 1] = chosen[i + 1], chosen[i]
    subtasks: list[dict[str, Any]] = []
    for k, tool in enumerate(chosen, start=1):
        # per input type: the latest earlier step making it, else the user's file of that type
        deps: list[int] = []
        args: list[str] = []
        for kind in tool.inputs:
            src = next((j for j in range(k - 1, 0, -1) if kind in chosen[j - 1].outputs), None)
            given = supplied.get(kind, "")
            if src is not None:
                if src not in deps:
                    deps.append(src)
                    args.append(f"<step-{src}>")
            elif _ARG.match(given) and "." in given:
                args.append(given)
        what = supplied.get(tool.modality, "")
        desc = tool.description.strip().rstrip(".")
        desc = f"{desc} ({what})" if what and what not in desc and "[" not in what else desc
        st: dict[str, Any] = {"step": k, "description": desc, "modality": tool.modality,
                              "operation": tool.operation, "depends_on": sorted(deps), "tool": tool.id}  # fmt: skip
        if args:
            st["args"] = args[: max(1, len(tool.args) or len(tool.inputs))]
        subtasks.append(st)
    return render_output(subtasks)


def heuristic_answer(task: str, catalogue: Catalogue | None = None) -> str:
    """The plan text the heuristic answers for `task` (the format a model writes); with a
    catalogue, a tool plan."""
    if catalogue is not None:
        return _tool_answer(task, catalogue)
    order, supplied = _mentions(task)
    lines = []
    for k, modality in enumerate(order, start=1):
        op = "analysis" if modality in supplied else "generation"
        desc = _TEMPLATES[(modality, op)].format(what=supplied.get(modality, ""))
        after = f"; after {k - 1}" if k > 1 else ""
        lines.append(f"{k}. {desc} [{modality} {op}{after}]")
    return "\n".join(lines)


def heuristic_plan(task: str, input: str = "", catalogue: Catalogue | None = None) -> Plan:
    """`heuristic_answer` as a validated `Plan` (source `heuristic`)."""
    text = check_task(task)
    return plan_from_text(
        text, heuristic_answer(text, catalogue), input=input, source=HEURISTIC_SOURCE, catalogue=catalogue
    )
