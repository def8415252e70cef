"""The OpenAI-compatible backend: one chat completion per request, several rows per call.

Per request: render the prompts (`prompts/generate_*.j2`), ask for `{"rows": [...]}` with a strict
`json_schema` response format derived from `taskdecomp/row.schema.json`, and parse the rows
into candidates (the build loop validates them). Around each call: the client-side limiter
(`limits.RateLimiter`, RPM/TPM/concurrency) and the one retry policy (`retry.retrying`; the SDK's
retries are off). A server that rejects `json_schema` (400 naming response_format) makes the
backend fall back, once and for the rest of the run, to JSON mode with the shape in the prompt.
Usage is summed over every billed attempt, including replies that turned out unusable.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from functools import cache
from typing import Any, ClassVar

import openai
from openai.types.chat import ChatCompletionMessage

from taskdecomp import prompts
from taskdecomp.errors import AuthError, BackendError, redact
from taskdecomp.reporter import Reporter
from taskdecomp.schema import OPERATIONS, row_schema
from taskdecomp.taxonomy import STYLE_DESCRIPTIONS, STYLES

from .backend import GenerationRequest, GenerationResult, Usage
from .limits import RateLimiter
from .pricing import Price, cost, load_prices, price_for
from .retry import InvalidReply, NotAnAPI, describe, retry_after, retrying

__all__ = [
    "PROMPT_VERSION",
    "TOKENS_PER_ROW",
    "OpenAIBackend",
    "candidate_schema",
    "styled_candidate_schema",
    "plan_skeletons",
    "response_format",
    "build_messages",
    "chat_body",
    "parse_candidates",
    "estimate_request_tokens",
    "max_tokens",
]

#: bump when the prompt files or the schema sent change: part of the build fingerprint.
#: gen-v2: the plan skeleton and the request style of every row are in the prompt
#: (back-instruction), the reply carries each row's `style`.
#: gen-v3: the request tells every step of its plan; a transformation may edit the user's file.
PROMPT_VERSION = "gen-v3"
#: estimated completion tokens per row (a 4-6 step row in JSON is ~250-350 tokens).
TOKENS_PER_ROW = 320
TEMPERATURE = 1.0
#: the worst-case prompt is the estimate plus this margin (the ~4 chars/token rule can undercount)
PROMPT_MARGIN = 1.25
#: TPM reservation = the estimate, calibrated on the usage seen so far, times this margin
#: (reconciled with the billed usage after the reply)
RESERVE_FACTOR = 1.1
_CANDIDATE_FIELDS = ("instruction", "input", "structure", "subtasks")
_STRICT_KEYS = {"type", "enum", "properties", "required", "items", "additionalProperties", "description"}


# --- request ------------------------------------------------------------------------------
def _strict(node: Any) -> Any:
    """Row-schema node → strict-mode node: only keywords every structured-output server
    accepts, every object closed and all its keys required, enums typed."""
    if not isinstance(node, dict):
        return node
    out = {k: v for k, v in node.items() if k in _STRICT_KEYS}
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "properties" in out:
        out["properties"] = {k: _strict(v) for k, v in out["properties"].items()}
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    if "items" in out:
        out["items"] = _strict(out["items"])
    return out


@cache
def candidate_schema() -> dict[str, Any]:
    """JSON Schema of a reply: `{"rows": [candidate, ...]}`, candidates being the row schema's
    instruction/input/structure/subtasks (the rest of a row is derived by `make_row`)."""
    props = row_schema()["properties"]
    candidate = _strict({"type": "object", "properties": {k: props[k] for k in _CANDIDATE_FIELDS}})
    # strict mode makes every key required: the optional tool fields (tool-graph rows) stay out
    step = candidate["properties"]["subtasks"]["items"]
    for key in ("tool", "args"):
        step["properties"].pop(key, None)
    step["required"] = list(step["properties"])
    return {
        "type": "object",
        "properties": {"rows": {"type": "array", "items": candidate}},
        "required": ["rows"],
        "additionalProperties": False,
    }


@cache
def styled_candidate_schema() -> dict[str, Any]:
    """`candidate_schema` with each row's request `style` (the row schema's enum): what a
    taxonomy request's reply carries (a tool-graph request's has no style)."""
    import copy

    schema = copy.deepcopy(candidate_schema())
    row = schema["properties"]["rows"]["items"]
    row["properties"]["style"] = _strict(row_schema()["properties"]["style"])
    row["required"] = list(row["properties"])
    return schema


def response_format(json_mode: bool = False) -> dict[str, Any]:
    if json_mode:
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "task_decomposition_rows",
            "strict": True,
            "schema": styled_candidate_schema(),
        },
    }


@cache
def _domains() -> tuple[str, ...]:
    return tuple(line.strip() for line in prompts.read("generate_domains.txt").splitlines() if line.strip())


def plan_skeletons(request: GenerationRequest) -> list[dict[str, Any]]:
    """The plan of every row of `request`, composed first (back-instruction): the offline
    composer's graph, modalities, operations and each step's role, with the row's request
    style (`taxonomy.assign_styles` over the cell's style weights), but none of its words.
    Deterministic for the request's seed, so a retried, resumed or batched request sends the
    same prompt."""
    from .offline import drafts

    plans = []
    for draft in drafts(request.cell, request.n_rows, request.seed):
        steps = []
        for st, role in zip(draft.candidate["subtasks"], draft.roles, strict=True):
            tag = f"{st['modality']} {st['operation']}"
            if st["depends_on"]:
                tag += "; after " + ", ".join(str(d) for d in st["depends_on"])
            steps.append(f"{st['step']}. [{tag}] {role}")
        plans.append(
            {"style": draft.style, "style_description": STYLE_DESCRIPTIONS[draft.style], "steps": steps}
        )
    return plans


def build_messages(request: GenerationRequest, *, json_mode: bool = False) -> list[dict[str, str]]:
    """System + user messages for one request; deterministic for the request's seed. The user
    message holds each row's plan skeleton and request style: the model writes the steps'
    descriptions from the plan, then the request from the plan (back-instruction)."""
    domains = random.Random(request.seed).sample(_domains(), 4)
    cell = request.cell
    user = prompts.render(
        "generate_user.j2",
        n_rows=request.n_rows,
        cell_key=cell.key,
        modalities=list(cell.modalities),
        structure=cell.structure,
        single=cell.single,
        min_steps=cell.min_steps,
        max_steps=cell.max_steps,
        operations=list(OPERATIONS),
        domains=domains,
        plans=plan_skeletons(request),
        avoid=[" ".join(a.split()) for a in request.avoid],
    )
    system = prompts.render(
        "generate_system.j2", json_mode=json_mode, styles=[(s, STYLE_DESCRIPTIONS[s]) for s in STYLES]
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def max_tokens(n_rows: int) -> int:
    """The completion cap sent with every request: generous (about 2x the estimate) so a
    runaway reply cannot bill without bound; also the worst case `--max-cost` holds."""
    return n_rows * TOKENS_PER_ROW * 2 + 256


def chat_body(model: str, request: GenerationRequest, *, json_mode: bool = False) -> dict[str, Any]:
    """The `/v1/chat/completions` body for a request (also what a Batch API line carries)."""
    return {
        "model": model,
        "messages": build_messages(request, json_mode=json_mode),
        "response_format": response_format(json_mode),
        "temperature": TEMPERATURE,
        "max_tokens": max_tokens(request.n_rows),
    }


def estimate_request_tokens(request: GenerationRequest, rows_per_call: int) -> tuple[int, int]:
    """(prompt, completion) token estimate for `--dry-run` and TPM reservation: the real
    rendered prompt (+ the schema, which the server adds to the prompt) at ~4 chars a token,
    plus a few tokens of chat framing per message; completion = rows × TOKENS_PER_ROW."""
    return _prompt_tokens(build_messages(request), response_format()), rows_per_call * TOKENS_PER_ROW


def _prompt_tokens(messages: list[dict[str, str]], fmt: dict[str, Any]) -> int:
    schema = fmt.get("json_schema", {}).get("schema", {})
    chars = sum(len(m["content"]) for m in messages) + len(json.dumps(schema))
    return chars // 4 + 4 * len(messages) + 3


# --- reply --------------------------------------------------------------------------------
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def _usable(row: Any) -> dict[str, Any] | None:
    """Keep a row only if it has the structure make_row needs; the validator judges the rest."""
    if not isinstance(row, dict):
        return None
    instruction, subtasks = row.get("instruction"), row.get("subtasks")
    if not isinstance(instruction, str) or not instruction.strip():
        return None
    if not isinstance(subtasks, list) or not subtasks or not all(isinstance(s, dict) for s in subtasks):
        return None
    out = {
        "instruction": instruction,
        "input": row.get("input") if isinstance(row.get("input"), str) else "",
        "subtasks": subtasks,
    }
    if isinstance(row.get("structure"), str):
        out["structure"] = row["structure"]
    if row.get("style") in STYLES:  # else make_row reads the style off the instruction
        out["style"] = row["style"]
    return out


def parse_candidates(content: str | None) -> list[dict[str, Any]]:
    """Reply text → candidates. Raises `InvalidReply` (retried) when the text is not JSON or
    holds no rows at all; silently drops individual rows that are structurally unusable."""
    if not content or not content.strip():
        raise InvalidReply("empty content")
    text = content.strip()
    if m := _FENCE.match(text):  # JSON mode on some servers wraps the object in a code fence
        text = m.group(1)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidReply(f"not JSON: {exc.msg} at char {exc.pos}") from None
    if isinstance(data, dict):
        rows = data.get("rows")
        if rows is None:  # JSON mode: some models pick their own key, or return one row
            lists = [v for v in data.values() if isinstance(v, list)]
            rows = lists[0] if len(lists) == 1 else ([data] if "instruction" in data else None)
    else:
        rows = data
    if not isinstance(rows, list) or not rows:
        raise InvalidReply("no rows in the reply")
    kept = [c for c in (_usable(r) for r in rows) if c is not None]
    if not kept:
        raise InvalidReply("no usable row in the reply")
    return kept


def _completion_message(resp: Any) -> ChatCompletionMessage | None:
    """The first choice's message of a parsed reply, or None when it has no choices. Raises
    `NotAnAPI` when the reply is no chat completion: the SDK hands back the body as a `str`
    when it is not JSON (an HTML page), and a model without `choices` for other JSON."""
    if isinstance(resp, (str, bytes)):
        text = " ".join(str(resp[:60]).split())
        raise NotAnAPI(f"a non-JSON page starting {text!r}, not a chat completion")
    choices = getattr(resp, "choices", None)  # a lax SDK model lacks the attribute entirely
    if not isinstance(choices, list):
        raise NotAnAPI("JSON that is not a chat completion (no `choices`)")
    message = getattr(choices[0], "message", None) if choices else None
    return message if isinstance(message, ChatCompletionMessage) else None


# --- backend ------------------------------------------------------------------------------
def _rejects_schema(exc: openai.BadRequestError) -> bool:
    text = f"{exc.param or ''} {exc.message}".lower()
    return "response_format" in text or "json_schema" in text


class OpenAIBackend:
    """`Backend` over any OpenAI-compatible endpoint. See the module docstring.

    Errors: 401/403 → `AuthError` at once; 400/404/other 4xx → `BackendError` at once;
    429/5xx/timeouts/connection errors/invalid replies → retried, then `BackendError`. Every
    `BackendError` raised by `generate` carries the tokens and `.cost_usd` of the attempts
    already billed (`BackendError.billed`), so the caller can book that spend. `stats` counts requests, retries and 429s.
    Extra (test/benchmark) knobs: `backoff_base`/`backoff_cap` scale the jittered backoff,
    `prices` is the table from `load_prices` (default the shipped one).
    """

    #: part of the build fingerprint: a new prompt is a new build
    prompt_version: ClassVar[str | None] = PROMPT_VERSION

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None,
        api_key: str | None = None,
        rows_per_call: int = 5,
        concurrency: int = 8,
        rpm: float | None = None,
        tpm: float | None = None,
        timeout: float = 60.0,
        max_attempts: int = 6,
        max_wait: float = 120.0,
        reporter: Reporter | None = None,
        prices: dict[str, Price] | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
    ) -> None:
        self.model = model
        self.source = f"openai:{model}"
        self.rows_per_call = rows_per_call
        self.reporter = reporter or Reporter.silent()
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise AuthError(
                    "OPENAI_API_KEY is not set: export it, pass --base-url for a local server, "
                    "or use --backend offline"
                )
            key = "no-key"  # local OpenAI-compatible servers often need none; the SDK wants one
        self._key = key
        self.client = openai.AsyncOpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
        self.base_url = str(self.client.base_url).rstrip("/")
        self.limiter = RateLimiter(rpm, tpm, concurrency)
        self.max_attempts, self.max_wait = max_attempts, max_wait
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.price = price_for(model, prices if prices is not None else load_prices())
        if not self.price.known:
            self.reporter.warn(
                f"no price for model {model!r} in the price table: cost counted as 0 "
                "(pass --prices FILE with its USD per 1M input/output tokens)"
            )
        self.json_mode = False
        self._prompt_ratio, self._per_row = 1.0, float(TOKENS_PER_ROW)  # calibrated as replies come
        self.stats: Counter[str] = Counter()

    # one attempt = one HTTP request (two when the json_schema fallback kicks in)
    async def _attempt(
        self, request: GenerationRequest, prompt_est: int
    ) -> tuple[Usage, ChatCompletionMessage | None]:
        """One billed reply: (its usage, its message or None); raises on HTTP errors."""
        async with self.limiter.slot(self.reservation(request, prompt_est)) as slot:
            for _ in range(2):
                self.stats["requests"] += 1
                try:
                    resp = await self.client.chat.completions.create(**self.body(request))
                    break
                except json.JSONDecodeError as exc:
                    # a 200 whose HTTP body was cut short (a proxy, a dropped connection): the
                    # SDK fails parsing it. The server most likely billed it: count the prompt
                    # estimate and what arrived, as for a reply without usage.
                    usage = Usage(prompt_est, len(exc.doc) // 4)
                    slot.used(usage.total_tokens)
                    raise InvalidReply(f"HTTP body cut short: {exc.msg} at char {exc.pos}", usage) from None
                except openai.BadRequestError as exc:
                    if self.json_mode or not _rejects_schema(exc):
                        raise
                    self.json_mode = True
                    self.reporter.warn(
                        f"{self.base_url} does not support json_schema output: using JSON mode and parsing"
                    )
                except openai.APIStatusError as exc:
                    if exc.status_code == 429:
                        self.stats["http_429"] += 1
                        # the reservation is kept: refunding it would let the next request
                        # straight into a full window (a 429 storm)
                        self.limiter.rate_limited(retry_after(exc))
                    raise
            try:
                message = _completion_message(resp)
            except NotAnAPI:
                slot.used(0)  # no LLM answered this: nothing was billed
                raise
            content = message.content if message is not None else None
            if resp.usage is not None:
                usage = Usage(resp.usage.prompt_tokens or 0, resp.usage.completion_tokens or 0)
            else:  # some servers omit usage: estimate it so cost accounting stays conservative
                usage = Usage(prompt_est, len(content or "") // 4)
            slot.used(usage.total_tokens)
            self.limiter.succeeded()
            self._calibrate(request, prompt_est, usage)
        return usage, message

    def _calibrate(self, request: GenerationRequest, prompt_est: int, usage: Usage) -> None:
        """Track billed/estimated prompt tokens and completion tokens per row (moving averages),
        so TPM reservations match what this server and model really bill."""
        if usage.prompt_tokens and prompt_est:
            self._prompt_ratio += 0.2 * (usage.prompt_tokens / prompt_est - self._prompt_ratio)
        if usage.completion_tokens and request.n_rows:
            self._per_row += 0.2 * (usage.completion_tokens / request.n_rows - self._per_row)

    def reservation(self, request: GenerationRequest, prompt_est: int) -> int:
        """Tokens to reserve against --tpm for one attempt of `request`."""
        return int((prompt_est * self._prompt_ratio + request.n_rows * self._per_row) * RESERVE_FACTOR)

    # --- what a request asks: a subclass (the tool-graph backend) changes these three ------
    def messages(self, request: GenerationRequest) -> list[dict[str, str]]:
        """System + user messages of `request`; deterministic for its seed."""
        return build_messages(request, json_mode=self.json_mode)

    def response_format(self) -> dict[str, Any]:
        return response_format(self.json_mode)

    def parse(self, content: str | None) -> list[dict[str, Any]]:
        """A reply's content → candidates (InvalidReply when it holds no usable row)."""
        return parse_candidates(content)

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        """The `/v1/chat/completions` body of `request` (also what a Batch API line carries)."""
        return {
            "model": self.model,
            "messages": self.messages(request),
            "response_format": self.response_format(),
            "temperature": TEMPERATURE,
            "max_tokens": max_tokens(request.n_rows),
        }

    def estimate(self, request: GenerationRequest) -> Usage:
        """Estimated (prompt, completion) tokens of one attempt of `request`: the rendered
        prompt and its schema at ~4 chars a token (see `estimate_request_tokens`)."""
        body = self.body(request)
        return Usage(
            _prompt_tokens(body["messages"], body["response_format"]), request.n_rows * TOKENS_PER_ROW
        )

    def worst_case_cost(self, request: GenerationRequest, *, batch: bool = False) -> float:
        """An upper bound on what `request` can bill: its prompt (estimated, +25 %) and a
        completion of `max_tokens` (sent with every call), for each of the `max_attempts`
        attempts (every unusable reply is billed); a Batch API line is sent once."""
        prompt = self.estimate(request).prompt_tokens
        one = cost(Usage(int(prompt * PROMPT_MARGIN), max_tokens(request.n_rows)), self.price, batch=batch)
        return one * (1 if batch else self.max_attempts)

    def _count_retry(self, rs: Any) -> None:
        self.stats["retries"] += 1

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        prompt_est = self.estimate(request).prompt_tokens
        spent, attempts = Usage(), 0
        policy = retrying(
            max_attempts=self.max_attempts,
            max_wait=self.max_wait,
            base=self.backoff_base,
            cap=self.backoff_cap,
            before_sleep=self._count_retry,
        )
        try:
            async for attempt in policy:
                with attempt:
                    attempts += 1
                    try:
                        usage, message = await self._attempt(request, prompt_est)
                        spent += usage  # billed even when the reply turns out unusable
                        if message is not None and message.refusal:
                            raise InvalidReply("the model refused")
                        candidates = self.parse(message.content if message is not None else None)
                    except InvalidReply as exc:
                        spent += exc.usage  # a reply cut short is billed too
                        self.stats["invalid_reply"] += 1  # every unusable reply, retried or last
                        raise
        except (openai.OpenAIError, InvalidReply) as exc:
            err = self._error(exc, attempts)
            raise err.billed(spent.prompt_tokens, spent.completion_tokens, cost(spent, self.price)) from None
        return GenerationResult(
            request_id=request.request_id,
            candidates=candidates,
            usage=spent,
            cost_usd=cost(spent, self.price),
            attempts=attempts,
        )

    def _server_message(self, exc: openai.APIStatusError) -> str:
        body = exc.body.get("message") if isinstance(exc.body, dict) else None
        text = " ".join(str(body or exc.message).split())[:200]
        return redact(text.replace(self._key, "***"))

    def _error(self, exc: BaseException, attempts: int) -> BackendError:
        where, tries = self.base_url, f"after {attempts} attempt{'s' * (attempts != 1)}"
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if status in (401, 403):
                return AuthError(f"{where} rejected the API key (HTTP {status}): check OPENAI_API_KEY")
            if status == 404:
                return BackendError(
                    f"{where} says not found (HTTP 404: {self._server_message(exc)}): "
                    f"check --model {self.model!r} and --base-url"
                )
            if status == 429 and exc.code == "insufficient_quota":
                return BackendError(
                    f"{where}: quota exhausted (HTTP 429 insufficient_quota): check plan and billing"
                )
            if status == 429:
                return BackendError(
                    f"{where} kept rate-limiting {tries} (HTTP 429): lower --rpm/--tpm/--concurrency "
                    "or raise --max-wait, then re-run to resume"
                )
            if status >= 500 or status in (408, 409):
                return BackendError(f"{where} kept failing {tries} (HTTP {status}): re-run later to resume")
            return BackendError(
                f"{where} rejected the request (HTTP {status}: {self._server_message(exc)}): "
                f"check --model {self.model!r} and --base-url"
            )
        if isinstance(exc, openai.APITimeoutError):
            return BackendError(f"{where} timed out {tries}: raise --timeout or re-run later to resume")
        if isinstance(exc, openai.APIConnectionError):
            return BackendError(f"cannot reach {where} ({tries}): check --base-url")
        if isinstance(exc, NotAnAPI):
            return BackendError(
                f"{where} does not answer like an OpenAI-compatible API ({exc}, {tries}): "
                "check --base-url (an OpenAI-compatible server's URL usually ends in /v1)"
            )
        return BackendError(f"{where}: unusable replies {tries} ({describe(exc)}): try another --model")

    async def aclose(self) -> None:
        await self.client.close()
