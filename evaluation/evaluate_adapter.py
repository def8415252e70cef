"""`evaluate-adapter`: the same prompts through the base model and base + adapter, scored,
next to the heuristic planner (the keyword baseline).

One model is loaded: the PEFT model, whose `disable_adapter()` context gives the base model's
outputs, so both columns see identical weights, prompts (`taskdecomp.promptfmt.render_prompt`,
the training format) and greedy decoding settings. Decoding is constrained by the plan grammar
(as `decompose` does) unless `--no-constrain`; `--also-unconstrained` adds the two
unconstrained columns, so one run shows what the grammar changes.

The dataset may be a built one (`output` column) or a hand-labelled file whose rows carry
`steps` (`tests/data/realistic_requests.jsonl`): its plan is rendered into `output` here.

A dataset whose reference plans name tools (a `build-dataset --tools` one) is evaluated as tool
planning: the tool prompt and grammar of the catalogue (`--tools`, default the built-in one),
the heuristic's keyword -> tool rule, plan validity against the catalogue, and the tool
metrics node_f1, link_f1 and arg_f1.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskdecomp.errors import ConfigError, InputError
from taskdecomp.files import atomic_write_json, atomic_write_text
from taskdecomp.hub_probe import check_hub_repo
from taskdecomp.models import check_base, load_model
from taskdecomp.records import read_json_records
from taskdecomp.reporter import Reporter

if TYPE_CHECKING:
    from taskdecomp.catalogue import Catalogue
    from taskdecomp.plan import Plan

__all__ = [
    "EvalConfig",
    "METRIC_ORDER",
    "TOOL_METRIC_ORDER",
    "load_eval_rows",
    "evaluate_adapter",
    "results_table",
    "valid_example_plans",
]

# Display order (and the keys every result column carries).
METRIC_ORDER = (
    "format_validity",
    "plan_validity",
    "step_count_exact",
    "step_count_mae",
    "rouge1",
    "rouge2",
    "rougeL",
    "modality_f1",
    "step_precision",
    "step_recall",
    "step_f1",
)
# ... and after them, on a dataset whose plans name tools
TOOL_METRIC_ORDER = ("node_f1", "link_f1", "arg_f1")
LOWER_IS_BETTER = {"step_count_mae"}


@dataclass
class EvalConfig:
    adapter: str = field(metadata={"help": "pass a train-adapter output folder or a Hub repo id"})
    dataset: str = field(
        metadata={"help": "built dataset folder, a .jsonl/.json/.parquet file, or a Hub dataset id"}
    )
    split: str = field(default="test", metadata={"help": "split to evaluate on"})
    limit: int | None = field(default=None, metadata={"help": "evaluate only the first N rows"})
    output: Path | None = field(
        default=None,
        metadata={"help": "results JSON (default: ADAPTER/eval_results.json, or ./eval_results.json)"},
    )
    base: str | None = field(
        default=None, metadata={"help": "expected base model; refuse an adapter trained on another one"}
    )
    max_new_tokens: int = field(default=256, metadata={"help": "generation bound per answer"})
    constrain: bool = field(default=True, metadata={"help": "decode under the plan grammar (default on)"})
    also_unconstrained: bool = field(
        default=False, metadata={"help": "also score base and adapter without the grammar"}
    )
    repetition_penalty: float = field(default=1.0, metadata={"help": ">1 discourages repeats (1.0 = off)"})
    tools: str | None = field(
        default=None,
        metadata={
            "help": "tool catalogue of a tool dataset (default: the built-in one when its plans name tools)"
        },
    )
    batch_size: int = field(default=8, metadata={"help": "prompts per generation batch"})
    quantize_4bit: bool | None = field(
        default=None, metadata={"help": "load the base in 4-bit (default: as the adapter was trained)"}
    )
    update_card: bool = field(
        default=False, metadata={"help": "write the results into the adapter's model card"}
    )
    push: bool = field(default=False, metadata={"help": "commit the card and results JSON to the Hub"})
    repo_id: str | None = field(
        default=None, metadata={"help": "Hub repo for --push (default: --adapter when it is a repo id)"}
    )
    quiet: bool = field(default=False, metadata={"help": "print only the results table and warnings"})

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(
                f"--limit must be at least 1, got {self.limit}; leave it out to use the whole split"
            )
        if self.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.repetition_penalty <= 0:
            raise ConfigError(
                f"--repetition-penalty must be more than 0 (1.0 = off), got {self.repetition_penalty}"
            )
        if not self.adapter.strip():
            raise ConfigError("--adapter is empty; pass a train-adapter output folder or a Hub repo id")
        if self.push:
            self.update_card = True  # what we push is the updated card
            if not self.repo_id and not _looks_like_repo(self.adapter):
                raise ConfigError("--push needs --repo-id USER/NAME when --adapter is a local folder")


def _looks_like_repo(name: str) -> bool:
    """`USER/NAME` that is not a local path: a Hub repo id (the Hub itself says whether it exists)."""
    return not Path(name).exists() and name.count("/") == 1 and not name.startswith((".", "/"))


# --- data -----------------------------------------------------------------------------------


def load_eval_rows(dataset: str, split: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows with `instruction` and the reference `output` from a built folder, a file, or a Hub id.

    Every row is checked (strings where strings belong) here, before any model loads: a bad row
    found after generating would cost the whole run."""
    p = Path(dataset)
    if p.is_file() and p.suffix in (".jsonl", ".json"):
        # Parsed here rather than by `datasets`: its JSON builder reports a bad line as a
        # 70-line DatasetGenerationError without the line number.
        rows, where = (
            _read_json_rows(p),
            (lambda i: f"{p} line {i + 1}" if p.suffix == ".jsonl" else f"{p} row {i + 1}"),
        )
    else:
        rows, where = _load_with_datasets(dataset, split), (lambda i: f"dataset {dataset} row {i + 1}")
    _check_rows(dataset, rows, where)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise InputError(f"dataset {dataset} split '{split}' is empty")
    return rows


