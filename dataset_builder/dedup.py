"""Exact and near-duplicate detection of instructions (the Alpaca rule), at scale.

Rule: a row is a duplicate when its normalised instruction (`schema.normalise`) equals a
kept row's ("exact"), or when the ROUGE-L F-measure between its instruction and a kept row's
is >= `threshold` ("near", 0.7 as in Self-Instruct/Alpaca). Like Alpaca, a row is compared
with the rows *kept* so far, so `find_duplicates` equals calling `check_and_add` in order.

Scaling: comparing every pair is O(N^2) (Alpaca's script). Here candidates come from
MinHash-LSH over each instruction's token *bigrams* (unigram sets of unrelated instructions
overlap too much through "a", "the", "create"... to separate them from near-duplicates);
only candidates are confirmed with an exact ROUGE-L. Signatures are computed with numpy
(vectorised over many rows in `find_duplicates` / `add_many`), and the LCS is the
bit-parallel algorithm (Crochemore et al. 2001) on Python ints: O(len) big-int operations
per pair instead of an O(m*n) table.

Tokens follow `rouge_score`'s tokenizer without stemming, exactly (lower-case, every run
of characters outside [a-z0-9] is a separator), and the F-measure is computed with the
same float formula, so `rouge_l(a, b)` equals `rouge_scorer.RougeScorer(["rougeL"])
.score(a, b)["rougeL"].fmeasure` (the tests check this on sampled pairs). LSH is
probabilistic: a pair of near-duplicates can be missed (measured recall: benchmarks/dedup.py).
Everything is deterministic (fixed seeds, blake2b token hashes; no Python `hash()`).
"""

from __future__ import annotations

import collections
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from taskdecomp.schema import normalise, row_id

__all__ = [
    "Duplicate",
    "Deduplicator",
    "rouge_tokens",
    "lcs_length",
    "rouge_l",
    "rouge_l_text",
    "near_duplicate_pairs",
]

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_M64 = (1 << 64) - 1
# salts that turn a pair of token hashes into one bigram feature (odd: a bijection mod 2^64)
_K_BIGRAM = 0x9E3779B97F4A7C15
_K_SINGLE = 0xC2B2AE3D27D4EB4F


def rouge_tokens(text: str) -> list[str]:
    """rouge_score's `tokenize(text, stemmer=None)`, byte for byte."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


def lcs_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Length of the longest common subsequence of two token sequences (bit-parallel)."""
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


def _fmeasure(lcs: int, m: int, n: int) -> float:
    # the very expression rouge_score uses (precision/recall, then scoring.fmeasure), so the
    # comparison with the threshold agrees with it to the last bit
    if lcs == 0:
        return 0.0
    precision, recall = lcs / n, lcs / m
    return 2 * precision * recall / (precision + recall)


def rouge_l(a: Sequence[Any], b: Sequence[Any]) -> float:
    """ROUGE-L F-measure of two token sequences (0.0 when either is empty)."""
    if not a or not b:
        return 0.0
    return _fmeasure(lcs_length(a, b), len(a), len(b))


def rouge_l_text(a: str, b: str) -> float:
    return rouge_l(rouge_tokens(a), rouge_tokens(b))


@dataclass(frozen=True)
class Duplicate:
    kind: Literal["exact", "near"]
    of_id: str  # the kept row it duplicates
    score: float  # 1.0 for exact, the ROUGE-L F-measure for near


class _Vocab(dict[str, int]):
    """token → dense id, new tokens numbered on first sight (`__missing__` keeps the bulk
    path a plain `map(vocab.__getitem__, tokens)`)."""

    def __missing__(self, key: str) -> int:
        self[key] = value = len(self)
        return value


