"""Executing a plan: each step goes to the handler registered for its tool, else for its modality.

Steps start as soon as all their dependencies succeeded (not wave by wave), at most
`max_concurrency` at a time, on one asyncio loop. A handler receives the step and the results of
the steps it depends on. A step whose handler raises is `failed`; every step that depends on it,
directly or not, is `skipped`; independent steps still finish.

Handlers are plug-ins: anything with `async __call__(step, inputs) -> result`. Third-party
packages add them through the entry-point group `taskdecomp.handlers`, one entry per modality
or per catalogue tool id (a name that is no modality is a tool id), pointing at a class
(instantiated without arguments), a factory function, or an async function used as is:

    [project.entry-points."taskdecomp.handlers"]
    image = "my_package.handlers:ImageHandler"
    speech-recognition = "my_package.handlers:Whisper"

A step that names a tool (`decompose --tools`) goes to that tool's handler when one is
registered, else to its modality's handler.

A handler may also have `async aclose()`: the synchronous `run` (which owns its event loop)
calls it when the run ends, so clients and connection pools bound to that loop are closed
with it. The handler must stay usable afterwards (reopen lazily on the next run). `arun` leaves
that to its caller, who owns the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, runtime_checkable

from taskdecomp.errors import ConfigError, InputError, redact
from taskdecomp.schema import MODALITIES

if TYPE_CHECKING:  # `plan` imports this module for Plan.run; at run time a plan is duck-typed here
    from taskdecomp.plan import Plan, Step

__all__ = [
    "ENTRY_POINT_GROUP",
    "DryRunHandler",
    "Handler",
    "HandlerRegistry",
    "StepResult",
    "RunResult",
    "aclose_handlers",
    "arun",
    "run",
]

ENTRY_POINT_GROUP = "taskdecomp.handlers"
_TOOL_ID = re.compile(r"^[a-z][a-z0-9-]*$")  # the catalogue's id rule
Status = Literal["ok", "failed", "skipped"]


@runtime_checkable
class Handler(Protocol):
    def __call__(self, step: Step, inputs: Mapping[int, Any]) -> Awaitable[Any]: ...


class HandlerRegistry:
    """Modality → handler, and tool id → handler (`register_tool`). Later registrations replace
    earlier ones."""

    def __init__(self, handlers: Mapping[str, Handler] | None = None) -> None:
        self._handlers: dict[str, Handler] = {}
        self._tools: dict[str, Handler] = {}
        self.log: list[tuple[str, int, float]] | None = None  # the dry run's schedule, see dry_run()
        for modality, handler in (handlers or {}).items():
            self.register(modality, handler)

    def register(self, modality: str, handler: Handler) -> HandlerRegistry:
        if modality not in MODALITIES:
            raise ConfigError(
                f"cannot register a handler for '{modality}': modalities are {', '.join(MODALITIES)}"
            )
        if not callable(handler):
            raise ConfigError(
                f"the handler for '{modality}' is not callable (need async __call__(step, inputs))"
            )
        self._handlers[modality] = handler
        return self

    def register_tool(self, tool: str, handler: Handler) -> HandlerRegistry:
        """The handler for steps that name `tool` (a catalogue id), before their modality's."""
        if not _TOOL_ID.match(tool) or tool in MODALITIES:
            raise ConfigError(
                f"cannot register a handler for tool {tool!r}: a tool id is lower-case letters, digits "
                "and '-', starting with a letter, and no modality name"
            )
        if not callable(handler):
            raise ConfigError(
                f"the handler for tool '{tool}' is not callable (need async __call__(step, inputs))"
            )
        self._tools[tool] = handler
        return self

    def get(self, modality: str) -> Handler | None:
        return self._handlers.get(modality)

    def get_tool(self, tool: str) -> Handler | None:
        return self._tools.get(tool)

    def for_step(self, step: Step) -> Handler | None:
        """The step's tool handler when registered, else its modality's (None: neither)."""
        tool = getattr(step, "tool", None)
        return (self._tools.get(tool) if tool else None) or self._handlers.get(step.modality)

    @property
    def tools(self) -> list[str]:
        return sorted(self._tools)

    def __contains__(self, modality: object) -> bool:
        return modality in self._handlers

    @property
    def modalities(self) -> list[str]:
        return sorted(self._handlers)

    @classmethod
    def from_entry_points(
        cls, group: str = ENTRY_POINT_GROUP, *, warn: Callable[[str], None] | None = None
    ) -> HandlerRegistry:
        """Handlers that installed packages declare in `group` (entry-point name = modality).
        A plug-in that fails to load is left out (with a warning), not fatal."""
        from importlib.metadata import entry_points

        registry = cls()
        for ep in sorted(entry_points(group=group), key=lambda e: (e.name, e.value)):
            try:
                handler = _instantiate(ep.load())
                if ep.name in MODALITIES:
                    registry.register(ep.name, handler)
                else:
                    registry.register_tool(ep.name, handler)
            except Exception as exc:  # a broken third-party plug-in must not break the others
                if warn:
                    warn(
                        f"handler plug-in {ep.name} = {ep.value} not loaded: {exc.__class__.__name__}: {exc}"
                    )
        return registry

    @classmethod
    def dry_run(cls, delay: float = 0.0) -> HandlerRegistry:
        """A `DryRunHandler` for every modality, sharing one schedule log (`.log`)."""
        log: list[tuple[str, int, float]] = []
        registry = cls({m: DryRunHandler(log=log, delay=delay) for m in MODALITIES})
        registry.log = log
        return registry


