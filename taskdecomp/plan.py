"""Typed plans: what `decompose` returns and `plan.run` executes.

A `Plan` is the dataset row's subtasks as frozen dataclasses. It is only ever built from steps
that passed validation (the row schema plus "depends only on earlier steps"), so every `Plan`
converts to a valid row (`to_row`) and its dependency graph is acyclic by construction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from taskdecomp import dispatch, mermaid, tool_formats
from taskdecomp.dispatch import HandlerRegistry, RunResult
from taskdecomp.errors import InputError, TaskDecompError
from taskdecomp.schema import make_row, parse_output, render_output, untagged_steps
from taskdecomp.validation import tool_errors, validate_row

if TYPE_CHECKING:
    from taskdecomp.catalogue import Catalogue

__all__ = [
    "Step",
    "Plan",
    "DecompositionError",
    "plan_errors",
    "plan_from_text",
    "answer_errors",
    "check_task",
    "MIN_TASK_CHARS",
    "MAX_TASK_CHARS",
]

# The row schema's limits on `instruction`: a task outside them could never become a valid row.
MIN_TASK_CHARS, MAX_TASK_CHARS = 20, 1200


class DecompositionError(TaskDecompError):
    """The model's answer stayed invalid after every retry. `attempts` holds (text, errors)."""

    def __init__(self, task: str, attempts: list[tuple[str, list[str]]]) -> None:
        self.task = task
        self.attempts = attempts
        last = attempts[-1][1] if attempts else ["no answer"]
        super().__init__(
            f"no valid plan after {len(attempts)} attempt(s) for task {task[:60]!r}: {'; '.join(last[:3])}; "
            "try a trained --adapter, more --retries or a larger --max-new-tokens"
        )


@dataclass(frozen=True)
class Step:
    step: int
    description: str
    modality: str
    operation: str
    depends_on: tuple[int, ...] = ()
    tool: str | None = None  # a catalogue tool id (`decompose --tools`); None: an untooled step
    args: tuple[str, ...] = ()  # literals ("photo.jpg", a URL, short text) or "<step-k>" references

    def to_dict(self) -> dict[str, Any]:
        """The row's subtask dict; `tool`/`args` only when set, so untooled rows stay as they were."""
        d = asdict(self)
        d["depends_on"] = list(self.depends_on)
        if self.tool is None:
            del d["tool"]
        if self.args:
            d["args"] = list(self.args)
        else:
            del d["args"]
        return d


