"""Tool plans in the formats of HuggingGPT and TaskBench, so their own tools can read our plans.

A step's inputs are its `args` (literals such as `photo.jpg`, or `<step-k>`: the output of step
k), then one reference to every step it depends on that no argument names yet: in a plan, a
step receives the results of the steps it comes after (`Plan.run`), so each dependency is an
input, and both formats express dependencies through such references.

- HuggingGPT (its task-planning stage): `[{"task", "id", "dep", "args"}]` with ids from 0, `dep`
  the ids of the prerequisite tasks or `[-1]` for none, and `args` a dict whose references read
  `<GENERATED>-id`. Argument names are the tool's `args` names from the catalogue; past those (or
  without a catalogue) the resource type (`text`, `image`, `audio`, `video`: HuggingGPT's own
  keys), numbered from the second of a kind (`image`, `image-2`).
- TaskBench (multimedia, "resource" dependencies): `{"task_steps": ["Step 1: ..."], "task_nodes":
  [{"task", "arguments"}], "task_links": [{"source", "target"}]}`, references `<node-j>` from 0.

A step without a tool (a plan made without `--tools`) is written with the task
`<modality>-<operation>`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # plan imports this module; the types are for annotations only
    from taskdecomp.plan import Plan, Step

__all__ = [
    "REFERENCE",
    "EXTENSION_TYPES",
    "literal_type",
    "reference_step",
    "step_inputs",
    "to_hugginggpt",
    "to_taskbench",
]

REFERENCE = re.compile(r"^<step-(\d+)>$")

# File extensions by resource type (also the heuristic planner's file rule).
EXTENSION_TYPES = {
    "video": "mp4 mov avi mkv webm m4v wmv flv mpg mpeg",
    "audio": "wav mp3 m4a flac ogg aac opus wma aiff",
    "image": "jpg jpeg png gif webp bmp tif tiff heic svg",
    "text": "txt pdf docx doc md csv json html rtf odt pptx xlsx srt vtt",
}
_EXT_TYPE = {ext: kind for kind, exts in EXTENSION_TYPES.items() for ext in exts.split()}
_EXT = re.compile(r"\.([A-Za-z0-9]{2,5})(?:[?#]\S*)?$")


class _Tools(Protocol):  # what is read of a `taskdecomp.catalogue.Catalogue`
    def get(self, tool_id: str) -> Any: ...


def literal_type(value: str) -> str:
    """The resource type of a literal argument: by file extension (a URL's too), else text."""
    m = _EXT.search(value.strip())
    return _EXT_TYPE.get(m.group(1).lower(), "text") if m else "text"


def reference_step(value: str) -> int | None:
    """k for `<step-k>`, None for a literal."""
    m = REFERENCE.match(value.strip())
    return int(m.group(1)) if m else None


def step_inputs(step: Step) -> list[str]:
    """The step's args, then `<step-d>` for each dependency d no argument refers to."""
    named = {reference_step(a) for a in step.args}
    return [*step.args, *(f"<step-{d}>" for d in step.depends_on if d not in named)]


def _task(step: Step) -> str:
    return step.tool or f"{step.modality}-{step.operation}"


def _output_type(step: Step, catalogue: _Tools | None) -> str:
    """What a step produces: its tool's first output type; without one, the step's modality
    for a generation or transformation (which names what it produces), text for an analysis."""
    if catalogue is not None and step.tool:
        outputs: Sequence[str] = catalogue.get(step.tool).outputs
        if outputs:
            return outputs[0]
    return "text" if step.operation == "analysis" else step.modality


def to_hugginggpt(plan: Plan, catalogue: _Tools | None = None) -> list[dict[str, Any]]:
    steps = {s.step: s for s in plan.steps}
    tasks = []
    for s in plan.steps:
        names: Sequence[str] = catalogue.get(s.tool).args if catalogue is not None and s.tool else ()
        args: dict[str, str] = {}
        for i, value in enumerate(step_inputs(s)):
            ref = reference_step(value)
            if i < len(names):
                key = names[i]
            else:
                key = _output_type(steps[ref], catalogue) if ref in steps else literal_type(value)
            unique, n = key, 1
            while unique in args:
                n += 1
                unique = f"{key}-{n}"
            args[unique] = f"<GENERATED>-{ref - 1}" if ref is not None else value
        tasks.append(
            {
                "task": _task(s),
                "id": s.step - 1,
                "dep": [d - 1 for d in s.depends_on] or [-1],
                "args": args,
            }
        )
    return tasks


def to_taskbench(plan: Plan) -> dict[str, Any]:
    steps = {s.step: s for s in plan.steps}
    nodes = []
    for s in plan.steps:
        arguments = []
        for value in step_inputs(s):
            ref = reference_step(value)
            arguments.append(f"<node-{ref - 1}>" if ref is not None else value)
        nodes.append({"task": _task(s), "arguments": arguments})
    return {
        "task_steps": [f"Step {s.step}: {s.description}" for s in plan.steps],
        "task_nodes": nodes,
        "task_links": [
            {"source": _task(steps[d]), "target": _task(s)}
            for s in plan.steps
            for d in s.depends_on
            if d in steps
        ],
    }
