"""Plan execution: dependency order, concurrency, failure propagation, plug-ins, the OpenAI text handler."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
from pathlib import Path

import pytest

from taskdecomp.errors import AuthError, ConfigError, InputError
from taskdecomp.planner import HandlerRegistry, Plan, Step
from taskdecomp.planner.handlers import OpenAITextHandler

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI  # noqa: E402


def make_plan(deps: dict[int, tuple[int, ...]], modalities: dict[int, str] | None = None) -> Plan:
    modalities = modalities or {}
    steps = tuple(
        Step(n, f"Do the work of step number {n}", modalities.get(n, "text"), "generation", d)
        for n, d in sorted(deps.items())
    )
    return Plan(instruction="A test task that is long enough", steps=steps, structure="dag", source="seed")


class Recorder:
    """Records (start, end) per step and the inputs it got; optionally sleeps / fails."""

    def __init__(self, delay: float = 0.0, fail: set[int] | None = None) -> None:
        self.delay, self.fail = delay, fail or set()
        self.times: dict[int, tuple[float, float]] = {}
        self.inputs: dict[int, dict[int, object]] = {}
        self.running = self.peak = 0

    async def __call__(self, step: Step, inputs):
        start = time.monotonic()
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.inputs[step.step] = dict(inputs)
        try:
            await asyncio.sleep(self.delay)
            if step.step in self.fail:
                raise RuntimeError(f"step {step.step} broke")
            return f"out{step.step}"
        finally:
            self.running -= 1
            self.times[step.step] = (start, time.monotonic())


def test_dependency_order_and_inputs():
    deps = {1: (), 2: (1,), 3: (1,), 4: (2, 3), 5: ()}
    plan = make_plan(deps)
    rec = Recorder(delay=0.02)
    result = plan.run({"text": rec}, max_concurrency=4)
    assert result.ok
    assert result.waves == [[1, 5], [2, 3], [4]]
    for n, ds in deps.items():
        for d in ds:
            assert rec.times[n][0] >= rec.times[d][1], f"step {n} started before its dependency {d} ended"
        assert rec.inputs[n] == {d: f"out{d}" for d in ds}
    assert result.outputs == {n: f"out{n}" for n in deps}


def test_independent_steps_run_concurrently_within_the_limit():
    plan = make_plan({1: (), 2: (), 3: (), 4: ()})
    rec = Recorder(delay=0.3)
    t0 = time.monotonic()
    assert plan.run({"text": rec}, max_concurrency=4).ok
    assert time.monotonic() - t0 < 0.9  # serially it would take 1.2 s
    assert rec.peak == 4
    rec1 = Recorder(delay=0.05)
    assert plan.run({"text": rec1}, max_concurrency=1).ok
    assert rec1.peak == 1
    spans = sorted(rec1.times.values())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_failure_skips_dependents_and_others_finish():
    plan = make_plan({1: (), 2: (1,), 3: (1,), 4: (2,), 5: (4, 3), 6: ()})
    result = plan.run({"text": Recorder(fail={2})})
    assert not result.ok
    assert {n: r.status for n, r in result.steps.items()} == {
        1: "ok",
        2: "failed",
        3: "ok",
        4: "skipped",
        5: "skipped",
        6: "ok",
    }
    assert "step 2 broke" in result.errors[2]
    assert result.errors[4] == "step 2 failed"
    assert result.to_dict()["steps"][1]["status"] == "failed"


def test_missing_handler_fails_before_running_anything():
    plan = make_plan({1: (), 2: (1,)}, {2: "video"})
    rec = Recorder()
    with pytest.raises(InputError, match="no handler for video"):
        plan.run({"text": rec})
    assert rec.times == {}


def test_registry_rejects_unknown_modality_and_run_inside_a_loop():
    with pytest.raises(ConfigError):
        HandlerRegistry().register("smell", Recorder())
    plan = make_plan({1: ()})

    async def inside():
        with pytest.raises(ConfigError, match="arun"):
            plan.run({"text": Recorder()})
        return await plan.arun({"text": Recorder()})

    assert asyncio.run(inside()).ok


def test_dry_run_records_the_schedule():
    plan = make_plan({1: (), 2: (1,), 3: ()}, {2: "image", 3: "audio"})
    registry = HandlerRegistry.dry_run()
    result = plan.run(registry)
    assert result.ok and result.waves == [[1, 3], [2]]
    started = [n for kind, n, _ in registry.log if kind == "start"]
    assert started.index(2) > started.index(1)
    assert "using steps 1" in result.outputs[2]


def test_entry_point_plugins_are_discovered(tmp_path, monkeypatch):
    (tmp_path / "tdx_plugin.py").write_text(
        textwrap.dedent(
            """
            class ImageHandler:
                async def __call__(self, step, inputs):
                    return "image:" + step.description

            async def audio_handler(step, inputs):
                return "audio!"
            """
        )
    )
    dist = tmp_path / "tdx_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tdx-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[taskdecomp.handlers]\nimage = tdx_plugin:ImageHandler\naudio = tdx_plugin:audio_handler\n"
        "video = tdx_plugin:does_not_exist\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    warnings: list[str] = []
    registry = HandlerRegistry.from_entry_points(warn=warnings.append)
    assert {"image", "audio"} <= set(registry.modalities)
    assert "video" not in registry and any("video" in w for w in warnings)
    plan = make_plan({1: (), 2: (1,)}, {1: "image", 2: "audio"})
    result = plan.run(registry)
    assert result.outputs == {1: "image:Do the work of step number 1", 2: "audio!"}


def test_openai_text_handler_against_a_loopback_server():
    plan = make_plan({1: (), 2: (1,), 3: ()}, {3: "image"})
    with FakeOpenAI() as fake:
        fake.script({"content": "A draft about bees."}, {"content": "The final text."})
        handler = OpenAITextHandler(base_url=fake.base_url, model="fake-model")
        result = plan.run({"text": handler, "image": Recorder()}, max_concurrency=1)
    assert result.ok, result.errors
    assert result.outputs[1] == "A draft about bees."
    assert result.outputs[2] == "The final text."
    # what the server was asked for step 2: its description and step 1's result
    assert len(fake.bodies) == 2 and all(b["model"] == "fake-model" for b in fake.bodies)
    user = fake.bodies[1]["messages"][-1]["content"]
    assert "Do the work of step number 2" in user and "[Step 1]" in user and "A draft about bees." in user
    assert "A draft about bees." not in fake.bodies[0]["messages"][-1]["content"]


def test_openai_text_handler_auth_failure_fails_the_step_without_leaking_the_key():
    plan = make_plan({1: (), 2: (1,), 3: ()})
    secret = "sk-wrong-key-1234567890"
    with FakeOpenAI(api_key="sk-right-key-0987654321") as fake:
        handler = OpenAITextHandler(base_url=fake.base_url, api_key=secret, model="m", max_retries=0)
        result = plan.run({"text": handler})
    assert {n: r.status for n, r in result.steps.items()} == {1: "failed", 2: "skipped", 3: "failed"}
    assert "AuthError" in result.errors[1] and secret not in result.errors[1]


def test_openai_text_handler_server_error_says_where_and_what_to_do():
    plan = make_plan({1: ()})
    with FakeOpenAI() as fake:
        fake.script({"status": 404})
        handler = OpenAITextHandler(base_url=fake.base_url, model="no-such-model", max_retries=0)
        result = plan.run({"text": handler})
    assert result.steps[1].status == "failed"
    error = result.errors[1]
    assert "404" in error and fake.base_url in error and "step 1" in error and "model name" in error
    assert fake.bodies[0]["messages"][0]["content"].startswith("You carry out one step of a larger plan")


def test_openai_text_handler_needs_a_key_for_the_openai_api():
    with pytest.raises(AuthError, match="OPENAI_API_KEY"):
        OpenAITextHandler()


class _KeepsClients(OpenAITextHandler):
    """The real handler; only remembers each client it made, to ask it afterwards."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clients: list = []

    def _get_client(self):
        client = super()._get_client()
        if not self.clients or self.clients[-1] is not client:
            self.clients.append(client)
        return client