@dataclass(frozen=True)
class Plan:
    instruction: str
    steps: tuple[Step, ...]
    input: str = ""
    structure: str = "chain"
    source: str = "model:base"
    raw: str = field(default="", compare=False, repr=False)  # the model's text, for debugging

    @classmethod
    def from_row(cls, row: Mapping[str, Any], raw: str = "") -> Plan:
        steps = tuple(
            Step(
                step=int(st["step"]),
                description=st["description"],
                modality=st["modality"],
                operation=st["operation"],
                depends_on=tuple(int(d) for d in st.get("depends_on") or ()),
                tool=st.get("tool") or None,
                args=tuple(str(a) for a in st.get("args") or ()),
            )
            for st in row["subtasks"]
        )
        return cls(
            instruction=row["instruction"],
            steps=steps,
            input=row.get("input") or "",
            structure=row["structure"],
            source=row["source"],
            raw=raw,
        )

    def to_row(self) -> dict[str, Any]:
        """A dict valid against the repo's row schema (same shape as dataset rows)."""
        return make_row(
            {
                "instruction": self.instruction,
                "input": self.input,
                "subtasks": [s.to_dict() for s in self.steps],
                "structure": self.structure,
            },
            self.source,
        )

    def render(self) -> str:
        return render_output([s.to_dict() for s in self.steps])

    def to_hugginggpt(self, catalogue: Catalogue | None = None) -> list[dict[str, Any]]:
        """HuggingGPT's task list (see `taskdecomp.tool_formats`; the catalogue names the args)."""
        return tool_formats.to_hugginggpt(self, catalogue)

    def to_taskbench(self) -> dict[str, Any]:
        """TaskBench's `task_steps` / `task_nodes` / `task_links` (see `taskdecomp.tool_formats`)."""
        return tool_formats.to_taskbench(self)

    def to_mermaid(
        self, direction: mermaid.Direction = "TD", *, label_chars: int = mermaid.DEFAULT_LABEL_CHARS
    ) -> str:
        """The plan as a Mermaid flowchart (`flowchart TD` or `LR`, no code fence): one node per
        step coloured by modality, one edge per dependency (see `taskdecomp.mermaid`)."""
        return mermaid.steps_to_mermaid(self.steps, direction=direction, label_chars=label_chars)

    def step(self, number: int) -> Step:
        return next(s for s in self.steps if s.step == number)

    def waves(self) -> list[list[int]]:
        """Topological levels: wave k holds the steps whose dependencies all lie in waves < k."""
        level: dict[int, int] = {}
        for s in sorted(self.steps, key=lambda s: s.step):  # deps are earlier steps
            level[s.step] = 1 + max((level[d] for d in s.depends_on), default=-1)
        waves: list[list[int]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for number, k in level.items():
            waves[k].append(number)
        return waves

    def run(
        self, handlers: HandlerRegistry | Mapping[str, Any] | None = None, *, max_concurrency: int = 4
    ) -> RunResult:
        """Execute the steps (see `taskdecomp.dispatch.run`)."""
        return dispatch.run(self, handlers, max_concurrency=max_concurrency)

    async def arun(
        self, handlers: HandlerRegistry | Mapping[str, Any] | None = None, *, max_concurrency: int = 4
    ) -> RunResult:
        return await dispatch.arun(self, handlers, max_concurrency=max_concurrency)


def check_task(task: str) -> str:
    """The task text, whitespace-collapsed; `InputError` when it can't become a row."""
    text = " ".join((task or "").split())
    if not text:
        raise InputError("the task text is empty; pass a task such as 'Write a song and film a video for it'")
    if not MIN_TASK_CHARS <= len(text) <= MAX_TASK_CHARS:
        raise InputError(
            f"the task text has {len(text)} characters; it must have {MIN_TASK_CHARS} to {MAX_TASK_CHARS} "
            "(describe the whole task in one self-contained sentence or paragraph)"
        )
    return text


_PLACEHOLDER_TASK = "A placeholder task used for validation only"

# Reasons about the user's own text (instruction/input) are not the model's fault: a re-ask
# cannot fix them, and `check_task` already enforces the schema's limits on the task. Nor is
# how the request is worded (style-mismatch, files-unused: rules for generated rows), nor a
# step that says what the request says: a generated row that only restates its request is a
# lazy row, but "Transcribe meeting.mp3" planned as "1. Transcribe meeting.mp3" is right.
_USER_TEXT = re.compile(
    r"^([\w-]+: (instruction|input)\b|(style-mismatch|files-unused):"
    r"|boilerplate: step \d+ only repeats the instruction)"
)


def plan_errors(row: dict[str, Any], catalogue: Catalogue | None = None) -> list[str]:
    """Why a row built from model output is not an acceptable plan (empty: it is): the dataset
    builder's row validator (schema, step numbering, dependencies only on earlier steps,
    duplicate/boilerplate steps), less the reasons about the user's own text. With a
    `catalogue` (a tool plan), every step names one of its tools and the tools' types chain
    along the dependencies (`taskdecomp.validation.tool_errors`)."""
    errors = [r for r in validate_row(row) if not _USER_TEXT.match(r)]
    if catalogue is not None and not errors:
        untooled = [st["step"] for st in row["subtasks"] if not st.get("tool")]
        if untooled:
            errors.append(
                f"step {untooled[0]} names no tool: every step needs '; tool ID' from the catalogue"
            )
        else:
            errors += tool_errors(row, catalogue)
    return errors


def answer_errors(
    text: str,
    task: str = _PLACEHOLDER_TASK,
    *,
    input: str = "",
    source: str = "offline",
    catalogue: Catalogue | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The row a model answer makes for `task`, and why it is not an acceptable plan (empty:
    it is). The one acceptance rule for `decompose`, `evaluate-adapter` and the metric; with a
    `catalogue`, for tool plans."""
    steps = parse_output(text)
    row = make_row({"instruction": task, "input": input, "subtasks": steps}, source)
    if not steps:
        return row, ["the answer has no numbered steps ('1. ...')"]
    untagged = untagged_steps(text)
    if untagged and len(untagged) < len(steps):
        # a tagged plan with an untagged step was cut off (max_new_tokens) or is malformed:
        # inferring that step's type would pass a broken plan off as whole
        return row, [
            f"step {untagged[0]} has no [modality operation] tag: the answer is cut off "
            "(raise --max-new-tokens) or malformed"
        ]
    return row, plan_errors(row, catalogue)


def plan_from_text(
    task: str,
    text: str,
    *,
    input: str = "",
    source: str = "model:base",
    catalogue: Catalogue | None = None,
) -> Plan:
    """Parse and validate model text; raises `DecompositionError` (one attempt) when invalid."""
    row, errors = answer_errors(text, task, input=input, source=source, catalogue=catalogue)
    if errors:
        raise DecompositionError(task, [(text, errors)])
    return Plan.from_row(row, raw=text)
