"""ROUGE-L as rouge_score computes it (no stemming), in plain Python.

`rouge_l_text(a, b)` equals `rouge_scorer.RougeScorer(["rougeL"]).score(a, b)["rougeL"].fmeasure`
to the last bit (the tests check it): the same tokens and the same float expression, with a
bit-parallel LCS instead of rouge_score's O(mn) table. The validator, the planner and the
metric use these; the de-duplication index (`_lsh.py`) compiles `fmeasure` itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["rouge_tokens", "lcs_length", "fmeasure", "rouge_l", "rouge_l_text"]

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """rouge_score's `tokenize(text, stemmer=None)`, byte for byte."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


def lcs_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Length of the longest common subsequence of two token sequences (bit-parallel,
    Crochemore et al. 2001, on Python ints)."""
    if len(a) < len(b):  # the bit vector runs over the longer side: fewer iterations
        a, b = b, a
    masks: dict[Any, int] = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    return _lcs_masks(masks, len(a), b)


def _lcs_masks(masks: dict[Any, int], m: int, b: Iterable[Any]) -> int:
    full = (1 << m) - 1
    v = full
    get = masks.get
    for tok in b:
        u = v & get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return m - v.bit_count()


def fmeasure(lcs: int, m: int, n: int) -> float:
    """F-measure of an LCS of sequences of m and n tokens, by rouge_score's very expression
    (precision and recall, then their harmonic mean), so comparisons with a threshold agree
    with it to the last bit."""
    if lcs == 0:
        return 0.0
    precision = lcs / n
    recall = lcs / m
    return 2 * precision * recall / (precision + recall)


def rouge_l(a: Sequence[Any], b: Sequence[Any]) -> float:
    """ROUGE-L F-measure of two token sequences (0.0 when either is empty)."""
    if not a or not b:
        return 0.0
    return fmeasure(lcs_length(a, b), len(a), len(b))


def rouge_l_text(a: str, b: str) -> float:
    return rouge_l(rouge_tokens(a), rouge_tokens(b))
