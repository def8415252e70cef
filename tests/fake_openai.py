"""A fake OpenAI-compatible server on 127.0.0.1 for tests and benchmarks (stdlib only).

Speaks enough of the API for the real `openai` client: `POST /v1/chat/completions` (rows for
the taxonomy cell named in the prompt, with `usage`), `POST /v1/files` (multipart),
`GET /v1/files/{id}`, `GET /v1/files/{id}/content`, `POST /v1/batches`, `GET /v1/batches[/{id}]`,
`POST /v1/batches/{id}/cancel`. Rows come from the offline backend when it is importable,
otherwise from a tiny generator here; either way they pass validation for the requested cell.

Scriptable behaviour:
- `fake.script(step, ...)`: the next chat requests fail as told, in order. A step is a dict
  (`{"status": 429, "retry_after": 0.3}`, `{"status": 429, "retry_after_ms": 200}`,
  `{"status": 429, "retry_after_date": 2}`, `{"status": 500}`, `{"delay": 3.0}` (slow, then a
  normal reply), `{"content": "not json"}`, `{"status": 401}`, `{"status": 404}`, ...) or a
  shorthand: "429", "500", "401", "400", "404", "slow", "invalid_json", "refusal", "truncated".
- `cut_every = N`: every Nth chat reply (1-based) has its HTTP body cut in half (a truncated
  body with a matching Content-Length, so the client reads it whole and fails to parse it);
  `html = True`: every request gets a 200 `text/html` page (a captive proxy, a web server).
- `latency`: seconds each chat request takes; `failure_rate` + `failure_kinds`: random failures
  (seeded); `json_schema=False`: 400 for `response_format.type == "json_schema"`, like a server
  without structured outputs; `api_key`: 401 unless the bearer token matches (the error echoes
  the key, as real servers partly do, so tests can check we never repeat it).
- `rpm`/`tpm`: a sliding window of `window` seconds holding at most limit·window/60 requests or
  tokens; beyond it a 429 with `retry-after-ms` (the time until the window has room).
- Batches complete `batch_delay` seconds after creation; `batch_fail_ids` get error lines,
  `batch_final_status` forces "failed"/"expired"/"cancelled", `batch_create_lost = N` makes the
  next N creations answer 500 after creating the batch (a lost response).
Counters in `fake.stats` (Counter): chat_requests, status_<code>, prompt_tokens,
completion_tokens, rows, files_uploaded, batches_created, ...; `fake.chat_times` holds the
arrival time (monotonic) of every chat request.

Use: `with FakeOpenAI(...) as fake: client(base_url=fake.base_url)`, or as a process:
`python tests/fake_openai.py --port 0` prints `FAKE_OPENAI_READY <base_url>` and serves until
SIGTERM/SIGINT (`FakeOpenAIProcess` wraps that; `GET /_stats` returns the counters).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import email.parser
import email.policy
import email.utils
import itertools
import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["FakeOpenAI", "FakeOpenAIProcess", "fake_candidates"]

_CELL = re.compile(r"cell:\s*`?([a-z+]+/(?:chain|parallel|dag|single))`?", re.IGNORECASE)
_ROWS = re.compile(r"exactly\s+(\d+)\s+rows?", re.IGNORECASE)
# a tool-graph request (prompts/generate_tools_user.j2): "Row k:" then "1. tool-id [tag; after 1, 2; ...]"
_GRAPH_ROW = re.compile(r"^Row \d+:\s*$", re.MULTILINE)
_GRAPH_STEP = re.compile(r"^(\d+)\. ([a-z][a-z0-9-]*) \[[^;\]]+(?:; after ([0-9, ]+))?", re.MULTILINE)
_SHORTHAND: dict[str, dict[str, Any]] = {
    "429": {"status": 429, "retry_after": 0.05},
    "500": {"status": 500},
    "502": {"status": 502},
    "401": {"status": 401},
    "403": {"status": 403},
    "400": {"status": 400},
    "404": {"status": 404},
    "slow": {"delay": 5.0},
    "invalid_json": {"content": '{"rows": [{"instruction": "unterminated'},
    "refusal": {"refusal": "I can't help with that."},
    "truncated": {"truncate": True},  # a full reply cut in half: invalid JSON, billed like a real one
    # the HTTP body itself cut short (a proxy or a dropped connection): the SDK cannot parse it
    "cut_body": {"cut_body": True},
    # a 200 text/html page instead of JSON, like a captive portal or a web server at the URL
    "html": {"html": True},
    # 200 JSON that is not a chat completion (another service's JSON at the URL)
    "not_completion": {"not_completion": True},
}
_HTML = b"<!DOCTYPE html><html><head><title>Welcome</title></head><body>Sign in to the network</body></html>"

# --- a tiny row generator (used when the offline backend is not importable) ----------------
_ART = {
    "text": [
        "written report",
        "blog article",
        "lesson plan",
        "press release",
        "newsletter",
        "FAQ page",
        "study guide",
    ],
    "image": [
        "poster image",
        "infographic",
        "photo series",
        "illustration",
        "storyboard sketches",
        "product photos",
    ],
    "audio": ["podcast episode", "voice-over track", "audio guide", "radio jingle", "interview recording"],
    "video": ["short video", "tutorial video", "documentary clip", "promo video", "time-lapse video"],
}
_TOPICS = [
    "urban beekeeping",
    "a coastal cleanup drive",
    "the history of jazz",
    "solar panel maintenance",
    "a vegan bakery opening",
    "mountain bike safety",
    "a children's science fair",
    "coral reef decline",
    "remote team onboarding",
    "a local election debate",
    "medieval castle architecture",
    "home composting",
    "a marathon training plan",
    "sign language basics",
    "a museum's new dinosaur wing",
    "night sky photography",
    "cybersecurity for seniors",
    "a farmers' market relaunch",
    "wildfire evacuation routes",
    "3D printing prosthetics",
    "a jazz festival lineup",
    "sleep hygiene for students",
    "electric bus rollout",
    "an indie game launch",
    "a wine harvest festival",
    "first aid for hikers",
    "recycling e-waste",
    "a robotics club showcase",
]
_AUDIENCE = [
    "high-school teachers",
    "new employees",
    "tourists",
    "city council members",
    "young children",
    "retired volunteers",
    "small-business owners",
    "nursing students",
    "online subscribers",
    "local residents",
]
_OPENERS = ["Produce", "Put together", "Create", "Prepare", "Develop", "Design"]
_VERBS = {
    "generation": ["Create", "Draft", "Produce", "Compose", "Write up"],
    "analysis": ["Analyse", "Review", "Inspect", "Evaluate", "Examine"],
    "transformation": ["Convert", "Turn", "Adapt", "Render", "Translate"],
}


def _deps(structure: str, k: int) -> list[list[int]]:
    if structure == "chain":
        return [[i - 1] if i > 1 else [] for i in range(1, k + 1)]
    if structure == "parallel":
        if k == 2:
            return [[], []]
        a = (k - 1) // 2  # branch one: 1..a, branch two: a+1..k-1, join: k
        deps = [[i - 1] if 1 < i <= a or a + 1 < i < k else [] for i in range(1, k)]
        return deps + [[a, k - 1]]
    # dag: 1; 2 after 1; 3 after 1 and 2; then a chain
    return [[], [1], [1, 2]] + [[i - 1] for i in range(4, k + 1)]


def fake_candidates(cell_key: str, n: int, rng: random.Random) -> list[dict[str, Any]]:
    """`n` valid, varied candidates for a cell key like 'audio+text/chain'."""
    mods_key, structure = cell_key.split("/")
    mods = sorted(mods_key.split("+"))
    single = structure == "single"  # a single-step cell: a one-step chain
    structure = "chain" if single else structure
    low = max(2, len(mods), 2 if structure == "parallel" else 0, 4 if structure == "dag" else 0)
    rows = []
    for _ in range(n):
        k = 1 if single else rng.randint(low, min(8, low + 2))
        modalities = mods + [rng.choice(mods) for _ in range(k - len(mods))]
        rng.shuffle(modalities)
        topic, audience = rng.choice(_TOPICS), rng.choice(_AUDIENCE)
        arts = {m: rng.choice(_ART[m]) for m in mods}
        listed = " and ".join(("an " if arts[m][0] in "aeiou" else "a ") + arts[m] for m in mods)
        instruction = rng.choice(
            [
                f"{rng.choice(_OPENERS)} {listed} about {topic} for {audience}.",
                f"For {audience}, {rng.choice(_OPENERS).lower()} {listed} that explains {topic}.",
                f"Our team needs {listed} on {topic}; the audience is {audience}.",
            ]
        )
        subtasks, used = [], set()
        for i, (mod, deps) in enumerate(zip(modalities, _deps(structure, k), strict=True), start=1):
            op = rng.choice(list(_VERBS))
            verb = next(v for v in rng.sample(_VERBS[op], len(_VERBS[op])) if (v, mod) not in used)
            used.add((verb, mod))
            desc = f"{verb} the {mod} part of the {arts[mod]} on {topic} (stage {i})"
            subtasks.append(
                {"step": i, "description": desc, "modality": mod, "operation": op, "depends_on": deps}
            )
        rows.append({"instruction": instruction, "input": "", "structure": structure, "subtasks": subtasks})
    return rows


def _offline_candidates(cell_key: str, n: int, seed: int) -> list[dict[str, Any]] | None:
    """Rows from the project's offline backend when it exists (better variety), else None."""
    try:
        from taskdecomp.dataset_builder.backend import GenerationRequest
        from taskdecomp.dataset_builder.offline import OfflineBackend
        from taskdecomp.taxonomy import Cell

        backend = OfflineBackend(seed=seed)
        result = asyncio.run(
            backend.generate(GenerationRequest(f"fake-{seed}", Cell.from_key(cell_key), n, seed))
        )
    except Exception:
        return None
    keys = ("instruction", "input", "structure", "subtasks", "style")
    return [{k: c.get(k, "" if k == "input" else None) for k in keys} for c in result.candidates] or None


