"""`decompose --base-url`: the real `openai` client against a loopback server that checks each
request carries the plan's constraint in the field the server reads, and misbehaves on demand."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from taskdecomp.grammar import plan_grammar
from taskdecomp.planner.cli import main as decompose_main

PLAN = "1. Listen to interview.wav and transcribe it. [audio analysis]\n2. Write show notes from the transcript. [text generation; after 1]"
JSON_PLAN = json.dumps(
    {
        "steps": [
            {"description": "Listen to interview.wav and transcribe it.", "modality": "audio",
             "operation": "analysis", "after": []},
            {"description": "Write show notes from the transcript.", "modality": "text",
             "operation": "generation", "after": [1]},
        ]
    }
)  # fmt: skip
TASK = "Transcribe interview.wav and write show notes from it"


class PlanServer:
    """Serves /v1/models and /v1/chat/completions like vLLM / SGLang / llama.cpp would."""

    def __init__(self, *, accepts: str = "structured_outputs", mode: str = "ok") -> None:
        self.accepts, self.mode = accepts, mode  # which constraint field it reads; failure mode
        self.bodies: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if server.mode == "html":
                    return self._send(200, b"<html>hello</html>", "text/html")
                self._send(
                    200,
                    json.dumps(
                        {"object": "list", "data": [{"id": "task-adapter", "object": "model"}]}
                    ).encode(),
                )

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                if server.mode == "html":  # a web server or a captive proxy, not an API
                    return self._send(200, b"<html>hello</html>", "text/html")
                if server.mode == "reject":
                    msg = {"error": {"message": "grammar is not supported", "type": "BadRequestError"}}
                    return self._send(400, json.dumps(msg).encode())
                grammar = {
                    "structured_outputs": (body.get("structured_outputs") or {}).get("grammar"),
                    "ebnf": body.get("ebnf"),
                    "grammar": body.get("grammar"),
                }.get(server.accepts)
                fmt = body.get("response_format") or {}
                if fmt.get("type") == "json_schema":
                    content = JSON_PLAN
                elif grammar == plan_grammar():
                    content = PLAN  # the constraint arrived where this server reads it
                else:
                    content = "Sure! Here is what I would do."  # an unconstrained model
                reply = {
                    "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }  # fmt: skip
                self._send(200, json.dumps(reply).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> PlanServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize(
    "server, field",
    [("vllm", "structured_outputs"), ("sglang", "ebnf"), ("llamacpp", "grammar"), ("auto", "ebnf")],
)
def test_grammar_goes_where_the_server_reads_it(capsys, server, field):
    with PlanServer(accepts=field) as srv:
        rc = decompose_main([TASK, "--base-url", srv.url, "--server", server, "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    row = json.loads(out)
    assert row["source"] == "model:task-adapter" and len(row["subtasks"]) == 2
    body = srv.bodies[0]
    assert body["model"] == "task-adapter" and body["temperature"] == 0.0
    assert body["messages"][0]["role"] == "system"  # the fine-tuned prompt
    assert not any(k.startswith("guided_") for k in body)  # removed vLLM fields are never sent
    if server != "auto":
        assert {"structured_outputs", "ebnf", "grammar"} & body.keys() == {field}


def test_json_constraint_and_no_constraint(capsys):
    with PlanServer() as srv:
        assert decompose_main([TASK, "--base-url", srv.url, "--constraint", "json", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["subtasks"][1]["depends_on"] == [1]
        assert srv.bodies[-1]["response_format"]["json_schema"]["schema"]["properties"]["steps"]
        # without a constraint the server's prose is re-asked, then one error line
        assert decompose_main([TASK, "--base-url", srv.url, "--constraint", "none", "--retries", "1"]) == 2
        assert "no numbered steps" in capsys.readouterr().err
        assert not {"structured_outputs", "ebnf", "grammar", "response_format"} & srv.bodies[-1].keys()


def test_server_failures_are_one_line(capsys):
    with PlanServer(mode="reject") as srv:
        assert decompose_main([TASK, "--base-url", srv.url]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--constraint json or --constraint none" in err
    with PlanServer(mode="html") as srv:
        assert decompose_main([TASK, "--base-url", srv.url, "--model", "m"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not OpenAI-compatible" in err
    assert decompose_main([TASK, "--base-url", "127.0.0.1:8000"]) == 2
    assert "http(s) URL" in capsys.readouterr().err
    assert decompose_main([TASK, "--model", "m"]) == 2
    assert "only applies with --base-url" in capsys.readouterr().err
