"""Batched greedy generation: the one generation loop used by evaluation and `decompose`.

The original project generated one prompt at a time, sampling up to 1,000 new tokens. Here:
prompts are sorted by token length and cut into batches (so a batch pads little), padded on
the LEFT (a decoder-only model continues from the last position, which must be a real token),
decoded greedily with a bounded `max_new_tokens`, and each row stops at EOS (`generate` keeps
feeding finished rows pad tokens, which we drop). Results come back in the input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taskdecomp.constrain import GrammarConstraint, description_repetition_penalty, drop_last_line
from taskdecomp.reporter import Reporter

if TYPE_CHECKING:
    from taskdecomp.catalogue import Catalogue

__all__ = ["generate_batched", "stop_token_ids", "grammar_constraint"]


def grammar_constraint(model: Any, tokenizer: Any, grammar: str) -> GrammarConstraint:
    """The grammar compiled for this model's tokenizer, cached on the tokenizer (compiling
    the tokenizer's trie takes ~1 s; a `Decomposer` generates many batches)."""
    cache: dict[str, GrammarConstraint] = tokenizer.__dict__.setdefault("_taskdecomp_grammars", {})
    if grammar not in cache:
        vocab = max(int(model.get_output_embeddings().weight.shape[0]), len(tokenizer))
        cache[grammar] = GrammarConstraint(
            tokenizer, grammar, eos_ids=stop_token_ids(model, tokenizer), vocab_size=vocab
        )
    return cache[grammar]


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """EOS ids from the tokenizer and the model's generation config (chat models often have
    both an end-of-turn and an end-of-text token)."""
    ids: list[int] = []
    cfg = getattr(model, "generation_config", None)
    for value in (tokenizer.eos_token_id, getattr(cfg, "eos_token_id", None)):
        for v in value if isinstance(value, list | tuple) else [value]:
            if v is not None and v not in ids:
                ids.append(int(v))
    return ids


def generate_batched(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    reporter: Reporter | None = None,
    desc: str = "generating",
    grammar: str | None = None,
    repetition_penalty: float = 1.0,
    catalogue: Catalogue | None = None,
) -> list[str]:
    """Greedy completions for already-rendered prompts (chat template applied), input order.
    With `grammar` (GBNF, see `taskdecomp.grammar`) every token is drawn from what the grammar
    allows next (`taskdecomp.constrain`), and with `catalogue` (a tool plan's grammar) every link
    a step makes fits the tools' types; `repetition_penalty` > 1 discourages a description from repeating the plan's earlier
    wording (not the prompt's words, not tags: `taskdecomp.constrain.description_repetition_penalty`)."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    reporter = reporter or Reporter.silent()
    if not prompts:
        return []
    eos = stop_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    constraint = None
    if grammar is not None:
        constraint = grammar_constraint(model, tokenizer, grammar)
    # The chat template already wrote the special tokens: don't let the tokenizer add a BOS.
    lengths = [len(ids) for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])  # longest first: OOM shows early
    outputs: list[str] = [""] * len(prompts)
    saved_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    try:
        with reporter.progress(len(prompts), desc) as bar, torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                enc = tokenizer(
                    [prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False
                ).to(device)
                processors = LogitsProcessorList()
                if repetition_penalty != 1.0:  # before the grammar's mask: it only reorders allowed tokens
                    processors.append(
                        description_repetition_penalty(
                            tokenizer, repetition_penalty, enc["input_ids"].shape[1]
                        )
                    )
                abandoned = [False] * len(idx)
                if constraint is not None:
                    processor = constraint.processor(len(idx), max_new_tokens, catalogue)
                    processors.append(processor)
                    abandoned = processor.abandoned  # filled in by `generate`
                out = model.generate(**enc, generation_config=config, logits_processor=processors)
                new = out[:, enc["input_ids"].shape[1] :]
                texts = tokenizer.batch_decode(new, skip_special_tokens=True)
                for i, text, gone in zip(idx, texts, abandoned, strict=True):
                    # a step abandoned as a repeat (taskdecomp.constrain) is not part of the plan
                    outputs[i] = drop_last_line(text) if gone else text.strip()
                bar.update(len(idx))
    finally:
        tokenizer.padding_side = saved_side
    return outputs
