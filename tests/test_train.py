"""train-adapter end to end on the tiny real model (SmolLM2-135M GGUF, 4-bit through bitsandbytes on CPU).

One short in-process run (module fixture) is shared by the output/overfit/adapter/card tests. It
runs with bitsandbytes told the CPU has AVX512-BF16, so the eval in the middle of training would
repack the 4-bit weights (the known trap) if `keep_reference_cpu_kernels` did not prevent it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from train_fixture import make_dataset, model_cache, small_overrides  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, request):
    """A 10-step run with an evaluation at step 5, on a CPU that claims AVX512-BF16."""
    import bitsandbytes.nn.modules as bnb_modules

    request.getfixturevalue("model_cache")
    from taskdecomp.trainer.train import train
    from taskdecomp.trainer.train_config import TrainConfig

    root = tmp_path_factory.mktemp("trained")
    data = make_dataset(root / "ds")
    cfg = TrainConfig(
        dataset=str(data),
        recipe="smollm2-135m-cpu-qlora",  # QLoRA: the 4-bit base through bitsandbytes, end to end
        output_dir=str(root / "out"),
        **small_overrides(quantize_4bit=True),
    )
    with pytest.MonkeyPatch.context() as mp:
        # every Linear4bit built now takes the repack-after-eval path (as on AVX512-BF16 CPUs)
        mp.setattr(bnb_modules, "has_avx512bf16", lambda: True)
        out = train(cfg)
    return out, data


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_outputs_written(trained):
    out, _ = trained
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "train_config.yaml",
        "train_log.jsonl",
        "loss.png",
        "README.md",
    ):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = yaml.safe_load((out / "train_config.yaml").read_text())
    assert saved["max_steps"] == 10 and saved["base_model"] == "smollm2-135m-gguf"
    adapter_cfg = json.loads((out / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert adapter_cfg["layers_to_transform"] == [28, 29]


def test_loss_falls_and_keeps_falling_after_eval(trained):
    out, _ = trained
    log = read_log(out)
    losses = {r["step"]: r["loss"] for r in log if "loss" in r}
    evals = {r["step"]: r["eval_loss"] for r in log if "eval_loss" in r}
    assert sorted(losses) == list(range(1, 11)), losses
    assert 5 in evals and 10 in evals, evals  # evaluated mid-run and at the end
    assert [r["step"] for r in log if "eval_loss" in r] == [5, 10], log  # the final eval logged once
    start = sum(losses[s] for s in (1, 2, 3, 4)) / 4  # one pass over the 4 rows
    before_eval = losses[5]
    end = sum(losses[s] for s in (7, 8, 9, 10)) / 4  # the same 4 rows, after the eval
    assert end < 0.75 * start, losses  # overfits a handful of rows
    assert end < before_eval, losses  # gradients after the eval are still right
    assert evals[10] < evals[5] + 0.5, evals  # held-out row: no blow-up


def test_adapter_loads_and_changes_the_model(trained):
    import torch

    from taskdecomp.models import load_adapter
    from taskdecomp.promptfmt import to_prompt_completion

    out, data = trained
    from taskdecomp.loader_script.features import read_rows

    row = read_rows(data)["train"][0]
    model, tok = load_adapter(str(out))
    pc = to_prompt_completion(row)
    prompt = tok.apply_chat_template(pc["prompt"], add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template(pc["prompt"] + pc["completion"], tokenize=False)
    ids = tok(full, return_tensors="pt", add_special_tokens=False)
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    labels = ids["input_ids"].clone()
    labels[:, :n_prompt] = -100

    def completion_loss(m) -> float:
        with torch.no_grad():
            return float(m(**ids, labels=labels).loss)

    tuned = completion_loss(model)
    with model.disable_adapter():
        base_loss = completion_loss(model)
    assert tuned < base_loss - 0.3, (tuned, base_loss)  # it learned the training rows
    # and greedy decoding changes too
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        tuned_ids = model.generate(**enc, max_new_tokens=12, do_sample=False)
        with model.disable_adapter():
            base_ids = model.generate(**enc, max_new_tokens=12, do_sample=False)
    assert not torch.equal(tuned_ids, base_ids)


def test_card_renders_and_parses(trained):
    from huggingface_hub import ModelCard

    from taskdecomp.model_card import write_model_card

    out, _ = trained
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "text-generation"
    assert "loss.png" in card.text and "PeftModel.from_pretrained" in card.text
    assert "| lora_r | 16 |" in card.text and "Not evaluated yet" in card.text
    results = {
        "base": {"structure_accuracy": 0.25, "rougeL": 0.31},
        "adapter": {"structure_accuracy": 0.5, "rougeL": 0.52},
        "dataset": "alice/task-decomposition",
        "split": "test",
    }
    card = ModelCard.load(write_model_card(out, results))
    assert card.data.eval_results and {r.metric_type for r in card.data.eval_results} == {
        "structure_accuracy",
        "rougeL",
    }
    assert card.data.eval_results[0].dataset_name == "alice/task-decomposition"
    assert "| rougeL | 0.31 | 0.52 |" in card.text


@pytest.mark.usefixtures("model_cache")
def test_collated_labels_are_the_completions_with_eos(tmp_path):
    """One packed, collated batch of the CPU recipe: loss on the completions only, EOS included."""
    from trl import SFTTrainer

    from taskdecomp.config import parse_config
    from taskdecomp.loader_script.features import read_rows
    from taskdecomp.models import load_base_model
    from taskdecomp.trainer.cli import load_recipe
    from taskdecomp.trainer.data import load_splits
    from taskdecomp.trainer.train import lora_config, sft_config
    from taskdecomp.trainer.train_config import TrainConfig

    data = make_dataset(tmp_path / "ds")
    cfg = parse_config(TrainConfig, ["--dataset", str(data)], prog="t", base=load_recipe("smollm2-135m-cpu"))
    train_ds, _ = load_splits(cfg.dataset)
    model, tok = load_base_model(cfg.base_model, quantize_4bit=False)
    assert tok.pad_token_id != tok.eos_token_id and tok.eos_token == "<|im_end|>"
    trainer = SFTTrainer(
        model=model,
        args=sft_config(cfg, tmp_path / "out", has_eval=False),
        train_dataset=train_ds,
        processing_class=tok,
        peft_config=lora_config(cfg, model),
    )
    packed = trainer.train_dataset[0]
    batch = trainer.data_collator([packed])
    assert (
        "attention_mask" not in batch and batch["position_ids"].shape == batch["input_ids"].shape
    )  # padding-free
    labels = batch["labels"][0]
    trained_text = tok.decode(labels[labels != -100])
    n_examples = len(packed["seq_lengths"])
    assert int((labels == tok.eos_token_id).sum()) == n_examples  # every completion's EOS is trained
    outputs = {r["output"] for r in read_rows(data)["train"]}
    pieces = [p.strip() for p in trained_text.split("<|im_end|>") if p.strip()]
    assert len(pieces) == n_examples and set(pieces) <= outputs, pieces  # nothing of the prompts