def _read_json_rows(p: Path) -> list[dict[str, Any]]:
    rows = read_json_records(p)
    unit = "line" if p.suffix == ".jsonl" else "row"
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise InputError(f"{p} {unit} {i} is not a JSON object; each needs 'instruction' and 'output'")
        steps = row.get("steps", row.get("subtasks"))
        if "output" not in row and steps is not None:
            row["output"] = _render_labelled(steps, f"{p} {unit} {i}")
    return rows


def _render_labelled(steps: Any, where: str) -> str:
    """A hand-labelled plan (`steps`: step, description, modality, operation, depends_on) as the
    reference text the metric reads."""
    from taskdecomp.schema import MODALITIES, OPERATIONS, render_output

    hint = "each step needs description, modality, operation and depends_on"
    if not isinstance(steps, list) or not steps:
        raise InputError(f"{where}: 'steps' must be a non-empty list; {hint}")
    out = []
    for k, st in enumerate(steps, start=1):
        if not isinstance(st, dict) or not isinstance(st.get("description"), str):
            raise InputError(f"{where}: step {k} has no description; {hint}")
        if st.get("modality") not in MODALITIES or st.get("operation") not in OPERATIONS:
            raise InputError(
                f"{where}: step {k} has modality {st.get('modality')!r} / operation {st.get('operation')!r}; "
                f"use one of {', '.join(MODALITIES)} / {', '.join(OPERATIONS)}"
            )
        deps = st.get("depends_on") or []
        if not isinstance(deps, list) or not all(isinstance(d, int) and 0 < d < k for d in deps):
            raise InputError(f"{where}: step {k} depends_on must list earlier step numbers, got {deps!r}")
        out.append({**st, "step": k, "depends_on": deps})
    return render_output(out)