class Deduplicator:
    """Streaming index of kept instructions.

    `num_bands` x `band_rows` MinHash values per instruction; two instructions become
    candidates when all `band_rows` values of at least one band agree. The defaults put the
    LSH threshold low on bigram Jaccard (near-duplicates at ROUGE-L 0.7 share about 25-60% of
    their bigrams, unrelated instructions almost none), see benchmarks/dedup.py.
    """

    def __init__(self, threshold: float = 0.7, *, num_bands: int = 32, band_rows: int = 2, seed: int = 0) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.num_bands, self.band_rows = num_bands, band_rows
        rng = np.random.default_rng(seed)
        k = num_bands * band_rows
        # multiply-shift hashing mod 2^64: one (odd a, b) pair per MinHash "permutation"
        self._a = rng.integers(1, 2**63, size=k, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._b = rng.integers(0, 2**63, size=k, dtype=np.uint64)
        self._band_mix = rng.integers(1, 2**63, size=band_rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._vocab = _Vocab()
        self._tok_hash: list[int] = []  # vocab id → 64-bit blake2b of the token
        self._exact: dict[str, str] = {}  # normalised instruction → row id
        self._ids: list[str] = []  # kept index → row id
        self._tokens: list[tuple[int, ...]] = []  # kept index → token ids
        self._tables: list[dict[int, int | list[int]]] = [{} for _ in range(num_bands)]

    def __len__(self) -> int:
        return len(self._exact)

    # --- features and signatures ------------------------------------------------------
    def _ids_of(self, text: str) -> tuple[int, ...]:
        return tuple(map(self._vocab.__getitem__, rouge_tokens(text)))

    def _hashes(self) -> np.ndarray:
        th = self._tok_hash
        for tok in list(self._vocab)[len(th) :]:
            th.append(int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little"))
        return np.array(th, dtype=np.uint64)

    def _band_keys(self, token_ids: Sequence[Sequence[int]]) -> list[list[int] | None]:
        """Per instruction: `num_bands` LSH keys (None when it has no tokens)."""
        out: list[list[int] | None] = [None] * len(token_ids)
        th = self._hashes()
        lengths = np.fromiter((len(t) for t in token_ids), dtype=np.int64, count=len(token_ids))
        present = np.flatnonzero(lengths)
        if not len(present):
            return out
        flat = th[np.fromiter((i for t in token_ids for i in t), dtype=np.int64, count=int(lengths.sum()))]
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        with np.errstate(over="ignore"):
            # bigram feature at every position whose successor is in the same instruction;
            # a one-token instruction gets a single unigram feature instead
            nxt = np.append(flat[1:], np.uint64(0))
            last = np.zeros(len(flat), dtype=bool)
            last[starts[present] + lengths[present] - 1] = True
            feats = np.where(last, flat * np.uint64(_K_SINGLE), flat * np.uint64(_K_BIGRAM) + nxt)
            keep = ~last
            single = present[lengths[present] == 1]
            keep[starts[single]] = True
            feats = feats[keep]
            # features stay grouped by instruction: segment starts after dropping
            counts = np.maximum(lengths[present] - 1, 1)
            seg = np.concatenate(([0], np.cumsum(counts)[:-1]))
            sig = np.empty((len(present), len(self._a)), dtype=np.uint64)
            chunk = max(1, 4_000_000 // len(self._a))  # features per numpy block (bounded memory)
            lo = 0
            while lo < len(present):
                # whole instructions per block
                hi = int(np.searchsorted(seg, seg[lo] + chunk, side="left"))
                hi = max(hi, lo + 1)
                f0 = int(seg[lo])
                f1 = int(seg[hi]) if hi < len(present) else len(feats)
                h = (feats[f0:f1, None] * self._a + self._b) >> np.uint64(32)
                sig[lo:hi] = np.minimum.reduceat(h, seg[lo:hi] - f0, axis=0)
                lo = hi
            bands = sig.reshape(len(present), self.num_bands, self.band_rows)
            keys = (bands * self._band_mix).sum(axis=2, dtype=np.uint64)
        for row, k in zip(present.tolist(), keys.tolist(), strict=True):
            out[row] = k
        return out

    # --- the index ----------------------------------------------------------------------
    def _query(self, norm: str, toks: tuple[int, ...], keys: list[int] | None) -> Duplicate | None:
        of = self._exact.get(norm)
        if of is not None:
            return Duplicate("exact", of, 1.0)
        if keys is None:
            return None
        cands: set[int] = set()
        for table, key in zip(self._tables, keys, strict=True):
            hit = table.get(key)
            if hit is None:
                continue
            if isinstance(hit, int):
                cands.add(hit)
            else:
                cands.update(hit)
        if not cands:
            return None
        m, t = len(toks), self.threshold
        masks: dict[int, int] = {}
        for i, tok in enumerate(toks):
            masks[tok] = masks.get(tok, 0) | (1 << i)
        for idx in sorted(cands):  # earliest kept row first: deterministic `of_id`
            other = self._tokens[idx]
            n = len(other)
            if 2 * min(m, n) / (m + n) < t:  # LCS <= shorter length bounds F from above
                continue
            score = _fmeasure(_lcs_masks(masks, m, other), m, n)
            if score >= t:
                return Duplicate("near", self._ids[idx], score)
        return None

    def _insert(self, rid: str, norm: str, toks: tuple[int, ...], keys: list[int] | None) -> None:
        if norm in self._exact:
            return
        self._exact[norm] = rid
        if keys is None:
            return
        idx = len(self._ids)
        self._ids.append(rid)
        self._tokens.append(toks)
        for table, key in zip(self._tables, keys, strict=True):
            hit = table.get(key)
            if hit is None:
                table[key] = idx
            elif isinstance(hit, int):
                table[key] = [hit, idx]
            else:
                hit.append(idx)

    def check(self, instruction: str) -> Duplicate | None:
        """The kept row this instruction duplicates, or None. Does not add it."""
        toks = self._ids_of(instruction)
        return self._query(normalise(instruction), toks, self._band_keys([toks])[0])

    def add(self, row_id: str, instruction: str) -> None:
        """Index a row as kept (no check): rebuilding from journaled rows, seeding."""
        toks = self._ids_of(instruction)
        self._insert(row_id, normalise(instruction), toks, self._band_keys([toks])[0])

    def check_and_add(self, row_id: str, instruction: str) -> Duplicate | None:
        """Check; when unique, keep it. Returns the duplicate found, if any."""
        toks = self._ids_of(instruction)
        norm, keys = normalise(instruction), self._band_keys([toks])[0]
        dup = self._query(norm, toks, keys)
        if dup is None:
            self._insert(row_id, norm, toks, keys)
        return dup

    def add_many(self, rows: Iterable[tuple[str, str]]) -> None:
        """`add` for many (row_id, instruction) pairs; signatures computed in bulk."""
        rows = list(rows)
        toks = [self._ids_of(instr) for _, instr in rows]
        for (rid, instr), t, keys in zip(rows, toks, self._band_keys(toks), strict=True):
            self._insert(rid, normalise(instr), t, keys)

    def find_duplicates(self, rows: Iterable[dict[str, Any] | str]) -> list[tuple[int, Duplicate]]:
        """`check_and_add` over rows in order (first occurrence kept), signatures computed in
        bulk. Rows are dicts with `instruction` (and `id`, else `row_id(instruction)`) or plain
        strings. Returns (position, Duplicate) for every row not kept."""
        items = [(r, None) if isinstance(r, str) else (r["instruction"], r.get("id")) for r in rows]
        toks = [self._ids_of(instr) for instr, _ in items]
        out = []
        for i, ((instr, rid), t, keys) in enumerate(zip(items, toks, self._band_keys(toks), strict=True)):
            norm = normalise(instr)
            dup = self._query(norm, t, keys)
            if dup is None:
                self._insert(rid or row_id(instr), norm, t, keys)
            else:
                out.append((i, dup))
        return out


def near_duplicate_pairs(
    instructions: Sequence[str], threshold: float = 0.7, **lsh: Any
) -> list[tuple[int, int, float]]:
    """Every pair (i < j) with ROUGE-L >= threshold that the LSH proposes (not the greedy
    keep-first rule): for recall measurements against brute force. Quadratic inside a bucket,
    so meant for evaluation-sized inputs."""
    d = Deduplicator(threshold, **lsh)
    toks = [d._ids_of(s) for s in instructions]
    cands: set[tuple[int, int]] = set()
    buckets: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
    for i, keys in enumerate(d._band_keys(toks)):
        for band, key in enumerate(keys or ()):
            bucket = buckets[band, key]
            cands.update((j, i) for j in bucket)
            bucket.append(i)
    out = []
    for i, j in sorted(cands):
        score = rouge_l(toks[i], toks[j])
        if score >= threshold:
            out.append((i, j, score))
    return out