def _tool_candidates(prompt: str, seed: int) -> list[dict[str, Any]] | None:
    """For a tool-graph prompt: one row per graph in it, written by the project's offline
    composer over the default catalogue (the graph kept as given, as the prompt asks)."""
    parts = _GRAPH_ROW.split(prompt)[1:]
    if not parts:
        return None
    from taskdecomp.catalogue import default_catalogue
    from taskdecomp.dataset_builder.toolgraph import ToolGraph, compose_row

    rng, rows = random.Random(seed), []
    for part in parts:
        steps = _GRAPH_STEP.findall(part.split("\n\n")[0])
        tools = tuple(tool for _, tool, _ in steps)
        deps = tuple(tuple(int(d) for d in after.replace(" ", "").split(",") if d) for _, _, after in steps)
        row = compose_row(ToolGraph(tools, deps), default_catalogue(), rng)
        rows.append({k: row[k] for k in ("instruction", "input", "structure", "subtasks")})
    return rows


# --- the server ---------------------------------------------------------------------------
class _Window:
    """Sliding window: at most `capacity` units in the last `window` seconds (by arrival time;
    events are kept sorted because threads admit in a different order than they arrived)."""

    def __init__(self, per_minute: float, window: float) -> None:
        self.capacity, self.window = per_minute * window / 60.0, window
        self.events: list[tuple[float, float]] = []
        self.total = 0.0

    def admit(self, now: float, amount: float) -> float:
        """0 when admitted (and recorded), else seconds until there could be room."""
        while self.events and self.events[0][0] <= now - self.window:
            self.total -= self.events.pop(0)[1]
        if self.total + amount <= self.capacity + 1e-9 or not self.events:
            bisect.insort(self.events, (now, amount))
            self.total += amount
            return 0.0
        freed, need = 0.0, self.total + amount - self.capacity
        for t, a in self.events:
            freed += a
            if freed >= need:
                return max(0.001, t + self.window - now)
        return self.window


