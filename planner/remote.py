"""Plans from any OpenAI-compatible server, under the same grammar as local decoding.

    decompose "..." --base-url http://127.0.0.1:8000/v1 --model task-adapter

The prompt is the fine-tuned one (`taskdecomp.promptfmt`: the server applies the chat
template the adapter was trained with), and the constraint is the grammar of
`taskdecomp.grammar`, sent the way each server reads it:

- vLLM (>= 0.10): `structured_outputs: {"grammar": ...}`; the removed `guided_*` fields are
  ignored silently by current vLLM, so they are never sent;
- SGLang: `ebnf`;  llama.cpp's server: `grammar`;
- `--server auto` sends all three (each server reads its own and ignores the others);
- `--constraint json`: `response_format` with the plan's JSON Schema, for servers (OpenAI)
  that only take JSON; the answer is turned into plan text, then parsed like any other.

With `--tools CATALOGUE` the grammar (and the JSON Schema) is the catalogue's tool plan
(`taskdecomp.grammar.tool_plan_grammar`), the same text local decoding uses.

Whatever comes back is parsed and validated exactly as local output is (`Decomposer`).
Server failures are one-line `BackendError`s that say what to change.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from taskdecomp.errors import AuthError, BackendError, InputError
from taskdecomp.grammar import plan_grammar, plan_json_schema, plan_text_from_json, tool_plan_grammar

if TYPE_CHECKING:
    from taskdecomp.catalogue import Catalogue

__all__ = ["RemoteGenerator", "Constraint", "Server", "CONSTRAINTS", "SERVERS"]

Constraint = Literal["grammar", "json", "none"]
Server = Literal["auto", "vllm", "sglang", "llamacpp"]
CONSTRAINTS: tuple[str, ...] = ("grammar", "json", "none")
SERVERS: tuple[str, ...] = ("auto", "vllm", "sglang", "llamacpp")


def constraint_body(constraint: str, server: str, catalogue: Catalogue | None = None) -> dict[str, Any]:
    """The request fields that carry the constraint (merged into the chat request body); with a
    catalogue, the tool plan's grammar / JSON Schema."""
    if constraint == "none":
        return {}
    if constraint == "json":
        schema = {"name": "plan", "schema": plan_json_schema(catalogue=catalogue), "strict": True}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    grammar = plan_grammar() if catalogue is None else tool_plan_grammar(catalogue)
    fields: dict[str, dict[str, Any]] = {
        "vllm": {"structured_outputs": {"grammar": grammar}},
        "sglang": {"ebnf": grammar},
        "llamacpp": {"grammar": grammar},
    }
    if server == "auto":
        return {k: v for f in fields.values() for k, v in f.items()}
    return fields[server]


class RemoteGenerator:
    """A `Decomposer` generator: chat conversations in, one completion each out (in order)."""

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        constraint: str = "grammar",
        server: str = "auto",
        max_new_tokens: int = 256,
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 2,
        api_key: str | None = None,
        catalogue: Catalogue | None = None,
    ) -> None:
        import openai

        if constraint not in CONSTRAINTS:
            raise InputError(f"--constraint must be one of {', '.join(CONSTRAINTS)}, got {constraint!r}")
        if server not in SERVERS:
            raise InputError(f"--server must be one of {', '.join(SERVERS)}, got {server!r}")
        self.base_url = base_url.rstrip("/")
        self.constraint, self.server = constraint, server
        self.catalogue = catalogue
        self.max_new_tokens, self.concurrency = max_new_tokens, max(1, concurrency)
        # local servers take any key; OpenAI needs the real one (from the environment only)
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=key, timeout=timeout, max_retries=max_retries
        )
        self.model = model or self._first_model()

    def _fail(self, exc: Exception) -> BackendError:
        """One line for a failed request: what went wrong and which flag to change."""
        o = self._openai
        where = f"--base-url {self.base_url}"
        if isinstance(exc, o.APITimeoutError):
            return BackendError(f"{where} did not answer in time; check the server or raise --timeout")
        if isinstance(exc, o.APIConnectionError):
            return BackendError(f"cannot reach {where}; start the server or fix the URL")
        if isinstance(exc, o.AuthenticationError | o.PermissionDeniedError):
            return AuthError(f"{where} refused the key ({exc.status_code}); set OPENAI_API_KEY")
        if isinstance(exc, o.NotFoundError):
            return BackendError(
                f"{where} has no model {self.model!r} or no /chat/completions ({exc.status_code}): "
                "is it an OpenAI-compatible server? check --model"
            )
        if isinstance(exc, o.APIStatusError):
            body = str(getattr(exc, "message", "") or exc).splitlines()[0][:200]
            if exc.status_code in (400, 422) and self.constraint != "none":
                other = (
                    "--constraint json or --constraint none"
                    if self.constraint == "grammar"
                    else "--constraint none"
                )
                return BackendError(
                    f"{where} rejected the request with the {self.constraint} constraint "
                    f"({exc.status_code}: {body}); this server may not take it: pass {other}"
                )
            return BackendError(f"{where} answered {exc.status_code}: {body}")
        if isinstance(exc, o.APIResponseValidationError | ValueError):
            return BackendError(f"{where} sent a reply that is not OpenAI-compatible JSON; check the URL")
        return BackendError(f"request to {where} failed: {exc.__class__.__name__}: {exc}")

    def _first_model(self) -> str:
        try:
            models = [m.id for m in self._client.models.list()]
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line
            raise self._fail(exc) from None
        if not models:
            raise BackendError(f"--base-url {self.base_url} serves no models; pass --model NAME")
        return models[0]

    def _one(self, messages: list[dict[str, str]]) -> str:
        try:
            reply = self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=0.0,
                max_tokens=self.max_new_tokens,
                extra_body=constraint_body(self.constraint, self.server, self.catalogue) or None,
            )
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc) from None
        choices = getattr(reply, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise BackendError(
                f"--base-url {self.base_url} sent a reply that is not OpenAI-compatible JSON (no choices); "
                "check the URL (it usually ends in /v1)"
            )
        text = choices[0].message.content or ""
        return plan_text_from_json(text) if self.constraint == "json" else text

    def __call__(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        if len(conversations) <= 1:
            return [self._one(c) for c in conversations]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(conversations))) as pool:
            return list(pool.map(self._one, conversations))
