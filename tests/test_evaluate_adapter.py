"""`evaluate-adapter` on the real tiny model: bad input, and both columns for real adapters.

Adapters: one trained for a couple of steps by the `train-adapter` CLI (the real pipeline), and
one PEFT LoRA with random (non-zero) weights, which certainly changes the output. The base
column must be the same for both (it is the base model under `disable_adapter()`), the random
adapter's column must differ from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from taskdecomp.dataset_builder.output import write_splits
from taskdecomp.evaluation.cli import main as evaluate_main
from taskdecomp.evaluation.evaluate_adapter import METRIC_ORDER, TOOL_METRIC_ORDER

from dataset_fixture import fixture_rows

LIMIT = 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    rows = fixture_rows(16, tag=" eval")
    out = tmp_path_factory.mktemp("ds")
    write_splits({"train": rows[:12], "test": rows[12:]}, out)
    return out


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    # One dequantised-model cache for the session, set up in conftest.pytest_configure (the
    # autouse fixture gives each test a fresh HF_HOME, where the cache would otherwise live).
    return Path(os.environ["TASKDECOMP_MODEL_CACHE"])


@pytest.fixture(scope="module")
def random_adapter(tmp_path_factory, model_cache) -> Path:
    from peft import LoraConfig, get_peft_model

    from taskdecomp.models import load_base_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TASKDECOMP_MODEL_CACHE", str(model_cache))
        model, _ = load_base_model("smollm2-135m-gguf", quantize_4bit=False)
    config = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft = get_peft_model(model, config)
    out = tmp_path_factory.mktemp("random_adapter")
    peft.save_pretrained(out)
    return out


@pytest.fixture(autouse=True)
def _shared_model_cache(monkeypatch, model_cache):
    monkeypatch.setenv("TASKDECOMP_MODEL_CACHE", str(model_cache))


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = evaluate_main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("evaluate-adapter: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- bad input: one line, exit 2, before any model loads ----------------------------------------


def test_limit_zero(capsys, dataset, tmp_path):
    rc, _, err = run(capsys, "--adapter", str(tmp_path), "--dataset", str(dataset), "--limit", "0")
    assert rc == 2 and "--limit must be at least 1" in one_error_line(err)


def test_missing_adapter(capsys, dataset, tmp_path):
    rc, _, err = run(capsys, "--adapter", str(tmp_path / "nope"), "--dataset", str(dataset))
    assert rc == 2 and "not found" in one_error_line(err)


def test_dataset_without_reference_column(capsys, tmp_path):
    data = tmp_path / "tasks.jsonl"
    data.write_text(json.dumps({"instruction": "Write a song and film a music video for it."}) + "\n")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    rc, _, err = run(capsys, "--adapter", str(adapter), "--dataset", str(data))
    assert rc == 2 and "'output'" in one_error_line(err)
    assert not (tmp_path / "eval_results.json").exists()


def test_push_without_token_fails_before_generating(capsys, dataset, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    args = ["--adapter", str(adapter), "--dataset", str(dataset), "--push", "--repo-id", "alice/x"]
    rc, _, err = run(capsys, *args)
    assert rc == 2 and "token" in one_error_line(err).lower()
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["adapter_config.json"]  # nothing written


def test_adapter_for_another_base(capsys, dataset, tmp_path):
    adapter = tmp_path / "other"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "HuggingFaceTB/SmolLM2-360M-Instruct", "peft_type": "LORA"})
    )
    (adapter / "adapter_model.safetensors").write_bytes(
        b""
    )  # a finished run's folder: the base is what differs
    rc, _, err = run(
        capsys, "--adapter", str(adapter), "--dataset", str(dataset), "--base", "smollm2-135m-gguf"
    )
    assert rc == 2 and "trained on HuggingFaceTB/SmolLM2-360M-Instruct" in one_error_line(err)


# --- real evaluations -----------------------------------------------------------------------------


def _check_results(path: Path) -> dict:
    results = json.loads(path.read_text())
    for column in ("base", "adapter"):
        assert set(METRIC_ORDER) <= set(results[column]), results[column]
        for key in METRIC_ORDER:
            value = results[column][key]
            assert 0.0 <= value <= (8.0 if key == "step_count_mae" else 1.0), (column, key, value)
    assert results["n"] == LIMIT and results["split"] == "test"
    return results


def _predictions(path: Path) -> list[dict]:
    return [
        json.loads(line) for line in path.with_name(path.stem + ".predictions.jsonl").read_text().splitlines()
    ]


@pytest.mark.slow
def test_random_adapter_changes_the_adapter_column_only(capsys, dataset, random_adapter, tmp_path):
    out = tmp_path / "results.json"
    args = ["--adapter", str(random_adapter), "--dataset", str(dataset), "--limit", str(LIMIT)]
    rc, _, err = run(capsys, *args, "--max-new-tokens", "24", "--batch-size", "2", "--output", str(out))
    assert rc == 0, err
    assert "| metric | base | adapter | change |" in err and "| step_f1 |" in err
    _check_results(out)
    preds = _predictions(out)
    assert len(preds) == LIMIT
    assert any(p["base"] != p["adapter"] for p in preds)
    pytest.shared_base_predictions = [p["base"] for p in preds]  # compared with the trained run


@pytest.mark.slow
def test_just_trained_adapter_gives_both_columns_updates_and_pushes_the_card(
    capsys, dataset, tmp_path, monkeypatch
):
    from taskdecomp.trainer.cli import main as train_main

    from hub_server import HubServer

    adapter = tmp_path / "adapter"
    rc = train_main(
        [
            "--dataset", str(dataset), "--recipe", "smollm2-135m-cpu", "--output-dir", str(adapter),
            "--max-steps", "2", "--no-quantize-4bit", "--max-length", "256", "--eval-steps", "1000",
            "--save-steps", "1000", "--quiet",
        ]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    out = tmp_path / "results.json"
    args = ["--adapter", str(adapter), "--dataset", str(dataset), "--limit", str(LIMIT), "--push"]
    with HubServer() as hub:
        hub.point_clients_here(monkeypatch)
        rc, _, err = run(
            capsys, *args, "--repo-id", "alice/tiny-adapter", "--max-new-tokens", "24", "--batch-size", "2",
            "--output", str(out),
        )  # fmt: skip
        assert rc == 0, err
        pushed = hub.files("alice/tiny-adapter", "model")
    results = _check_results(out)
    card = (adapter / "README.md").read_text()
    assert "model-index" in card and f"{results['adapter']['rougeL']}" in card.replace("'", "")
    assert pushed["README.md"].decode() == card
    assert json.loads(pushed["eval_results.json"]) == results
    base_preds = [p["base"] for p in _predictions(out)]
    shared = getattr(pytest, "shared_base_predictions", None)
    if shared is not None:  # same base model, same prompts, greedy: the same base column
        assert base_preds == shared


@pytest.mark.slow
def test_hand_labelled_requests_with_every_column(capsys, random_adapter, tmp_path):
    """The hand-labelled file (rows with `steps`, no `output`), constrained and unconstrained
    columns, and the heuristic baseline beside them."""
    requests = Path(__file__).parent / "data" / "realistic_requests.jsonl"
    out = tmp_path / "results.json"
    args = [
        "--adapter",
        str(random_adapter),
        "--dataset",
        str(requests),
        "--limit",
        "4",
        "--also-unconstrained",
    ]
    rc, _, err = run(capsys, *args, "--max-new-tokens", "40", "--batch-size", "4", "--output", str(out))
    assert rc == 0, err
    assert "| heuristic | base_unconstrained | adapter_unconstrained |" in err
    results = json.loads(out.read_text())
    assert results["constrained"] is True
    for column in ("base", "adapter", "heuristic", "base_unconstrained", "adapter_unconstrained"):
        assert set(results[column]) == set(METRIC_ORDER)
    assert results["heuristic"]["plan_validity"] == 1.0
    # under the grammar every answer has numbered steps; the untrained base alone has none
    assert results["base"]["format_validity"] == 1.0
    assert results["base_unconstrained"]["format_validity"] < 1.0
    preds = _predictions(out)
    assert preds[0]["reference"].startswith("1. Transcribe meeting.mp3 [audio analysis]")


@pytest.mark.slow
def test_a_tool_dataset_gets_the_tool_metrics(capsys, random_adapter, tmp_path):
    """Reference plans that name tools: tool prompt and grammar of `--tools`, the heuristic's
    keyword -> tool rule, and node/link/arg F1 in every column."""
    catalogue = tmp_path / "tiny.yaml"
    catalogue.write_text(
        "name: tiny\nversion: 1\ntools:\n"
        "  - {id: speech-recognition, description: Transcribe the speech in a recording, inputs: [audio],"
        " outputs: [text], modality: audio, operation: analysis, args: [audio]}\n"
        "  - {id: summarization, description: Shorten a text to its key points, inputs: [text],"
        " outputs: [text], modality: text, operation: transformation, args: [text]}\n"
        "  - {id: image-generation, description: Draw a picture from a text prompt, inputs: [text],"
        " outputs: [image], modality: image, operation: generation, args: [prompt]}\n"
    )
    asr = {"description": "Transcribe the recording into text", "modality": "audio", "operation": "analysis",
           "tool": "speech-recognition", "depends_on": []}  # fmt: skip
    rows = [
        {"instruction": f"Transcribe {name} and draw a picture of what is said in it",
         "steps": [{**asr, "args": [name]},
                   {"description": "Draw a picture of what is said", "modality": "image",
                    "operation": "generation", "tool": "image-generation", "args": ["<step-1>"],
                    "depends_on": [1]}]}
        for name in ("meeting.mp3", "memo.wav")
    ]  # fmt: skip
    data = tmp_path / "tools.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "results.json"
    args = ["--adapter", str(random_adapter), "--dataset", str(data), "--tools", str(catalogue)]
    rc, _, err = run(capsys, *args, "--max-new-tokens", "32", "--batch-size", "2", "--output", str(out))
    assert rc == 0, err
    assert "| node_f1 |" in err and "| link_f1 |" in err
    results = json.loads(out.read_text())
    assert results["tools"] == "tiny"
    for column in ("base", "adapter", "heuristic"):
        assert set(TOOL_METRIC_ORDER) <= set(results[column])
    # the keyword rule finds both tools and links them: a perfect tool plan here
    assert results["heuristic"]["plan_validity"] == 1.0
    assert results["heuristic"]["node_f1"] == results["heuristic"]["link_f1"] == 1.0
    assert results["heuristic"]["arg_f1"] == 1.0
    # constrained, every model answer starts as a tool step of the catalogue
    assert all("; tool " in p["base"] for p in _predictions(out))
    rc, _, err = run(capsys, *args[:4], "--tools", str(tmp_path / "missing.yaml"), "--output", str(out))
    assert rc == 2 and "CATALOGUE" in one_error_line(err)