class FakeOpenAI:
    def __init__(
        self,
        *,
        port: int = 0,
        latency: float = 0.0,
        rpm: float | None = None,
        tpm: float | None = None,
        window: float = 60.0,
        api_key: str | None = None,
        json_schema: bool = True,
        failure_rate: float = 0.0,
        failure_kinds: tuple[str, ...] = ("500", "invalid_json"),
        seed: int = 0,
        batch_delay: float = 0.2,
        use_offline: bool = True,
        cut_every: int = 0,
        html: bool = False,
    ) -> None:
        self.cut_every, self.html = cut_every, html
        self.latency, self.api_key, self.json_schema = latency, api_key, json_schema
        self.failure_rate, self.failure_kinds = failure_rate, failure_kinds
        self.batch_delay, self.use_offline, self.seed = batch_delay, use_offline, seed
        self.limits = [
            w for w in (rpm and ("rpm", _Window(rpm, window)), tpm and ("tpm", _Window(tpm, window))) if w
        ]
        self.stats: collections.Counter[str] = collections.Counter()
        self.chat_times: list[float] = []
        self.bodies: collections.deque[dict[str, Any]] = collections.deque(maxlen=200)
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_fail_ids: set[str] = set()
        self.batch_final_status = "completed"
        self.batch_create_lost = 0  # next N creations succeed but answer 500 (a lost response)
        self._script: collections.deque[dict[str, Any]] = collections.deque()
        self._rng = random.Random(seed)
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *steps: str | dict[str, Any]) -> None:
        with self._lock:
            self._script.extend(_SHORTHAND[s] if isinstance(s, str) else s for s in steps)

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes handlers sleeping on latency / slow replies
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- chat -----------------------------------------------------------------------------
    def _next_step(self) -> dict[str, Any] | None:
        with self._lock:
            if self._script:
                return self._script.popleft()
            if self.failure_rate and self._rng.random() < self.failure_rate:
                return _SHORTHAND[self._rng.choice(self.failure_kinds)]
        return None

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        """The chat completion object for a request body (no failures, no limits)."""
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        cell = m.group(1).lower() if (m := _CELL.search(prompt)) else "text/chain"
        n = int(m.group(1)) if (m := _ROWS.search(prompt)) else 1
        with self._lock:
            seed = self.seed * 1_000_003 + next(self._counter)
        rows = (
            _tool_candidates(prompt, seed)
            or (_offline_candidates(cell, n, seed) if self.use_offline else None)
            or fake_candidates(cell, n, random.Random(seed))
        )
        content = json.dumps({"rows": rows})
        return self._wrap(body, prompt, content, len(rows))

    def _wrap(
        self, body: dict[str, Any], prompt: str, content: str | None, rows: int, refusal: str | None = None
    ):
        prompt_tokens = (len(prompt) + len(json.dumps(body.get("response_format") or {}))) // 4 + 11
        completion_tokens = len(content or refusal or "") // 4 + 1
        with self._lock:
            self.stats["rows"] += rows
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def chat(
        self, body: dict[str, Any], auth: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str], float]:
        """(status, json, headers, delay before answering) for one live chat request."""
        now = time.monotonic()
        with self._lock:
            self.stats["chat_requests"] += 1
            nth = self.stats["chat_requests"]
            self.chat_times.append(now)
            self.bodies.append(body)
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            given = (auth or "").removeprefix("Bearer ")
            return 401, _err(f"Incorrect API key provided: {given}.", "invalid_api_key"), {}, 0.0
        rf = body.get("response_format") or {}
        if not self.json_schema and rf.get("type") == "json_schema":
            msg = (
                "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model."
            )
            return 400, _err(msg, None, param="response_format"), {}, 0.0
        step = self._next_step() or {}
        if self.cut_every and nth % self.cut_every == 0 and not step:
            step = _SHORTHAND["cut_body"]
        status = step.get("status", 200)
        if status == 429:
            headers = {}
            if "retry_after_ms" in step:
                headers["retry-after-ms"] = str(int(step["retry_after_ms"]))
            elif "retry_after_date" in step:
                headers["retry-after"] = email.utils.formatdate(
                    time.time() + step["retry_after_date"], usegmt=True
                )
            elif "retry_after" in step:
                headers["retry-after"] = str(step["retry_after"])
            return (
                429,
                _err("Rate limit reached (scripted).", step.get("code", "rate_limit_exceeded")),
                headers,
                0.0,
            )
        if status != 200:
            msg = {404: f"The model `{body.get('model')}` does not exist.", 400: "Bad request (scripted)."}
            return status, _err(msg.get(status, f"Scripted error {status}."), None), {}, 0.0
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        if "content" in step or "refusal" in step:
            reply = self._wrap(body, prompt, step.get("content"), 0, refusal=step.get("refusal"))
        elif step.get("truncate"):
            full = self.completion(body)["choices"][0]["message"]["content"]
            reply = self._wrap(body, prompt, full[: len(full) // 2], 0)
        else:
            reply = self.completion(body)
        tokens = reply["usage"]["total_tokens"]
        with self._lock:
            for name, window in self.limits:
                wait = window.admit(now, 1 if name == "rpm" else tokens)
                if wait:
                    headers = {"retry-after-ms": str(int(wait * 1000) + 1)}
                    return 429, _err(f"Rate limit reached ({name}).", "rate_limit_exceeded"), headers, 0.0
            self.stats["prompt_tokens"] += reply["usage"]["prompt_tokens"]
            self.stats["completion_tokens"] += reply["usage"]["completion_tokens"]
        if step.get("cut_body"):
            reply = {"_cut": True, **reply}
        elif step.get("html"):
            reply = {"_html": True}
        elif step.get("not_completion"):
            reply = {"status": "ok", "service": "not an LLM"}
        return 200, reply, {}, self.latency + step.get("delay", 0.0)

    # --- batches --------------------------------------------------------------------------
    def add_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        fid = f"file-{uuid.uuid4().hex[:16]}"
        obj = {
            "id": fid,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        with self._lock:
            self.files[fid] = {"meta": obj, "data": data}
        return obj

    def create_batch(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("input_file_id") not in self.files:
            return 404, _err(f"No such File object: {body.get('input_file_id')}", None)
        bid = f"batch_{uuid.uuid4().hex[:16]}"
        obj = {
            "id": bid,
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "input_file_id": body["input_file_id"],
            "completion_window": body.get("completion_window"),
            "status": "validating",
            "created_at": int(time.time()),
            "metadata": body.get("metadata"),
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
        }
        with self._lock:
            self.stats["batches_created"] += 1
            self.batches[bid] = {"obj": obj, "t0": time.monotonic()}
            if self.batch_create_lost > 0:
                self.batch_create_lost -= 1
                return 500, _err("The server had an error (scripted, after creating the batch).", None)
        return 200, obj

    def batch(self, bid: str) -> dict[str, Any] | None:
        with self._lock:
            rec = self.batches.get(bid)
        if rec is None:
            return None
        obj = rec["obj"]
        if (
            obj["status"] in ("validating", "in_progress")
            and time.monotonic() - rec["t0"] >= self.batch_delay
        ):
            self._finish(obj)
        elif obj["status"] == "validating":
            obj["status"] = "in_progress"
        return obj

    def _finish(self, obj: dict[str, Any]) -> None:
        final = self.batch_final_status
        if final == "failed":
            obj.update(status="failed", failed_at=int(time.time()))
            obj["errors"] = {
                "object": "list",
                "data": [{"code": "invalid_request", "message": "scripted failure"}],
            }
            return
        lines = [
            json.loads(x) for x in self.files[obj["input_file_id"]]["data"].decode().splitlines() if x.strip()
        ]
        if final in ("expired", "cancelled"):
            lines = lines[: len(lines) // 2]  # the part done before the window closed
        out, err = [], []
        for line in lines:
            cid = line["custom_id"]
            if cid in self.batch_fail_ids:
                error = {"code": "server_error", "message": "scripted batch line failure"}
                err.append(
                    {
                        "id": f"batch_req_{uuid.uuid4().hex[:8]}",
                        "custom_id": cid,
                        "response": None,
                        "error": error,
                    }
                )
                continue
            reply = self.completion(line["body"])
            resp = {"status_code": 200, "request_id": uuid.uuid4().hex, "body": reply}
            out.append(
                {"id": f"batch_req_{uuid.uuid4().hex[:8]}", "custom_id": cid, "response": resp, "error": None}
            )
        for key, recs in (("output_file_id", out), ("error_file_id", err)):
            if recs:
                data = "".join(json.dumps(r) + "\n" for r in recs).encode()
                obj[key] = self.add_file(data, f"{obj['id']}_{key}.jsonl", "batch_output")["id"]
        obj["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
        obj.update(status=final, **{f"{final}_at": int(time.time())})


def _err(message: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(
            self, status: int, payload: Any, headers: dict[str, str] | None = None, raw: bool = False
        ) -> None:
            ctype = "application/octet-stream" if raw else "application/json"
            if isinstance(payload, dict) and payload.pop("_html", False):
                payload, raw, ctype = _HTML, True, "text/html; charset=utf-8"
            elif isinstance(payload, dict) and payload.pop("_cut", False):
                whole = json.dumps(payload).encode()
                payload, raw = whole[: len(whole) // 2], True
                ctype = "application/json"
            data = payload if raw else json.dumps(payload).encode()
            with fake._lock:
                fake.stats[f"status_{status}"] += 1
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                self.close_connection = True

        def do_POST(self) -> None:
            path = self.path.split("?")[0]
            raw = self._body()
            if fake.html:
                with fake._lock:
                    fake.stats["html_replies"] += 1
                return self._send(200, {"_html": True})
            if path == "/v1/chat/completions":
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    return self._send(400, _err("body is not JSON", None))
                status, payload, headers, delay = fake.chat(body, self.headers.get("Authorization"))
                if delay and fake._stop.wait(delay):
                    self.close_connection = True
                    return None
                return self._send(status, payload, headers)
            if path == "/v1/files":
                fields = _multipart(self.headers.get("Content-Type", ""), raw)
                if "file" not in fields:
                    return self._send(400, _err("missing file", None))
                with fake._lock:
                    fake.stats["files_uploaded"] += 1
                data, filename = fields["file"]
                purpose = fields.get("purpose", (b"", ""))[0].decode()
                return self._send(200, fake.add_file(data, filename or "upload.jsonl", purpose))
            if path == "/v1/batches":
                return self._send(*fake.create_batch(json.loads(raw)))
            if m := re.fullmatch(r"/v1/batches/([^/]+)/cancel", path):
                obj = fake.batch(m.group(1))
                if obj is None:
                    return self._send(404, _err("no such batch", None))
                obj["status"] = "cancelled"
                return self._send(200, obj)
            return self._send(404, _err(f"unknown path {path}", None))

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if fake.html and path != "/_stats":
                with fake._lock:
                    fake.stats["html_replies"] += 1
                return self._send(200, {"_html": True})
            if path == "/_stats":  # not OpenAI: lets a test read a server process's counters
                with fake._lock:
                    snapshot = dict(fake.stats)
                return self._send(200, snapshot)
            if m := re.fullmatch(r"/v1/files/([^/]+)/content", path):
                rec = fake.files.get(m.group(1))
                return (
                    self._send(200, rec["data"], raw=True)
                    if rec
                    else self._send(404, _err("no such file", None))
                )
            if m := re.fullmatch(r"/v1/files/([^/]+)", path):
                rec = fake.files.get(m.group(1))
                return self._send(200, rec["meta"]) if rec else self._send(404, _err("no such file", None))
            if path == "/v1/batches":
                data = [fake.batch(b) for b in reversed(list(fake.batches))]
                return self._send(200, {"object": "list", "data": data, "has_more": False})
            if m := re.fullmatch(r"/v1/batches/([^/]+)", path):
                obj = fake.batch(m.group(1))
                return self._send(200, obj) if obj else self._send(404, _err("no such batch", None))
            return self._send(404, _err(f"unknown path {path}", None))

    return Handler


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[bytes, str | None]]:
    """name → (bytes, filename) of a multipart/form-data body."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, tuple[bytes, str | None]] = {}
    if not msg.is_multipart():
        return fields
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[str(name)] = (part.get_payload(decode=True) or b"", part.get_filename())
    return fields


class FakeOpenAIProcess:
    """The server in a child process (no GIL shared with the client, survives a client's
    kill -9): `with FakeOpenAIProcess(latency=0.2, rpm=300) as fake: fake.base_url, fake.stats()`.
    Keyword arguments are the script's flags (`failure_kinds` a tuple)."""

    def __init__(self, **flags: Any) -> None:
        self.argv = [sys.executable, str(Path(__file__).resolve()), "--port", "0"]
        for key, value in flags.items():
            if value is None or value is False:
                continue
            flag = "--" + key.replace("_", "-")
            if value is True:
                self.argv.append(flag)
            else:
                self.argv += [flag, ",".join(value) if isinstance(value, (tuple, list)) else str(value)]
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> FakeOpenAIProcess:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # bounded: the child prints it right after binding
        if not line.startswith("FAKE_OPENAI_READY "):
            self.proc.kill()
            raise RuntimeError(f"fake server did not start: {line!r}")
        self.base_url = line.split()[1]
        return self

    def stats(self) -> collections.Counter[str]:
        url = self.base_url.removesuffix("/v1") + "/_stats"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return collections.Counter(json.loads(resp.read()))

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--rpm", type=float)
    ap.add_argument("--tpm", type=float)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--api-key")
    ap.add_argument("--no-json-schema", action="store_true")
    ap.add_argument("--failure-rate", type=float, default=0.0)
    ap.add_argument("--failure-kinds", default="500,invalid_json", help="comma-separated shorthands")
    ap.add_argument("--batch-delay", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cut-every", type=int, default=0)
    ap.add_argument("--html", action="store_true")
    args = ap.parse_args(argv)
    fake = FakeOpenAI(
        port=args.port,
        latency=args.latency,
        rpm=args.rpm,
        tpm=args.tpm,
        window=args.window,
        api_key=args.api_key,
        json_schema=not args.no_json_schema,
        failure_rate=args.failure_rate,
        failure_kinds=tuple(args.failure_kinds.split(",")),
        batch_delay=args.batch_delay,
        seed=args.seed,
        cut_every=args.cut_every,
        html=args.html,
    )
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with fake:
        print(f"FAKE_OPENAI_READY {fake.base_url}", flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