class DryRunHandler:
    """Runs nothing: records when each step started/finished in `log` and returns a placeholder
    naming the step and the inputs it would have received."""

    def __init__(self, log: list[tuple[str, int, float]] | None = None, delay: float = 0.0) -> None:
        self.log = log if log is not None else []
        self.delay = delay

    async def __call__(self, step: Step, inputs: Mapping[int, Any]) -> str:
        self.log.append(("start", step.step, time.monotonic()))
        if self.delay:
            await asyncio.sleep(self.delay)
        self.log.append(("end", step.step, time.monotonic()))
        after = f" using steps {', '.join(map(str, sorted(inputs)))}" if inputs else ""
        what = getattr(step, "tool", None) or f"{step.modality} {step.operation}"
        return f"<{what} result of step {step.step}{after}>"


def _instantiate(obj: Any) -> Handler:
    if inspect.isclass(obj):
        # a handler class; isclass() narrows `obj` to `type`, whose instances are `object` to
        # mypy: what they are is checked by register() (callable), not by the type system
        return cast(Handler, obj())
    if inspect.iscoroutinefunction(obj) or (callable(obj) and not inspect.isroutine(obj)):
        return obj  # an async function, or an instance with async __call__
    if callable(obj):
        return obj()  # a factory function
    raise TypeError(f"{obj!r} is not a handler, class or factory")


@dataclass
class StepResult:
    step: int
    modality: str
    status: Status
    output: Any = None
    error: str | None = None
    started: float | None = None  # time.monotonic()
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = (
            self.output
            if isinstance(self.output, str | int | float | bool | type(None) | list | dict)
            else repr(self.output)
        )
        return {
            "step": self.step,
            "modality": self.modality,
            "status": self.status,
            "output": out,
            "error": self.error,
        }


@dataclass
class RunResult:
    steps: dict[int, StepResult]
    waves: list[list[int]]
    started_order: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.steps.values())

    @property
    def outputs(self) -> dict[int, Any]:
        return {n: r.output for n, r in self.steps.items() if r.status == "ok"}

    @property
    def errors(self) -> dict[int, str]:
        return {n: r.error or "" for n, r in self.steps.items() if r.status != "ok"}

    def status(self, step: int) -> Status:
        return self.steps[step].status

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "waves": self.waves,
            "started_order": self.started_order,
            "steps": [self.steps[n].to_dict() for n in sorted(self.steps)],
        }