def _load_with_datasets(dataset: str, split: str) -> list[dict[str, Any]]:
    import datasets

    p = Path(dataset)
    try:
        if p.is_dir():
            files = sorted(str(f) for f in (p / "data").glob(f"{split}-*.parquet"))
            if not files:
                have = sorted({f.name.split("-")[0] for f in (p / "data").glob("*.parquet")})
                raise InputError(
                    f"{p} has no '{split}' split (found: {', '.join(have) or 'no data/*.parquet shards'}); "
                    "pass --split or a folder written by build-dataset"
                )
            ds = datasets.Dataset.from_parquet(files)
        elif p.is_file():
            if p.suffix != ".parquet":
                raise InputError(f"{p}: unsupported file type; use .jsonl, .json or .parquet")
            ds = datasets.load_dataset("parquet", data_files=str(p), split="train")
        elif _looks_like_repo(dataset):
            check_hub_repo(dataset, "dataset", "--dataset")  # fast, one line, before datasets retries
            ds = datasets.load_dataset(dataset, split=split)
        else:
            raise InputError(f"dataset {dataset} not found; pass a build-dataset folder, a file or a Hub id")
    except InputError:
        raise
    except (OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise InputError(f"cannot read dataset {dataset}: {str(exc).splitlines()[0]}") from None
    except datasets.exceptions.DatasetGenerationError as exc:  # a corrupt shard
        cause = exc.__cause__ or exc
        raise InputError(
            f"cannot read dataset {dataset}: {str(cause).splitlines()[0] if str(cause) else cause.__class__.__name__}"
        ) from None
    if not isinstance(ds, datasets.Dataset):
        raise InputError(f"dataset {dataset}: expected one split, got {type(ds).__name__}; pass --split")
    return ds.to_list()


def _check_rows(dataset: str, rows: list[dict[str, Any]], where: Any) -> None:
    """Both columns present, and strings (`input` may be missing or null) in every row."""
    columns = set().union(*(r.keys() for r in rows)) if rows else set()
    missing = [c for c in ("instruction", "output") if rows and c not in columns]
    if missing:
        raise InputError(
            f"dataset {dataset} has no {' or '.join(repr(c) for c in missing)} column "
            f"(columns: {', '.join(sorted(columns))}); evaluation needs the instruction and a reference 'output'"
        )
    for i, row in enumerate(rows):
        for key in ("instruction", "output", "input"):
            value = row.get(key)
            if key == "input" and value is None:
                continue
            if not isinstance(value, str) or (key != "input" and not value.strip()):
                got = (
                    "missing"
                    if key not in row
                    else ("empty" if isinstance(value, str) else f"{_json_type(value)}")
                )
                raise InputError(
                    f"{where(i)}: '{key}' is {got}; every row needs a non-empty '{key}' string"
                    if key != "input"
                    else f"{where(i)}: 'input' is {got}; it must be a string (or left out)"
                )


def _json_type(value: Any) -> str:
    return {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _check_output(path: Path, what: str) -> None:
    """Fail now, not after generating, when `path` cannot be written: a directory, under a file,
    or in a folder we may not write (probed with a real temp file: root passes os.access)."""
    if path.is_dir():
        raise InputError(
            f"{what} {path} is a directory; pass a file path such as {path / 'eval_results.json'}"
        )
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{what} {path} is under {parent}, which is a file; pass a path in a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".taskdecomp-probe-"):
            pass
    except OSError as exc:
        raise InputError(
            f"{what} {path} cannot be written ({exc.strerror or exc.__class__.__name__} in {parent}); "
            "pass another --output"
        ) from None


def output_paths(cfg: EvalConfig) -> tuple[Path, Path]:
    """The results JSON and the predictions JSONL beside it."""
    output = cfg.output or (
        Path(cfg.adapter) / "eval_results.json" if Path(cfg.adapter).is_dir() else Path("eval_results.json")
    )
    return output, output.with_name(output.stem + ".predictions.jsonl")


# --- model ----------------------------------------------------------------------------------


def _check_adapter_exists(adapter: str) -> None:
    p = Path(adapter)
    if _looks_like_repo(adapter):
        return  # a Hub id: load_adapter says whether it exists
    if not p.is_dir():
        raise InputError(f"adapter {adapter} not found; pass a train-adapter output folder or a Hub repo id")
    if not (p / "adapter_config.json").is_file():
        raise InputError(f"{adapter} has no adapter_config.json; pass the output folder of train-adapter")


# --- evaluation -----------------------------------------------------------------------------


COLUMNS = ("base", "adapter", "heuristic", "base_unconstrained", "adapter_unconstrained")


def results_table(results: dict[str, Any]) -> str:
    """Markdown table: base, adapter, the adapter's change over base, then the baselines
    (heuristic; unconstrained columns when measured). Readable on a terminal too."""
    base, adapter = results["base"], results["adapter"]
    extra = [c for c in COLUMNS[2:] if c in results]
    head = "| metric | base | adapter | change |" + "".join(f" {c} |" for c in extra)
    lines = [head, "|---|---:|---:|---:|" + "---:|" * len(extra)]
    for key in (*METRIC_ORDER, *TOOL_METRIC_ORDER):
        if key not in base:
            continue
        delta = adapter[key] - base[key]
        better = delta < 0 if key in LOWER_IS_BETTER else delta > 0
        mark = " ▲" if better else (" ▼" if delta else "")
        cells = "".join(f" {results[c][key]:.3f} |" for c in extra)
        lines.append(f"| {key} | {base[key]:.3f} | {adapter[key]:.3f} | {delta:+.3f}{mark} |{cells}")
    return "\n".join(lines)


def evaluate_adapter(cfg: EvalConfig, reporter: Reporter | None = None) -> dict[str, Any]:
    """Generate for base and adapter, score both; write the JSON (and card / push if asked)."""
    from taskdecomp.evaluation import load_metric
    from taskdecomp.generation import generate_batched
    from taskdecomp.grammar import plan_grammar, tool_plan_grammar
    from taskdecomp.heuristic import heuristic_answer
    from taskdecomp.promptfmt import render_prompt

    reporter = reporter or Reporter.silent()
    token = None
    if cfg.push:  # before the slow part: a missing token fails now, not after generating
        from taskdecomp.hub import resolve_token

        token = resolve_token()
    _check_adapter_exists(cfg.adapter)
    output, samples = output_paths(cfg)
    _check_output(output, "results file")
    _check_output(samples, "predictions file")
    if cfg.update_card and Path(cfg.adapter).is_dir():
        _check_output(Path(cfg.adapter) / "README.md", "model card")
    rows = load_eval_rows(cfg.dataset, cfg.split, cfg.limit)
    catalogue, catalogue_path = _catalogue(cfg, rows)  # a bad catalogue fails before the model loads
    if _looks_like_repo(cfg.adapter):
        check_hub_repo(cfg.adapter, "model", "--adapter")
    reporter.info(f"evaluating on {len(rows)} rows of {cfg.dataset} [{cfg.split}]")
    model, tokenizer = load_model(cfg.adapter, base=cfg.base, quantize_4bit=cfg.quantize_4bit)
    base_id = check_base(model, None, cfg.adapter)
    prompts = [render_prompt(tokenizer, r["instruction"], r.get("input") or "", catalogue) for r in rows]
    references = [r["output"] for r in rows]
    grammar = plan_grammar() if catalogue is None else tool_plan_grammar(catalogue)

    def generate(desc: str, constrain: bool) -> list[str]:  # the same settings for every column
        return generate_batched(
            model, tokenizer, prompts, desc=desc, max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.batch_size, reporter=reporter, repetition_penalty=cfg.repetition_penalty,
            grammar=grammar if constrain else None, catalogue=catalogue if constrain else None,
        )  # fmt: skip

    outputs: dict[str, list[str]] = {}
    runs = [("", cfg.constrain)] + (
        [("_unconstrained", False)] if cfg.also_unconstrained and cfg.constrain else []
    )
    for suffix, constrain in runs:
        with model.disable_adapter():
            outputs["base" + suffix] = generate("base" + suffix, constrain)
        outputs["adapter" + suffix] = generate("adapter" + suffix, constrain)
    outputs["heuristic"] = [heuristic_answer(r["instruction"], catalogue) for r in rows]

    metric = load_metric()
    results: dict[str, Any] = {
        name: metric.compute(predictions=texts, references=references, catalogue=catalogue_path)
        for name, texts in outputs.items()
    }
    results.update(
        {
            "dataset": cfg.dataset,
            "split": cfg.split,
            "n": len(rows),
            "adapter_id": cfg.repo_id or cfg.adapter,
            "base_model": base_id,
            "max_new_tokens": cfg.max_new_tokens,
            "constrained": cfg.constrain,
            "repetition_penalty": cfg.repetition_penalty,
            **({"tools": catalogue.name} if catalogue is not None else {}),
        }
    )
    atomic_write_json(output, results)
    # The texts themselves, for reading next to the numbers.
    atomic_write_text(
        samples,
        "".join(
            json.dumps(
                {
                    "instruction": r["instruction"],
                    "reference": r["output"],
                    **{k: v[i] for k, v in outputs.items()},
                },
                ensure_ascii=False,
            )
            + "\n"
            for i, r in enumerate(rows)
        ),
    )
    reporter.result(results_table(results))
    reporter.info(f"results: {output}; predictions: {samples}")
    if cfg.update_card:
        examples = valid_example_plans(rows, outputs["adapter"], catalogue, source=f"model:{cfg.adapter}")
        _update_card(cfg, results, output, reporter, token, examples)
    return results


def valid_example_plans(
    rows: Sequence[dict[str, Any]],
    answers: Sequence[str],
    catalogue: Catalogue | None = None,
    *,
    k: int = 3,
    source: str = "model:adapter",
) -> list[Plan]:
    """Up to `k` of the answers that are valid plans for their rows' tasks (the acceptance rule
    of `decompose`), for the model card: the first valid ones, of different structures where
    possible (`taskdecomp.mermaid.pick_examples`), in the rows' order."""
    from taskdecomp.mermaid import pick_examples
    from taskdecomp.plan import Plan, answer_errors

    source = "model:" + "_".join(source.removeprefix("model:").split())  # the schema: no whitespace

    def valid() -> Iterator[tuple[int, Plan]]:
        for i, (r, text) in enumerate(zip(rows, answers, strict=True)):
            row, errors = answer_errors(
                text, r["instruction"], input=r.get("input") or "", source=source, catalogue=catalogue
            )
            if not errors:
                yield i, Plan.from_row(row, raw=text)

    chosen = pick_examples(valid(), key=lambda item: item[1].structure, k=k)
    return [plan for _, plan in sorted(chosen, key=lambda item: item[0])]


def _catalogue(cfg: EvalConfig, rows: list[dict[str, Any]]) -> tuple[Catalogue | None, str | None]:
    """The catalogue to plan with and its file: `--tools`, else the default one when a reference
    plan names a tool; (None, None) for a dataset without tools."""
    from taskdecomp.schema import parse_output

    if cfg.tools is None and not any(st.get("tool") for r in rows for st in parse_output(r["output"])):
        return None, None
    from taskdecomp.catalogue import DEFAULT_CATALOGUE_PATH, default_catalogue, load_catalogue

    if cfg.tools is None or cfg.tools == "default":
        return default_catalogue(), str(DEFAULT_CATALOGUE_PATH)
    return load_catalogue(cfg.tools), cfg.tools


def _update_card(
    cfg: EvalConfig,
    results: dict[str, Any],
    output: Path,
    reporter: Reporter,
    token: str | None,
    examples: Sequence[Plan] = (),
) -> None:
    from taskdecomp.model_card import write_model_card

    folder = Path(cfg.adapter)
    if not folder.is_dir():
        # A Hub adapter: render the card in a local copy of the repo, then push that.
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(cfg.adapter, local_dir=tempfile.mkdtemp(prefix="taskdecomp-card-")))
    card_path = write_model_card(folder, eval_results=results, examples=examples)
    reporter.info(f"model card updated: {card_path}")
    if cfg.push and token:
        from taskdecomp.hub import push_files

        repo_id = cfg.repo_id or cfg.adapter
        url = push_files(
            repo_id,
            {"README.md": card_path, "eval_results.json": output},
            repo_type="model",
            token=token,
            commit_message=f"Evaluation on {cfg.dataset} [{cfg.split}], {results['n']} rows",
            reporter=reporter,
        )
        reporter.info(f"pushed: {url}")
