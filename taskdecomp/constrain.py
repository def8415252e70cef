"""Grammar-constrained decoding for transformers' `generate`, with llguidance.

Why llguidance: it reads the GBNF grammar of `taskdecomp.grammar` as is, runs on CPU, keeps
one matcher per row (so batches with left padding work), and is a 7.6 MB wheel with no
dependencies. xgrammar (0.2.8), which ships a ready transformers processor, pulls in triton
(1 GB on a CPU machine) for kernels a CPU never uses. llguidance has no transformers processor,
so the ~40 lines below are that glue: per step, each row's matcher consumes the token the row
just produced and writes the bitmask of the tokens the grammar allows next; disallowed logits
become -inf. The mask is applied after every other processor (repetition penalty included).

A row whose plan is complete has a stopped matcher, which allows only EOS; after EOS,
`generate` feeds that row padding, whatever the mask says.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from taskdecomp.errors import InputError

__all__ = ["GrammarConstraint"]


class GrammarConstraint:
    """One grammar compiled for one tokenizer; `processor(batch)` gives a fresh logits processor
    for one `generate` call (matchers carry state, so they are never shared between calls)."""

    def __init__(self, tokenizer: Any, grammar: str, *, eos_ids: Sequence[int], vocab_size: int) -> None:
        import llguidance
        import llguidance.hf
        from llguidance._grammar_from import grammar_from

        try:
            self._tokenizer = llguidance.hf.from_tokenizer(
                tokenizer, n_vocab=vocab_size, eos_token=list(eos_ids)
            )
        except (ValueError, TypeError) as exc:
            raise InputError(
                f"the tokenizer cannot be used for grammar-constrained decoding ({exc}); pass --no-constrain"
            ) from None
        try:
            self._grammar = grammar_from("gbnf", grammar)
        except ValueError as exc:
            raise InputError(f"the plan grammar does not compile: {exc}") from None
        probe = llguidance.LLMatcher(self._tokenizer, self._grammar, log_level=0)
        if probe.is_error():
            raise InputError(
                f"the plan grammar cannot be served with this tokenizer: {probe.get_error()}; pass --no-constrain"
            )
        self.vocab_size = vocab_size
        self.eos_ids = list(eos_ids)

    def matcher(self) -> Any:
        import llguidance

        return llguidance.LLMatcher(self._tokenizer, self._grammar, log_level=0)

    def processor(self, batch_size: int) -> Any:
        return _processor_class()(self, batch_size)


@cache
def _processor_class() -> type:
    # defined on first use: transformers is imported only by a run that generates
    from transformers import LogitsProcessor

    class _Processor(LogitsProcessor):  # type: ignore[misc]
        def __init__(self, constraint: GrammarConstraint, batch_size: int) -> None:
            import torch

            self.matchers = [constraint.matcher() for _ in range(batch_size)]
            self.eos_ids = constraint.eos_ids
            words = (constraint.vocab_size + 31) // 32
            self.bitmask = torch.zeros((batch_size, words), dtype=torch.int32)
            self.shifts = torch.arange(32, dtype=torch.int32)
            self.started = False

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            import torch

            if self.started:  # the token each row produced at the previous step
                for row, matcher in enumerate(self.matchers):
                    if not matcher.is_stopped() and not matcher.is_error():
                        matcher.consume_token(int(input_ids[row, -1]))
            self.started = True
            for row, matcher in enumerate(self.matchers):
                v = self.bitmask[row]
                if matcher.is_error():  # cannot happen under the mask; if it does, end the answer
                    v.zero_()
                    for t in self.eos_ids:
                        v[t // 32] |= 1 << (t % 32)
                else:  # a stopped matcher (the plan is complete) allows only EOS
                    matcher.unsafe_compute_mask_ptr(v.data_ptr(), v.numel() * v.element_size())
            allowed = ((self.bitmask.unsqueeze(-1) >> self.shifts) & 1).bool().flatten(1)
            vocab = scores.shape[-1]
            if allowed.shape[1] < vocab:
                pad = torch.zeros((allowed.shape[0], vocab - allowed.shape[1]), dtype=torch.bool)
                allowed = torch.cat([allowed, pad], dim=1)
            return scores.masked_fill(~allowed[:, :vocab].to(scores.device), float("-inf"))

    return _Processor