def _registry(handlers: HandlerRegistry | Mapping[str, Handler] | None) -> HandlerRegistry:
    if handlers is None:
        return HandlerRegistry.from_entry_points()
    return handlers if isinstance(handlers, HandlerRegistry) else HandlerRegistry(handlers)


async def arun(
    plan: Plan, handlers: HandlerRegistry | Mapping[str, Handler] | None = None, *, max_concurrency: int = 4
) -> RunResult:
    """Run `plan` (see the module doc). Missing handlers are an `InputError` before anything runs."""
    if max_concurrency < 1:
        raise ConfigError(f"max_concurrency must be at least 1, got {max_concurrency}")
    registry = _registry(handlers)
    missing = sorted({s.modality for s in plan.steps if registry.for_step(s) is None})
    if missing:
        raise InputError(
            f"no handler for {', '.join(missing)} steps; register one (HandlerRegistry.register or the "
            f"'{ENTRY_POINT_GROUP}' entry points) or use the dry run"
        )
    results: dict[int, StepResult] = {}
    started_order: list[int] = []
    gate = asyncio.Semaphore(max_concurrency)
    tasks: dict[int, asyncio.Task[StepResult]] = {}

    async def execute(step: Step) -> StepResult:
        deps = [await tasks[d] for d in step.depends_on]
        bad = [d.step for d in deps if d.status != "ok"]
        if bad:
            why = "failed" if all(results[b].status == "failed" for b in bad) else "did not run"
            res = StepResult(step.step, step.modality, "skipped", error=f"step {bad[0]} {why}")
        else:
            inputs = {d.step: d.output for d in deps}
            async with gate:
                started = time.monotonic()
                started_order.append(step.step)
                try:
                    output = await registry.for_step(step)(step, inputs)  # type: ignore[misc]
                    res = StepResult(step.step, step.modality, "ok", output, None, started, time.monotonic())
                except Exception as exc:  # a failing handler fails its step, not the run
                    error = redact(f"{exc.__class__.__name__}: {exc}")
                    res = StepResult(
                        step.step, step.modality, "failed", None, error, started, time.monotonic()
                    )
        results[step.step] = res
        return res

    # Steps only depend on earlier steps, so creating the tasks in step order always finds
    # the dependencies' tasks already there.
    for step in sorted(plan.steps, key=lambda s: s.step):
        tasks[step.step] = asyncio.create_task(execute(step))
    await asyncio.gather(*tasks.values())
    return RunResult(steps=dict(sorted(results.items())), waves=plan.waves(), started_order=started_order)


def run(
    plan: Plan, handlers: HandlerRegistry | Mapping[str, Handler] | None = None, *, max_concurrency: int = 4
) -> RunResult:
    """Synchronous `arun` (from code that has no event loop running; else await `arun`)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_run_then_close(plan, _registry(handlers), max_concurrency))
    raise ConfigError("plan.run() was called inside a running event loop; use `await plan.arun(...)`")


async def _run_then_close(plan: Plan, registry: HandlerRegistry, max_concurrency: int) -> RunResult:
    try:
        return await arun(plan, registry, max_concurrency=max_concurrency)
    finally:
        await aclose_handlers(registry)


async def aclose_handlers(registry: HandlerRegistry) -> None:
    """`await h.aclose()` for each distinct handler that has one (the loop they are bound to is
    about to end; left open, their connections leak until the process exits)."""
    seen: set[int] = set()
    handlers = [registry.get(m) for m in registry.modalities] + [registry.get_tool(t) for t in registry.tools]
    for handler in handlers:
        close = getattr(handler, "aclose", None)
        if handler is None or id(handler) in seen or not callable(close):
            continue
        seen.add(id(handler))
        # closing is cleanup: a failure there must not turn a finished run into an error
        with contextlib.suppress(Exception):
            await close()
