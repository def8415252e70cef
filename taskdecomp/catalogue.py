"""The tool catalogue: typed tools a plan's steps can name.

A catalogue is a YAML file:

    name: multimedia
    version: 1
    tools:
      - id: image-captioning
        description: "Describe what a picture shows in one or two sentences"
        inputs: [image]
        outputs: [text]
        modality: image          # the step tag a step with this tool carries:
        operation: analysis      #   `[image analysis; tool image-captioning; ...]`
        args: [image]            # optional argument names

Ids match ``^[a-z][a-z0-9-]*$`` and are unique; `inputs` and `outputs` are non-empty lists of
the row schema's modalities (text, image, audio, video); `modality` / `operation` are the row
schema's enums. `load_catalogue` checks all of it and reports the first problem in one line;
`default_catalogue()` is the multimedia catalogue this project ships
(`taskdecomp/catalogues/multimedia.yaml`, written here, not copied from TaskBench or HuggingGPT).

Tool A *feeds* tool B when one of A's output types is one of B's input types: a plan may only
link B after A (`after`) when A feeds B.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError
from .schema import MODALITIES, OPERATIONS

__all__ = [
    "TYPES",
    "Tool",
    "Catalogue",
    "load_catalogue",
    "parse_catalogue",
    "default_catalogue",
    "DEFAULT_CATALOGUE_PATH",
]

TYPES = MODALITIES  # the resource types a tool reads and writes
_ID = re.compile(r"^[a-z][a-z0-9-]*$")
_ARG = re.compile(r"^[a-z][a-z0-9_-]*$")
_TOOL_KEYS = ("id", "description", "inputs", "outputs", "modality", "operation", "args")
_REQUIRED = ("id", "description", "inputs", "outputs", "modality", "operation")
_VERSION = 1

DEFAULT_CATALOGUE_PATH = Path(str(resources.files("taskdecomp").joinpath("catalogues", "multimedia.yaml")))


@dataclass(frozen=True)
class Tool:
    id: str
    description: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    modality: str
    operation: str
    args: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "description": self.description,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "modality": self.modality,
            "operation": self.operation,
        }
        if self.args:
            out["args"] = list(self.args)
        return out


@dataclass(frozen=True)
class Catalogue:
    name: str
    tools: tuple[Tool, ...]

    @cached_property
    def _by_id(self) -> dict[str, Tool]:
        return {t.id: t for t in self.tools}

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.tools)

    def __contains__(self, tool_id: object) -> bool:
        return tool_id in self._by_id

    def get(self, tool_id: str) -> Tool:
        """The tool called `tool_id`; InputError (one line) when the catalogue has none."""
        try:
            return self._by_id[tool_id]
        except KeyError:
            raise InputError(
                f"tool '{tool_id}' is not in the catalogue '{self.name}'; use one of its {len(self.tools)} "
                "ids (or pass the catalogue that defines it with --tools)"
            ) from None

    def feeds(self, src_id: str, dst_id: str) -> bool:
        """True when an output type of `src_id` is an input type of `dst_id`."""
        return bool(set(self.get(src_id).outputs) & set(self.get(dst_id).inputs))

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the canonical content (name and tools, in order): for journals and fingerprints."""
        canon = {"name": self.name, "version": _VERSION, "tools": [t.to_dict() for t in self.tools]}
        text = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": _VERSION, "tools": [t.to_dict() for t in self.tools]}


# --- loading ---------------------------------------------------------------------------------


def load_catalogue(path: str | Path) -> Catalogue:
    """Read and check a catalogue file. Every problem is an InputError of one line that names
    the file and the tool: `CATALOGUE <path>: tool 'x' ...: fix the file`."""
    p = Path(path)
    where = f"CATALOGUE {p}"
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{where}: no such file; pass a catalogue YAML file (or 'default')") from None
    except IsADirectoryError:
        raise InputError(f"{where} is a directory; pass a catalogue YAML file") from None
    except UnicodeDecodeError:
        raise InputError(f"{where} is not a text file; pass a catalogue YAML file") from None
    except OSError as exc:
        raise InputError(
            f"{where} cannot be read ({exc.strerror or exc}); pass a readable YAML file"
        ) from None
    return parse_catalogue(text, where)


