"""Planning: task → validated, typed `Plan` (`decompose`), and running a plan's steps through
per-modality handlers (`Plan.run`)."""

from __future__ import annotations

from taskdecomp.dispatch import (
    ENTRY_POINT_GROUP,
    Handler,
    HandlerRegistry,
    RunResult,
    StepResult,
    arun,
    run,
)
from taskdecomp.heuristic import heuristic_plan
from taskdecomp.plan import DecompositionError, Plan, Step
from taskdecomp.planner.decomposer import DEFAULT_BASE, Decomposer, decompose
from taskdecomp.planner.remote import RemoteGenerator

__all__ = [
    "DEFAULT_BASE",
    "ENTRY_POINT_GROUP",
    "Decomposer",
    "DecompositionError",
    "Handler",
    "HandlerRegistry",
    "Plan",
    "RemoteGenerator",
    "RunResult",
    "Step",
    "StepResult",
    "arun",
    "decompose",
    "heuristic_plan",
    "run",
]
