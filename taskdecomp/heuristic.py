"""The heuristic planner: the baseline every model is read against.

A keyword rule, no model: find the modalities a request mentions (file names by extension,
URLs as text to read, the lexicon's modality nouns: "podcast", "thumbnail", "vlog"), in the
order they first appear, and plan one step per modality, chained. A modality the user
*supplies* (a file of that type, or "my/this/the attached <noun>") is analysed; one the user
asks for is generated. A request that names none is one text step.

The plans are always valid (the descriptions are distinct templates of at least three words
that name the user's files), so the heuristic scores validity 1.0 by construction: an adapter
has to beat it on what the steps are, not on whether they parse.
"""

from __future__ import annotations

import re

from taskdecomp.lexicon import modality_mentions
from taskdecomp.plan import Plan, check_task, plan_from_text

__all__ = ["heuristic_answer", "heuristic_plan", "HEURISTIC_SOURCE"]

HEURISTIC_SOURCE = "heuristic"

_EXTENSIONS = {
    "video": "mp4 mov avi mkv webm m4v wmv flv",
    "audio": "wav mp3 m4a flac ogg aac opus wma aiff",
    "image": "jpg jpeg png gif webp bmp tif tiff heic svg",
    "text": "txt pdf docx doc md csv json html rtf odt pptx xlsx srt vtt",
}
_EXT_MODALITY = {ext: m for m, exts in _EXTENSIONS.items() for ext in exts.split()}
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


def heuristic_answer(task: str) -> str:
    """The plan text the heuristic answers for `task` (the format a model writes)."""
    order, supplied = _mentions(task)
    lines = []
    for k, modality in enumerate(order, start=1):
        op = "analysis" if modality in supplied else "generation"
        desc = _TEMPLATES[(modality, op)].format(what=supplied.get(modality, ""))
        after = f"; after {k - 1}" if k > 1 else ""
        lines.append(f"{k}. {desc} [{modality} {op}{after}]")
    return "\n".join(lines)


def heuristic_plan(task: str, input: str = "") -> Plan:
    """`heuristic_answer` as a validated `Plan` (source `heuristic`)."""
    text = check_task(task)
    return plan_from_text(text, heuristic_answer(text), input=input, source=HEURISTIC_SOURCE)
