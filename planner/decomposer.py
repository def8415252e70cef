"""Task → validated `Plan`, with the model loaded once and tasks generated in batches.

Generation is constrained by the plan grammar (`taskdecomp.grammar`) unless `constrain=False`:
every answer then has the plan's format, and only what a grammar cannot hold (distinct steps,
sensible texts) can still fail validation.

Each round generates for every task still without a valid plan in one batched call. An invalid
answer is re-asked: the conversation continues with the model's answer and a stricter user
message naming what was wrong (`prompts/decompose_retry.j2`), greedy again. After `retries`
re-asks the task gets a `DecompositionError` holding every attempt: never a broken plan.

With `tools=CATALOGUE` (`decompose --tools`) the plans are tool plans: the prompt lists the
catalogue (`taskdecomp.promptfmt`), the grammar is the catalogue's (`tool_plan_grammar`), and an
answer is accepted only when every step names a catalogue tool whose types chain along its
dependencies; the re-ask says so (`prompts/decompose_tools_retry.j2`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from taskdecomp.plan import DecompositionError, Plan, check_task, plan_from_text
from taskdecomp.reporter import Reporter

if TYPE_CHECKING:
    from taskdecomp.catalogue import Catalogue

__all__ = ["Decomposer", "decompose", "DEFAULT_BASE", "Generator"]

DEFAULT_BASE = "smollm2-135m-gguf"
# Chat conversations in, one completion per conversation out (same order).
Generator = Callable[[list[list[dict[str, str]]]], list[str]]


def _source(name: str) -> str:
    # row schema: `model:<id>` with no whitespace
    return "model:" + re.sub(r"\s+", "_", name.strip())


class Decomposer:
    """Holds the model for repeated / batched `decompose` calls.

    `generator` replaces the model (tests of the parsing/retry logic, other backends): a
    callable taking chat conversations and returning one completion each.
    """

    def __init__(
        self,
        adapter: str | None = None,
        *,
        base: str | None = None,
        max_new_tokens: int = 256,
        batch_size: int = 8,
        retries: int = 2,
        quantize_4bit: bool | None = None,
        constrain: bool = True,
        repetition_penalty: float = 1.0,
        fallback: str = "none",
        generator: Generator | None = None,
        source: str | None = None,
        reporter: Reporter | None = None,
        tools: Catalogue | None = None,
    ) -> None:
        self.reporter = reporter or Reporter.silent()
        self.tools = tools  # a catalogue: tool plans (prompt, grammar and acceptance)
        self.retries = max(0, retries)
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.adapter = adapter
        # the plan grammar (taskdecomp.grammar) for the local model; a generator brings its own
        self.constrain, self.repetition_penalty = constrain, repetition_penalty
        if fallback not in ("none", "heuristic"):
            raise ValueError(f"fallback must be 'none' or 'heuristic', got {fallback!r}")
        self.fallback = fallback  # "heuristic": a task the model cannot plan gets the keyword plan
        if generator is not None:
            self._generate = generator
            self.source = source or _source(adapter or base or "custom")
            return
        if adapter:
            from taskdecomp.models import load_model

            self.model, self.tokenizer = load_model(adapter, base=base, quantize_4bit=quantize_4bit)
            self.source = _source(adapter)
        else:
            from taskdecomp.models import load_base_model

            base = base or DEFAULT_BASE
            self.reporter.warn(
                f"no --adapter given: planning with the base model {base}, whose plans are often invalid "
                "or poor; train one with train-adapter and pass --adapter"
            )
            self.model, self.tokenizer = load_base_model(base, quantize_4bit=bool(quantize_4bit))
            self.model.eval()
            self.source = _source(base)
        self._generate = self._generate_with_model

    @classmethod
    def heuristic(cls, *, tools: Catalogue | None = None, **kwargs: Any) -> Decomposer:
        """The keyword planner (`taskdecomp.heuristic`) behind the same parsing and validation:
        no model is loaded (`decompose --planner heuristic`, the app's default planner)."""
        from taskdecomp.heuristic import HEURISTIC_SOURCE, heuristic_answer

        def keyword_rule(conversations: list[list[dict[str, str]]]) -> list[str]:
            # the user message is "task" or "task\n\nInput:\n..." (taskdecomp.promptfmt)
            return [heuristic_answer(c[1]["content"].split("\n\nInput:\n")[0], tools) for c in conversations]

        return cls(generator=keyword_rule, source=HEURISTIC_SOURCE, tools=tools, **kwargs)

    @classmethod
    def remote(
        cls,
        base_url: str,
        model: str | None = None,
        *,
        constraint: str = "grammar",
        server: str = "auto",
        timeout: float = 60.0,
        max_new_tokens: int = 256,
        batch_size: int = 8,
        tools: Catalogue | None = None,
        **kwargs: Any,
    ) -> Decomposer:
        """Plans from an OpenAI-compatible server (`taskdecomp.planner.remote`); asks the server
        for its first model when `model` is None (a `BackendError` when it cannot be reached)."""
        from taskdecomp.planner.remote import RemoteGenerator

        remote = RemoteGenerator(
            base_url, model, constraint=constraint, server=server, max_new_tokens=max_new_tokens,
            concurrency=batch_size, timeout=timeout, catalogue=tools,
        )  # fmt: skip
        return cls(
            remote.model, generator=remote, max_new_tokens=max_new_tokens, batch_size=batch_size,
            tools=tools, **kwargs,
        )  # fmt: skip

    @classmethod
    def from_model(
        cls, model: Any, tokenizer: Any, *, source: str = "model:custom", **kwargs: Any
    ) -> Decomposer:
        """A decomposer over an already loaded model (a notebook, a server, tests)."""
        d = cls(generator=lambda conversations: [], source=source, **kwargs)
        d.model, d.tokenizer = model, tokenizer
        d._generate = d._generate_with_model
        return d

    def _generate_with_model(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        from taskdecomp.generation import generate_batched
        from taskdecomp.grammar import plan_grammar, tool_plan_grammar

        grammar = None
        if self.constrain:
            grammar = plan_grammar() if self.tools is None else tool_plan_grammar(self.tools)
        prompts = [
            self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        return generate_batched(
            self.model,
            self.tokenizer,
            prompts,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            reporter=self.reporter,
            desc="planning",
            grammar=grammar,
            repetition_penalty=self.repetition_penalty,
            catalogue=self.tools if self.constrain else None,
        )

    def decompose_many(
        self, tasks: Sequence[str], inputs: Sequence[str] | None = None
    ) -> list[Plan | DecompositionError]:
        """One result per task, in order: a valid `Plan` or the `DecompositionError`."""
        from taskdecomp.promptfmt import build_messages

        texts = [check_task(t) for t in tasks]
        ctx = [(s or "").strip() for s in (inputs or [""] * len(texts))]
        conversations = [build_messages(t, c, self.tools) for t, c in zip(texts, ctx, strict=True)]
        attempts: list[list[tuple[str, list[str]]]] = [[] for _ in texts]
        results: list[Plan | DecompositionError | None] = [None] * len(texts)
        pending = list(range(len(texts)))
        for round_ in range(self.retries + 1):
            if not pending:
                break
            if round_:
                self.reporter.info(f"re-asking {len(pending)} task(s) with invalid plans (retry {round_})")
            answers = self._generate([conversations[i] for i in pending])
            still = []
            for i, answer in zip(pending, answers, strict=True):
                try:
                    results[i] = plan_from_text(
                        texts[i], answer, input=ctx[i], source=self.source, catalogue=self.tools
                    )
                except DecompositionError as exc:
                    errors = exc.attempts[-1][1]
                    attempts[i].append((answer, errors))
                    conversations[i] = [
                        *conversations[i],
                        {"role": "assistant", "content": answer},
                        {"role": "user", "content": self._retry_prompt(errors[:3])},
                    ]
                    still.append(i)
            pending = still
        for i in pending:
            results[i] = DecompositionError(texts[i], attempts[i])
            if self.fallback == "heuristic":
                from taskdecomp.heuristic import heuristic_plan

                results[i] = heuristic_plan(texts[i], ctx[i], self.tools)
        if pending and self.fallback == "heuristic":
            self.reporter.warn(
                f"{len(pending)} of {len(texts)} task(s) had no valid model plan after {self.retries} "
                "re-ask(s): the heuristic planned them (source 'heuristic')"
            )
        return [r for r in results if r is not None]  # every slot is filled by now

    def _retry_prompt(self, errors: list[str]) -> str:
        from taskdecomp.prompts import render

        if self.tools is None:
            return render("decompose_retry.j2", errors=errors).strip()
        from taskdecomp.grammar import TOOL_PLAN_MAX_STEPS

        example = next((t.id for t in self.tools.tools if "image" in t.inputs), self.tools.tools[0].id)
        return render(
            "decompose_tools_retry.j2", errors=errors, max_steps=TOOL_PLAN_MAX_STEPS, example=example
        ).strip()

    def decompose(self, task: str, input: str = "") -> Plan:
        (result,) = self.decompose_many([task], [input])
        if isinstance(result, DecompositionError):
            raise result
        return result


@functools.lru_cache(maxsize=2)
def _cached(
    adapter: str | None, base: str | None, max_new_tokens: int, retries: int, tools: Catalogue | None
) -> Decomposer:
    return Decomposer(adapter, base=base, max_new_tokens=max_new_tokens, retries=retries, tools=tools)


def decompose(
    task: str,
    adapter: str | None = None,
    *,
    input: str = "",
    base: str | None = None,
    max_new_tokens: int = 256,
    retries: int = 2,
    decomposer: Decomposer | None = None,
    tools: Catalogue | None = None,
) -> Plan:
    """Decompose one task into a validated `Plan` (the model is loaded once per process and
    settings; `DecompositionError` when no valid plan comes out, `InputError` for bad input).
    `tools`: a catalogue (`taskdecomp.catalogue.load_catalogue`) for a tool plan."""
    check_task(task)  # bad input fails before a model is loaded
    d = decomposer or _cached(adapter, base, max_new_tokens, retries, tools)
    return d.decompose(task, input)
