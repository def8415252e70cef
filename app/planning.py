"""The Plan tab's logic (no gradio here): a task and a planner in, a plan, its graph and its
dry-run schedule out.

Planners are those of `decompose`: the keyword heuristic (no model), an adapter (a
train-adapter folder or a Hub id, loaded once and kept), or an OpenAI-compatible server
(`--base-url` and a model name). Bad input is a `TaskDecompError` with one line: an empty or
too short task (`taskdecomp.plan.check_task`), a missing adapter, an unreachable server.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskdecomp.errors import ConfigError
from taskdecomp.mermaid import escape_markdown, mermaid_block
from taskdecomp.plan import check_task

if TYPE_CHECKING:
    from taskdecomp.plan import Plan
    from taskdecomp.planner import Decomposer

__all__ = [
    "PLANNERS",
    "SCHEDULE_HEADERS",
    "PlannerSpec",
    "ProgressFn",
    "get_decomposer",
    "plan_task",
    "plan_markdown",
    "schedule_rows",
]

PLANNERS: tuple[str, ...] = ("heuristic", "adapter", "server")
SCHEDULE_HEADERS = ["wave", "step", "modality", "operation", "after", "tool", "description"]
ProgressFn = Callable[[float, str], None]
_KEEP_MODELS = 2  # decomposers kept loaded (an adapter is a whole model in memory)
_CACHE: OrderedDict[tuple[str, ...], Decomposer] = OrderedDict()
_LOCK = threading.Lock()


@dataclass(frozen=True)
class PlannerSpec:
    """Which planner: `heuristic`, `adapter` (folder or Hub id) or `server` (base URL + model)."""

    kind: str = "heuristic"
    adapter: str = ""
    base_url: str = ""
    model: str = ""
    timeout: float = 30.0

    def checked(self) -> PlannerSpec:
        """The spec with its fields stripped; `ConfigError` (one line) when one is missing or bad."""
        spec = PlannerSpec(
            self.kind, self.adapter.strip(), self.base_url.strip(), self.model.strip(), self.timeout
        )
        if spec.kind not in PLANNERS:
            raise ConfigError(f"unknown planner {spec.kind!r}: pick one of {', '.join(PLANNERS)}")
        if spec.kind == "adapter" and not spec.adapter:
            raise ConfigError("no adapter given: type a train-adapter output folder or a Hub repo id")
        if spec.kind == "server":
            if not spec.base_url:
                raise ConfigError("no server given: type the base URL of an OpenAI-compatible server")
            if not spec.base_url.startswith(("http://", "https://")):
                raise ConfigError(
                    f"the server URL must be http(s), such as http://127.0.0.1:8000/v1, got {spec.base_url!r}"
                )
        return spec

    @property
    def key(self) -> tuple[str, ...]:
        if self.kind == "adapter":
            return (self.kind, self.adapter)
        if self.kind == "server":
            return (self.kind, self.base_url, self.model)
        return (self.kind,)

    @property
    def label(self) -> str:
        if self.kind == "adapter":
            return f"adapter {self.adapter}"
        if self.kind == "server":
            return f"{self.model or 'the first model'} at {self.base_url}"
        return "the keyword heuristic"


def _looks_like_repo(name: str) -> bool:
    return (
        not Path(name).expanduser().exists() and name.count("/") == 1 and not name.startswith((".", "/", "~"))
    )


def _build(spec: PlannerSpec, progress: ProgressFn) -> Decomposer:
    from taskdecomp.planner import Decomposer

    if spec.kind == "heuristic":
        return Decomposer.heuristic()
    if spec.kind == "server":
        progress(0.1, f"asking {spec.base_url} for its models")
        return Decomposer.remote(spec.base_url, spec.model or None, timeout=spec.timeout)
    if _looks_like_repo(spec.adapter):
        from taskdecomp.hub_probe import check_hub_repo

        progress(0.05, f"looking up {spec.adapter} on the Hub")
        check_hub_repo(spec.adapter, "model", "adapter")
    progress(0.1, f"loading adapter {spec.adapter} (once; a minute on a CPU)")
    return Decomposer(spec.adapter)


def get_decomposer(spec: PlannerSpec, progress: ProgressFn | None = None) -> Decomposer:
    """The decomposer for `spec`, built on first use and kept (the last few models)."""
    spec = spec.checked()
    report = progress or (lambda fraction, desc: None)
    if spec.kind == "heuristic":  # no model: nothing to keep, nothing to wait for
        return _build(spec, report)
    with _LOCK:  # one load at a time: two users asking for the same adapter load it once
        found = _CACHE.get(spec.key)
        if found is not None:
            _CACHE.move_to_end(spec.key)
            return found
        decomposer = _build(spec, report)
        _CACHE[spec.key] = decomposer
        while len(_CACHE) > _KEEP_MODELS:
            _CACHE.popitem(last=False)
        return decomposer


def plan_task(
    task: str, input: str = "", spec: PlannerSpec | None = None, progress: ProgressFn | None = None
) -> Plan:
    """A validated plan for `task`; a `TaskDecompError` says in one line why there is none."""
    text = check_task(task)  # empty or too short: one line, before any model loads
    spec = (spec or PlannerSpec()).checked()
    report = progress or (lambda fraction, desc: None)
    decomposer = get_decomposer(spec, report)
    report(0.8, f"planning with {spec.label}")
    plan = decomposer.decompose(text, (input or "").strip())
    report(1.0, "done")
    return plan


def schedule_rows(plan: Plan) -> list[list[Any]]:
    """The dry-run schedule: one row per step, by wave (`Plan.waves`: steps of a wave run together)."""
    rows: list[list[Any]] = []
    for k, wave in enumerate(plan.waves(), start=1):
        for n in sorted(wave):
            s = plan.step(n)
            after = ", ".join(map(str, s.depends_on)) or "—"
            rows.append([k, n, s.modality, s.operation, after, s.tool or "", s.description])
    return rows


def plan_markdown(plan: Plan) -> str:
    """The plan for the page: a summary line, the Mermaid graph and the numbered steps."""
    waves = plan.waves()
    head = (
        f"**{len(plan.steps)} step(s)**, structure `{plan.structure}`, {len(waves)} wave(s), "
        f"source `{plan.source}`"
    )
    steps = []
    for s in plan.steps:
        after = f"; after {', '.join(map(str, s.depends_on))}" if s.depends_on else ""
        tool = f"; tool `{s.tool}`" if s.tool else ""
        steps.append(
            f"{s.step}. {escape_markdown(s.description)} *[{s.modality} {s.operation}{tool}{after}]*"
        )
    return "\n".join([head, "", mermaid_block(plan.to_mermaid()), "", *steps]) + "\n"