def test_openai_text_handler_client_is_closed_when_each_run_ends():
    # Every plan.run() runs a fresh event loop, and the client's connection pool belongs to it:
    # a client left open leaks its connections (one per run) until the process exits.
    plan = make_plan({1: (), 2: (1,)})
    with FakeOpenAI() as fake:
        fake.script(
            {"content": "A draft."}, {"content": "Final."}, {"content": "Again."}, {"content": "Done."}
        )
        handler = _KeepsClients(base_url=fake.base_url, model="fake-model")
        first = plan.run({"text": handler})
        second = plan.run({"text": handler})  # still usable after the close: a new client
    assert first.ok and second.ok, (first.errors, second.errors)
    assert len(handler.clients) == 2
    assert all(client.is_closed() for client in handler.clients)


def test_a_failing_close_does_not_fail_the_run():
    class BadClose(Recorder):
        async def aclose(self) -> None:
            raise RuntimeError("close broke")

    result = make_plan({1: ()}).run({"text": BadClose()})
    assert result.ok


def test_a_step_goes_to_its_tools_handler_else_to_its_modalitys():
    steps = (
        Step(1, "Transcribe the interview recording", "audio", "analysis", (), "speech-recognition"),
        Step(2, "Summarise the transcript in five lines", "text", "transformation", (1,), "summarization"),
        Step(3, "Write a title for the episode notes", "text", "generation", (2,)),  # no tool
    )
    plan = Plan(instruction="A test task that is long enough", steps=steps, structure="chain", source="seed")
    asr, text = Recorder(), Recorder()
    registry = HandlerRegistry({"text": text}).register_tool("speech-recognition", asr)
    result = plan.run(registry)
    assert result.ok
    # step 1 has no audio handler at all: its tool's handler runs it; step 2's tool has none: text's
    assert set(asr.inputs) == {1} and set(text.inputs) == {2, 3}
    assert text.inputs[2] == {1: "out1"}
    assert registry.tools == ["speech-recognition"] and registry.for_step(steps[1]) is text
    with pytest.raises(InputError, match="no handler for audio"):
        plan.run({"text": text})  # neither the tool nor audio has a handler: nothing runs
    for bad in ("Speech Recognition", "text", "9lives"):
        with pytest.raises(ConfigError, match="tool id"):
            HandlerRegistry().register_tool(bad, Recorder())
    dry = plan.run(HandlerRegistry.dry_run())
    assert dry.outputs[1] == "<speech-recognition result of step 1>"


def test_entry_points_named_by_tool_id_register_tool_handlers(tmp_path, monkeypatch):
    (tmp_path / "tdx_tools.py").write_text(
        "async def ocr(step, inputs):\n    return 'ocr:' + step.description\n"
    )
    dist = tmp_path / "tdx_tools-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tdx-tools\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[taskdecomp.handlers]\nimage-ocr = tdx_tools:ocr\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = HandlerRegistry.from_entry_points()
    assert "image-ocr" in registry.tools and "image" not in registry
    step = Step(1, "Read the text on the receipt photo", "image", "analysis", (), "image-ocr")
    plan = Plan(instruction="A test task that is long enough", steps=(step,), source="seed")
    assert plan.run(registry).outputs == {1: "ocr:Read the text on the receipt photo"}
