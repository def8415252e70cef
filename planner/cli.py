"""`decompose`: task text → validated plan; optionally run it through the handlers.

    decompose "Record a podcast about bees and cut a video teaser from it" --adapter out/ --json
    decompose --file tasks.txt --adapter out/          # JSON Lines, one per task, model loaded once
    cat tasks.txt | decompose --file -
    decompose "..." --run --dry-run                    # prints the schedule (waves) and placeholders
    decompose "..." --planner heuristic                # the keyword baseline: no model at all
    decompose "..." --base-url http://127.0.0.1:8000/v1 --model task-adapter   # vLLM, SGLang, llama.cpp
    decompose "..." --tools catalogue.yaml --format hugginggpt   # a tool plan, as HuggingGPT's task list
    decompose "..." --planner heuristic --format mermaid        # the plan as a Mermaid flowchart

Local and remote generation are constrained by the plan grammar (`--no-constrain` and
`--constraint none` turn it off).

Exit codes: 0 all plans valid (and all steps ok with --run); 1 some tasks of --file had no valid
plan or some steps failed (their lines say why); 2 bad input, or the single task had no valid plan.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from taskdecomp.cli import entrypoint
from taskdecomp.config import parse_config
from taskdecomp.errors import ConfigError, InputError
from taskdecomp.reporter import Reporter

if TYPE_CHECKING:  # for annotations only: the planner is imported once the arguments are good
    from taskdecomp.catalogue import Catalogue
    from taskdecomp.planner import Decomposer, HandlerRegistry, Plan, RunResult

__all__ = ["DecomposeConfig", "main", "format_schedule"]


@dataclass
class DecomposeConfig:
    task: str | None = field(default=None, metadata={"help": "the task to decompose"})
    file: str | None = field(
        default=None, metadata={"help": "file with one task per line ('-' = stdin); JSON Lines out"}
    )
    input: str = field(default="", metadata={"help": "optional context for the task"})
    adapter: str | None = field(default=None, metadata={"help": "train-adapter output folder or Hub repo id"})
    base: str | None = field(
        default=None, metadata={"help": "base model (default: the adapter's, or smollm2-135m-gguf)"}
    )
    planner: Literal["model", "heuristic"] = field(
        default="model", metadata={"help": "model: the adapter/base or --base-url; heuristic: keyword rule"}
    )
    constrain: bool = field(
        default=True, metadata={"help": "decode under the plan grammar (local model; default on)"}
    )
    repetition_penalty: float = field(
        default=1.0, metadata={"help": "local decoding: >1 discourages repeats"}
    )
    base_url: str | None = field(
        default=None, metadata={"help": "plan with an OpenAI-compatible server (vLLM, SGLang, llama.cpp)"}
    )
    model: str | None = field(
        default=None, metadata={"help": "with --base-url: served model (default: first)"}
    )
    constraint: Literal["grammar", "json", "none"] = field(
        default="grammar", metadata={"help": "with --base-url: grammar, JSON schema or nothing"}
    )
    server: Literal["auto", "vllm", "sglang", "llamacpp"] = field(
        default="auto", metadata={"help": "with --base-url: which request field carries the grammar"}
    )
    timeout: float = field(default=60.0, metadata={"help": "with --base-url: seconds per request"})
    fallback: Literal["none", "heuristic"] = field(
        default="none", metadata={"help": "heuristic: a task with no valid model plan gets the keyword plan"}
    )
    json: bool = field(default=False, metadata={"help": "print the plan as a dataset row (JSON)"})
    format: Literal["text", "json", "hugginggpt", "taskbench", "mermaid"] = field(
        default="text",
        metadata={
            "help": "text, json (a dataset row), hugginggpt ([{task, id, dep, args}]), taskbench, "
            "or mermaid (a flowchart; JSON Lines {instruction, mermaid} with --file)"
        },
    )
    direction: Literal["TD", "LR"] = field(
        default="TD", metadata={"help": "with --format mermaid: top-down (TD) or left-right (LR)"}
    )
    tools: str | None = field(
        default=None,
        metadata={"help": "tool catalogue (YAML; 'default': the built-in one): each step names a tool"},
    )
    run: bool = field(default=False, metadata={"help": "execute the plan with the registered handlers"})
    dry_run: bool = field(default=False, metadata={"help": "with --run: record the schedule, call nothing"})
    text_model: str | None = field(
        default=None, metadata={"help": "model for the OpenAI-compatible text handler"}
    )
    max_new_tokens: int = field(default=256, metadata={"help": "generation bound per answer"})
    batch_size: int = field(default=8, metadata={"help": "tasks per generation batch"})
    retries: int = field(default=2, metadata={"help": "re-asks after an invalid answer"})
    max_concurrency: int = field(default=4, metadata={"help": "steps running at once with --run"})
    quiet: bool = field(default=False, metadata={"help": "only results and warnings"})

    def __post_init__(self) -> None:
        if (self.task is None) == (self.file is None):
            raise ConfigError("give either a task text or --file FILE (one task per line, '-' for stdin)")
        if self.dry_run and not self.run:
            # Refused rather than implied: `decompose TASK --dry-run` reads as "don't do anything
            # for real" and would otherwise silently switch the run on.
            raise ConfigError("--dry-run only applies with --run; add --run to see the schedule")
        for name in ("max_new_tokens", "batch_size", "max_concurrency"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.retries < 0:
            raise ConfigError("--retries must be 0 or more")
        if self.timeout <= 0:
            raise ConfigError("--timeout must be more than 0 seconds")
        if self.repetition_penalty <= 0:
            raise ConfigError("--repetition-penalty must be more than 0 (1.0 = off)")
        if self.base_url is not None:
            if not self.base_url.startswith(("http://", "https://")):
                raise ConfigError(
                    f"--base-url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {self.base_url!r}"
                )
            if self.adapter:
                raise ConfigError(
                    "--adapter and --base-url exclude each other: serve the adapter and pass --model"
                )
        elif self.model is not None:
            raise ConfigError("--model only applies with --base-url (use --base for a local base model)")
        if self.planner == "heuristic" and (self.adapter or self.base_url):
            raise ConfigError("--planner heuristic uses no model: drop --adapter/--base-url")
        if self.json:
            if self.format not in ("text", "json"):
                raise ConfigError(f"--json and --format {self.format} exclude each other: pass one of them")
            self.format = "json"
        if self.direction != "TD" and self.format != "mermaid":
            raise ConfigError("--direction only applies with --format mermaid")


def _read_tasks(file: str) -> list[str]:
    if file == "-":
        text = sys.stdin.read()
    else:
        hint = "pass a text file with one task per line"
        try:
            text = Path(file).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"task file {file} not found; {hint}") from None
        except IsADirectoryError:
            raise InputError(f"task file {file} is a directory; {hint}") from None
        except PermissionError:
            raise InputError(
                f"task file {file} is not readable (permission denied); fix its permissions"
            ) from None
        except UnicodeDecodeError:
            raise InputError(f"task file {file} is not a text file (not UTF-8); {hint}") from None
        except OSError as exc:
            raise InputError(
                f"cannot read task file {file}: {exc.strerror or exc.__class__.__name__}"
            ) from None
        if "\x00" in text:  # valid UTF-8 can still be binary (NUL bytes): not task text
            raise InputError(f"task file {file} is not a text file (it has NUL bytes); {hint}")
    tasks = [line.strip() for line in text.splitlines() if line.strip()]
    if not tasks:
        raise InputError(f"no tasks in {file}: it is empty; write one task per line")
    return tasks


def format_schedule(plan: Plan, result: RunResult) -> str:
    """Waves of the run with each step's status (the dry run's schedule)."""
    lines = [f"schedule: {len(result.waves)} wave(s), {len(plan.steps)} step(s)"]
    for k, wave in enumerate(result.waves, start=1):
        lines.append(f"wave {k}:")
        for n in wave:
            s, r = plan.step(n), result.steps[n]
            after = f" after {', '.join(map(str, s.depends_on))}" if s.depends_on else ""
            tool = f" tool {s.tool}" if s.tool else ""
            detail = r.output if r.status == "ok" else r.error
            lines.append(f"  step {n} [{s.modality} {s.operation}{tool}{after}] {r.status}: {detail}")
    return "\n".join(lines)


def _handlers(cfg: DecomposeConfig, reporter: Reporter) -> HandlerRegistry:
    from taskdecomp.planner import HandlerRegistry
    from taskdecomp.planner.handlers import OpenAITextHandler

    if cfg.dry_run:
        return HandlerRegistry.dry_run()
    registry = HandlerRegistry.from_entry_points(warn=reporter.warn)
    if cfg.text_model or "text" not in registry:
        registry.register("text", OpenAITextHandler(model=cfg.text_model))
    return registry


def _check_hub_adapter(adapter: str) -> None:
    """A Hub `--adapter`: one quick request first, so a dead endpoint or a wrong id is one line
    before the model libraries load (and print their own noise)."""
    if Path(adapter).exists() or adapter.count("/") != 1 or adapter.startswith((".", "/")):
        return  # a local folder (or not an id): models.load_model says what is wrong with it
    from taskdecomp.hub_probe import check_hub_repo

    check_hub_repo(adapter, "model", "--adapter")


def _checked(task: str) -> str | InputError:
    from taskdecomp.plan import check_task

    try:
        return check_task(task)
    except InputError as exc:
        return exc


def _catalogue(cfg: DecomposeConfig) -> Catalogue | None:
    """`--tools`: the catalogue file (one line and exit 2 when it is bad), or None."""
    if cfg.tools is None:
        return None
    from taskdecomp.catalogue import default_catalogue, load_catalogue

    return default_catalogue() if cfg.tools == "default" else load_catalogue(cfg.tools)


def _decomposer(cfg: DecomposeConfig, reporter: Reporter, tools: Catalogue | None = None) -> Decomposer:
    from taskdecomp.planner import Decomposer

    common: dict[str, Any] = {
        "max_new_tokens": cfg.max_new_tokens,
        "batch_size": cfg.batch_size,
        "retries": cfg.retries,
        "fallback": cfg.fallback,
        "reporter": reporter,
        "tools": tools,
    }
    if cfg.planner == "heuristic":
        return Decomposer.heuristic(**common)
    if cfg.base_url:
        return Decomposer.remote(
            cfg.base_url,
            cfg.model,
            constraint=cfg.constraint,
            server=cfg.server,
            timeout=cfg.timeout,
            **common,
        )
    if cfg.adapter:
        _check_hub_adapter(cfg.adapter)
    return Decomposer(
        cfg.adapter,
        base=cfg.base,
        constrain=cfg.constrain,
        repetition_penalty=cfg.repetition_penalty,
        **common,
    )


@entrypoint("decompose")
def main(argv: Sequence[str] | None = None) -> int:
    from taskdecomp.plan import check_task
    from taskdecomp.planner import DecompositionError

    cfg = parse_config(
        DecomposeConfig,
        argv,
        prog="decompose",
        description="Decompose a multi-modal task into typed, ordered steps (and optionally run them).",
        positionals=("task",),
    )
    reporter = Reporter(quiet=cfg.quiet)
    tasks = [cfg.task or ""] if cfg.file is None else _read_tasks(cfg.file)
    if cfg.file is None:
        check_task(tasks[0])  # bad input fails before the model loads
    tools = _catalogue(cfg)  # a bad catalogue fails before the model loads too
    handlers = _handlers(cfg, reporter) if cfg.run else None
    decomposer = _decomposer(cfg, reporter, tools)
    plans: list[Plan | DecompositionError | InputError]
    if cfg.file is None:
        plans = [decomposer.decompose(tasks[0], cfg.input)]  # DecompositionError → one line, exit 2
    else:
        # Lines too short/long for a row are reported per line, not fatal for the others.
        checked = [_checked(t) for t in tasks]
        done = iter(decomposer.decompose_many([t for t in checked if isinstance(t, str)]))
        plans = [next(done) if isinstance(t, str) else t for t in checked]
    failed = 0
    for task, plan in zip(tasks, plans, strict=True):
        if isinstance(plan, DecompositionError | InputError):
            failed += 1
            print(json.dumps({"instruction": task, "error": str(plan)}, ensure_ascii=False), flush=True)
            continue
        record = plan.to_row()
        run_result = plan.run(handlers, max_concurrency=cfg.max_concurrency) if handlers is not None else None
        if run_result is not None and not run_result.ok:
            failed += 1
        if cfg.format in ("hugginggpt", "taskbench"):
            out = plan.to_hugginggpt(tools) if cfg.format == "hugginggpt" else plan.to_taskbench()
            print(json.dumps(out, ensure_ascii=False, indent=None if cfg.file else 2), flush=True)
            if run_result is not None:  # stdout stays the format's JSON
                reporter.info(format_schedule(plan, run_result))
        elif cfg.format == "mermaid":
            diagram = plan.to_mermaid(cfg.direction)
            if cfg.file is not None:  # one JSON line per task, like every --file format
                print(json.dumps({"instruction": task, "mermaid": diagram}, ensure_ascii=False), flush=True)
            else:
                print(diagram, end="", flush=True)
            if run_result is not None:  # stdout stays the diagram
                reporter.info(format_schedule(plan, run_result))
        elif cfg.format == "json" or cfg.file is not None:
            if run_result is not None:
                record["run"] = run_result.to_dict()
            print(json.dumps(record, ensure_ascii=False), flush=True)
        else:
            print(f"{plan.render()}\n(structure: {plan.structure}; source: {plan.source})", flush=True)
            if run_result is not None:
                print(format_schedule(plan, run_result), flush=True)
    if failed and cfg.file is not None:
        reporter.warn(
            f"{failed} of {len(tasks)} task(s) had no valid plan or a failed step (see their lines)"
        )
    return 1 if failed else 0