def parse_catalogue(text: str, where: str = "CATALOGUE") -> Catalogue:
    """Check the YAML text of a catalogue (see `load_catalogue`); `where` starts each message."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{where} is not valid YAML{at}: fix the file") from None
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping with name, version and tools: fix the file")
    unknown = sorted(set(map(str, data)) - {"name", "version", "tools"})
    if unknown:
        raise InputError(f"{where}: unknown key '{unknown[0]}' (allowed: name, version, tools): fix the file")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{where}: missing field 'name' (a non-empty string): fix the file")
    if data.get("version", _VERSION) != _VERSION:
        raise InputError(
            f"{where}: version {data.get('version')!r} is not supported (use version: 1): fix the file"
        )
    raw = data.get("tools")
    if not isinstance(raw, list) or not raw:
        raise InputError(f"{where}: missing field 'tools' (a non-empty list of tools): fix the file")
    tools: list[Tool] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw, start=1):
        tool = _tool(entry, i, where)
        if tool.id in seen:
            raise InputError(f"{where}: tool '{tool.id}' is listed twice (ids must be unique): fix the file")
        seen.add(tool.id)
        tools.append(tool)
    return Catalogue(name=name.strip(), tools=tuple(tools))


def _tool(entry: Any, index: int, where: str) -> Tool:
    if not isinstance(entry, dict):
        raise InputError(
            f"{where}: tool #{index} is not a mapping (id, description, inputs, ...): fix the file"
        )
    label = f"tool '{entry['id']}'" if isinstance(entry.get("id"), str) else f"tool #{index}"
    for key in _REQUIRED:
        if entry.get(key) in (None, "", []):
            what = "no input" if key == "inputs" else "no output" if key == "outputs" else f"no '{key}'"
            raise InputError(f"{where}: {label} has {what}: fix the file")
    unknown = sorted(set(map(str, entry)) - set(_TOOL_KEYS))
    if unknown:
        raise InputError(
            f"{where}: {label} has unknown key '{unknown[0]}' (allowed: {', '.join(_TOOL_KEYS)}): fix the file"
        )
    tid = entry["id"]
    if not isinstance(tid, str) or not _ID.match(tid):
        raise InputError(
            f"{where}: {label} has a bad id (lower-case letters, digits and '-', starting with a letter): fix the file"
        )
    desc = entry["description"]
    if not isinstance(desc, str) or "\n" in desc.strip():
        raise InputError(f"{where}: {label} needs a one-line description: fix the file")
    types: dict[str, tuple[str, ...]] = {}
    for key in ("inputs", "outputs"):
        value = entry[key]
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list):
            raise InputError(f"{where}: {label} {key} must be a list of {', '.join(TYPES)}: fix the file")
        for t in value:
            if t not in TYPES:
                raise InputError(
                    f"{where}: {label} has unknown type {t!r} in {key} (known: {', '.join(TYPES)}): fix the file"
                )
        types[key] = tuple(dict.fromkeys(value))
    if entry["modality"] not in MODALITIES:
        raise InputError(
            f"{where}: {label} has unknown modality {entry['modality']!r} (known: {', '.join(MODALITIES)}): fix the file"
        )
    if entry["operation"] not in OPERATIONS:
        raise InputError(
            f"{where}: {label} has unknown operation {entry['operation']!r} (known: {', '.join(OPERATIONS)}): fix the file"
        )
    args = entry.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) and _ARG.match(a) for a in args):
        raise InputError(
            f"{where}: {label} args must be a list of argument names like [image, prompt]: fix the file"
        )
    if len(set(args)) != len(args):
        raise InputError(f"{where}: {label} names an argument twice: fix the file")
    return Tool(
        id=tid,
        description=desc.strip(),
        inputs=types["inputs"],
        outputs=types["outputs"],
        modality=entry["modality"],
        operation=entry["operation"],
        args=tuple(args),
    )


@cache
def default_catalogue() -> Catalogue:
    """The multimedia catalogue shipped with the package."""
    text = resources.files("taskdecomp").joinpath("catalogues", "multimedia.yaml").read_text(encoding="utf-8")
    return parse_catalogue(text, f"CATALOGUE {DEFAULT_CATALOGUE_PATH}")
