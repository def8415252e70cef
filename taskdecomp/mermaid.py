"""Plans drawn as Mermaid flowcharts: what `Plan.to_mermaid`, `decompose --format mermaid`, the
dataset and model cards and the app show.

    flowchart TD
        s1["1 · audio generation<br/>Record a two-minute voice memo about the launch"]:::mod_audio
        s2["2 · text transformation<br/>Transcribe the memo into text"]:::mod_text
        s1 --> s2
        classDef mod_audio fill:#fef3c7,stroke:#b45309,color:#78350f
        classDef mod_text fill:#dbeafe,stroke:#1d4ed8,color:#1e3a8a

One node per step, labelled with the step number, modality and operation, a shortened
description and the tool id when the step has one; one colour (`classDef`) per modality; one
edge per `depends_on` entry. Labels are always quoted and every character that means something
to Mermaid or to the HTML it is rendered into (quotes, brackets, `<`, `>`, `&`, `#`, `|`,
backticks) is written as a Mermaid entity code (`#quot;`, `#91;`, ...), so no description can
break the diagram. The Hub, GitHub and Gradio's `gr.Markdown` render ```` ```mermaid ```` blocks.

This module works on anything step-shaped (a `taskdecomp.plan.Step` or a row's subtask dict),
so it imports no other module of the package.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, TypeVar

__all__ = [
    "Direction",
    "DIRECTIONS",
    "MODALITY_COLOURS",
    "DEFAULT_LABEL_CHARS",
    "steps_to_mermaid",
    "subtasks_to_mermaid",
    "mermaid_block",
    "escape_label",
    "escape_markdown",
    "shorten",
    "pick_examples",
]

Direction = Literal["TD", "LR"]
DIRECTIONS: tuple[str, ...] = ("TD", "LR")
DEFAULT_LABEL_CHARS = 60

# (fill, stroke, text) per modality: light fills, a darker border and text of the same hue.
MODALITY_COLOURS: dict[str, tuple[str, str, str]] = {
    "text": ("#dbeafe", "#1d4ed8", "#1e3a8a"),
    "image": ("#dcfce7", "#15803d", "#14532d"),
    "audio": ("#fef3c7", "#b45309", "#78350f"),
    "video": ("#fce7f3", "#be185d", "#831843"),
}
_OTHER_COLOUR = ("#f3f4f6", "#4b5563", "#111827")

# Mermaid entity codes (`#name;` or `#<decimal>;`): decoded by Mermaid after parsing, so the
# characters show as themselves but never end a label, open a shape or become HTML.
_ESCAPES = str.maketrans(
    {
        "#": "#35;",
        '"': "#quot;",
        "&": "#amp;",
        "<": "#lt;",
        ">": "#gt;",
        "[": "#91;",
        "]": "#93;",
        "(": "#40;",
        ")": "#41;",
        "{": "#123;",
        "}": "#125;",
        "|": "#124;",
        "`": "#96;",
    }
)


class _Node(NamedTuple):
    step: int
    description: str
    modality: str
    operation: str
    depends_on: tuple[int, ...]
    tool: str | None


def shorten(text: str, limit: int = DEFAULT_LABEL_CHARS) -> str:
    """`text` on one line, cut at a word boundary to at most `limit` characters (with `…`)."""
    text = " ".join(str(text or "").split())
    if len(text) <= limit:
        return text
    cut = text[: max(1, limit - 1)]
    if " " in cut[limit // 2 :]:  # prefer a word boundary when it keeps at least half
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:.-") + "…"


def escape_label(text: str) -> str:
    """`text` safe inside a quoted Mermaid label (entity codes for the special characters)."""
    return " ".join(str(text).split()).translate(_ESCAPES)


def _class_name(modality: str) -> str:
    return "mod_" + "".join(c if c.isalnum() else "_" for c in modality)


def _draw(nodes: Sequence[_Node], direction: str, label_chars: int) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    lines = [f"flowchart {direction}"]
    for n in nodes:
        parts = [f"{n.step} · {n.modality} {n.operation}", shorten(n.description, label_chars)]
        if n.tool:
            parts.append(f"tool: {n.tool}")
        label = "<br/>".join(escape_label(p) for p in parts)
        lines.append(f'    s{n.step}["{label}"]:::{_class_name(n.modality)}')
    known = {n.step for n in nodes}
    for n in nodes:
        for dep in sorted(set(n.depends_on)):
            if dep in known:
                lines.append(f"    s{dep} --> s{n.step}")
    used = list(dict.fromkeys(n.modality for n in nodes))
    ordered = [m for m in MODALITY_COLOURS if m in used] + [m for m in used if m not in MODALITY_COLOURS]
    for m in ordered:
        fill, stroke, colour = MODALITY_COLOURS.get(m, _OTHER_COLOUR)
        lines.append(f"    classDef {_class_name(m)} fill:{fill},stroke:{stroke},color:{colour}")
    return "\n".join(lines) + "\n"


def steps_to_mermaid(
    steps: Iterable[Any], *, direction: Direction = "TD", label_chars: int = DEFAULT_LABEL_CHARS
) -> str:
    """A Mermaid flowchart (no code fence) of step objects with the attributes of
    `taskdecomp.plan.Step` (step, description, modality, operation, depends_on, tool)."""
    nodes = [
        _Node(
            int(s.step),
            str(s.description),
            str(s.modality),
            str(s.operation),
            tuple(int(d) for d in s.depends_on or ()),
            getattr(s, "tool", None) or None,
        )
        for s in steps
    ]
    return _draw(sorted(nodes, key=lambda n: n.step), direction, label_chars)


def subtasks_to_mermaid(
    subtasks: Iterable[Mapping[str, Any]],
    *,
    direction: Direction = "TD",
    label_chars: int = DEFAULT_LABEL_CHARS,
) -> str:
    """The same flowchart for a dataset row's `subtasks` (dicts, as stored in the shards)."""
    nodes = [
        _Node(
            int(st["step"]),
            str(st.get("description") or ""),
            str(st.get("modality") or ""),
            str(st.get("operation") or ""),
            tuple(int(d) for d in st.get("depends_on") or ()),
            st.get("tool") or None,
        )
        for st in subtasks
    ]
    return _draw(sorted(nodes, key=lambda n: n.step), direction, label_chars)


_MARKDOWN_INLINE = re.compile(r"([\\`*_\[\]<>])")


def escape_markdown(text: str) -> str:
    """`text` on one line with Markdown's inline syntax backslash-escaped: a request shown in a
    card next to its graph reads as the user wrote it (no emphasis, links or HTML)."""
    return _MARKDOWN_INLINE.sub(r"\\\1", " ".join(str(text).split()))


def mermaid_block(diagram: str) -> str:
    """`diagram` in a ```` ```mermaid ```` fence (Markdown that the Hub and Gradio render)."""
    return f"```mermaid\n{diagram.rstrip()}\n```"


T = TypeVar("T")


def pick_examples(items: Iterable[T], key: Callable[[T], str], k: int = 3) -> list[T]:
    """Up to `k` items, in order: the first item of each distinct `key` (e.g. a plan's
    structure) first, then the next items in order when there are fewer than `k` keys.
    Deterministic for a given order; reads `items` only as far as it needs."""
    chosen: list[T] = []
    rest: list[T] = []
    seen: set[str] = set()
    for item in items:
        kind = key(item)
        if kind not in seen:
            seen.add(kind)
            chosen.append(item)
            if len(chosen) == k:
                return chosen
        elif len(rest) < k:
            rest.append(item)
    return chosen + rest[: k - len(chosen)]
