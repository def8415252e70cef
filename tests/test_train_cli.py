"""train-adapter's bad inputs: one line on stderr, exit 2, nothing written, no model loaded."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from taskdecomp.trainer.cli import main


def _folder_with(tmp_path: Path, columns: dict) -> Path:
    data = tmp_path / "ds" / "data"
    data.mkdir(parents=True)
    datasets.Dataset.from_dict(columns).to_parquet(str(data / "train-00000-of-00001.parquet"))
    return tmp_path / "ds"


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "nowhere/at/all"], "not found"),
        (["--dataset", "./missing-folder"], "not found"),
        (["--dataset", "x", "--recipe", "no-such-recipe"], "unknown recipe 'no-such-recipe'"),
        (["--dataset", "x", "--push"], "--push needs --repo-id"),
        (["--dataset", "x", "--push", "--repo-id", "alice/adapter"], "no Hugging Face token"),
        (["--dataset", "x", "--push", "--repo-id", "not a repo"], "invalid repo id"),
        (["--dataset", "x", "--recipe", "mistral-7b-qlora"], "use --recipe smollm2-135m-cpu"),
        (["--dataset", "x", "--max-steps", "0"], "max-steps must be > 0"),
        (["--dataset", "x", "--resume", "--overwrite"], "exclude each other"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import torch

    if "mistral-7b-qlora" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    recipe = [] if "--recipe" in argv else ["--recipe", "smollm2-135m-cpu"]
    code, err = _run([*argv, *recipe, "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2, err
    assert message in err and len(err.splitlines()) == 1 and err.startswith("train-adapter: error:"), err
    assert not (tmp_path / "out").exists()


def test_dataset_lacking_columns(tmp_path, capsys):
    ds = _folder_with(tmp_path, {"instruction": ["a", "b"], "text": ["x", "y"]})
    code, err = _run(["--dataset", str(ds), "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and "lacks column(s) output" in err, err
    assert not (tmp_path / "out").exists()


def test_unknown_yaml_keys(tmp_path, capsys):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("base_model: smollm2-135m-gguf\nlearning_rat: 0.1\n")
    code, err = _run(["--dataset", "x", "--recipe", str(recipe)], capsys)
    assert code == 2 and "unknown key 'learning_rat'" in err, err
    extra = tmp_path / "extra.yaml"
    extra.write_text("max_step: 3\n")
    code, err = _run(["--dataset", "x", "--config", str(extra), "--recipe", "smollm2-135m-cpu"], capsys)
    assert code == 2 and "unknown key 'max_step'" in err, err


def test_output_dir_of_something_else(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, err = _run(["--dataset", "x", "--output-dir", str(out)], capsys)
    assert code == 2 and "holds no train-adapter run" in err, err
    code, err = _run(["--dataset", "x", "--output-dir", str(out), "--overwrite"], capsys)
    assert code == 2 and "not a train-adapter output" in err, err
    assert (out / "notes.txt").read_text() == "mine"


def test_recipes_ship_and_parse():
    from taskdecomp.config import parse_config
    from taskdecomp.trainer.cli import load_recipe, recipe_names
    from taskdecomp.trainer.train_config import TrainConfig

    assert {"smollm2-135m-cpu", "mistral-7b-qlora"} <= set(recipe_names())
    gpu = parse_config(TrainConfig, ["--max-steps", "7"], prog="t", base=load_recipe("mistral-7b-qlora"))
    assert gpu.max_steps == 7 and gpu.optim == "paged_adamw_8bit" and gpu.gradient_checkpointing
    assert gpu.quantize_4bit and gpu.dtype == "bfloat16" and gpu.target_modules == ["all-linear"]
    assert gpu.packing and gpu.packing_strategy == "bfd" and gpu.lr_scheduler_type == "cosine"


def test_fallback_chat_template_and_pad():
    """A base tokenizer without chat template, pad == eos (Mistral-7B-v0.1's situation)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from taskdecomp.models import _ensure_pad_and_template
    from taskdecomp.promptfmt import to_prompt_completion

    vocab = {
        "<unk>": 0,
        "<s>": 1,
        "</s>": 2,
        **{chr(c): i + 3 for i, c in enumerate(range(32, 127))},
        "\n": 98,
    }
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.pad_token = tok.eos_token
    _ensure_pad_and_template(tok)
    assert tok.pad_token == "<unk>" and tok.pad_token_id != tok.eos_token_id
    pc = to_prompt_completion({"instruction": "Draw a cat", "output": "1. Draw it [image generation]"})
    prompt = tok.apply_chat_template(pc["prompt"], tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(pc["prompt"] + pc["completion"], tokenize=False)
    assert full.startswith(prompt) and prompt.endswith("### Response:\n")
    assert full[len(prompt) :].startswith("1. Draw it [image generation]</s>")


def test_output_dir_of_another_run(tmp_path, capsys):
    """A folder holding a run: a different config is refused, the same one needs --resume."""
    from taskdecomp.config import parse_config
    from taskdecomp.trainer.cli import load_recipe
    from taskdecomp.trainer.train import _save_config
    from taskdecomp.trainer.train_config import TrainConfig

    out = tmp_path / "out"
    out.mkdir()
    argv = ["--dataset", "x", "--recipe", "smollm2-135m-cpu", "--output-dir", str(out), "--max-steps", "9"]
    _save_config(parse_config(TrainConfig, argv, prog="t", base=load_recipe("smollm2-135m-cpu")), out)
    (out / "checkpoint-3").mkdir()  # a finished step (a folder without one is taken over)
    # --quiet is not part of the run: only the field that changes training is named
    code, err = _run([*argv, "--learning-rate", "0.01", "--quiet"], capsys)
    assert code == 2 and "holds a different run (differs in: learning_rate)" in err, err
    code, err = _run(argv, capsys)
    assert code == 2 and "already holds this run; pass --resume" in err, err
    code, err = _run([*argv, "--push", "--repo-id", "alice/x"], capsys)  # push settings are not the run
    assert code == 2 and "no Hugging Face token" in err, err
