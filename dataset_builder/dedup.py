"""Exact and near-duplicate detection of instructions (the Alpaca rule), at scale.

Rule: a row is a duplicate when its normalised instruction (`schema.normalise`) equals a
kept row's ("exact"), or when the ROUGE-L F-measure between its instruction and a kept row's
is >= `threshold` ("near", 0.7 as in Self-Instruct/Alpaca). Like Alpaca, a row is compared
with the rows *kept* so far, so `find_duplicates` equals calling `check_and_add` in order.

Scaling: comparing every pair is O(N^2) (Alpaca's script). Here candidates come from
MinHash-LSH over each instruction's token *bigrams* (unigram sets of unrelated instructions
overlap too much through "a", "the", "create"... to separate them from near-duplicates):
128 bands of 3 values. A candidate is kept only if it shares >= 18% of all 384 MinHash
values (an estimate of bigram Jaccard, one vectorised comparison), then confirmed with an
exact ROUGE-L. Signatures are computed with numpy in bulk (`find_duplicates`, `add_many`);
the LCS is the bit-parallel algorithm (Crochemore et al. 2001) on Python ints: O(len)
big-int operations per pair instead of an O(m*n) table.

Cost per checked row grows with how many kept rows share a band with it: for templated
text (the offline backend's shared phrases) that is about 1-2 per 1,000 kept rows, so very
large indexes slow down roughly linearly per row (measured in benchmarks/dedup.py).

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
import itertools
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


def _exact_key(instruction: str) -> str:
    # `normalise` drops what is not ASCII: an all-Chinese instruction would normalise to ''
    # and equal every other one, so such texts are compared as written
    return normalise(instruction) or "\x00" + instruction.strip()


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


_TOKEN = re.compile(r"[a-z0-9]+")  # maximal runs of [a-z0-9] == rouge_tokens(), one call


class Deduplicator:
    """Streaming index of kept instructions.

    Each instruction's token bigrams get `num_bands` x `band_rows` MinHash values; two
    instructions become candidates when all values of one band agree. Candidates are then
    filtered by the fraction of all MinHash values they share (an estimate of bigram
    Jaccard, vectorised: cheap) against `min_jaccard`, and confirmed with the exact ROUGE-L.
    Near-duplicates at ROUGE-L 0.7 share about 25-60% of their bigrams, unrelated
    instructions a few percent: see benchmarks/dedup.py for the measured recall.
    """

    def __init__(
        self,
        threshold: float = 0.7,
        *,
        num_bands: int = 128,
        band_rows: int = 3,
        min_jaccard: float = 0.18,
        seed: int = 0,
    ) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.num_bands, self.band_rows = num_bands, band_rows
        k = num_bands * band_rows
        self._min_agree = int(min_jaccard * k)
        rng = np.random.default_rng(seed)
        # 32-bit multiply-add hashing, one odd multiplier per MinHash "permutation": with
        # uint32 lanes numpy computes (k x features) blocks several times faster than uint64
        self._a = (rng.integers(0, 2**31, size=(k, 1), dtype=np.uint32) << np.uint32(1)) | np.uint32(1)
        self._b = rng.integers(0, 2**32, size=(k, 1), dtype=np.uint32)
        self._mix = rng.integers(0, 2**63, size=band_rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._vocab = _Vocab()
        self._tok_hash = np.zeros(0, dtype=np.uint64)  # vocab id → 64-bit blake2b of the token
        self._exact: dict[str, str] = {}  # normalised instruction → row id
        self._ids: list[str] = []  # kept index → row id
        self._tokens: list[tuple[int, ...]] = []  # kept index → token ids
        self._sigs = np.zeros((1024, k), dtype=np.uint32)  # kept index → MinHash values
        self._tables: list[dict[int, int | list[int]]] = [{} for _ in range(num_bands)]

    def __len__(self) -> int:
        return len(self._exact)

    # --- features and signatures ------------------------------------------------------
    def _ids_of(self, text: str) -> tuple[int, ...]:
        return tuple(map(self._vocab.__getitem__, _TOKEN.findall(text.lower())))

    def _hashes(self) -> np.ndarray:
        if len(self._tok_hash) < len(self._vocab):
            new = list(self._vocab)[len(self._tok_hash) :]
            digests = b"".join(hashlib.blake2b(t.encode(), digest_size=8).digest() for t in new)
            self._tok_hash = np.concatenate(
                (self._tok_hash, np.frombuffer(digests, dtype="<u8").astype(np.uint64))
            )
        return self._tok_hash

    def _signatures(self, token_ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(rows that have tokens, their MinHash values [rows x k]) for instructions given
        as token ids; features are token bigrams (a one-token instruction: its token)."""
        th = self._hashes()
        lengths = np.fromiter(map(len, token_ids), dtype=np.int64, count=len(token_ids))
        present = np.flatnonzero(lengths)
        sig = np.zeros((len(present), len(self._a)), dtype=np.uint32)
        if not len(present):
            return present, sig
        flat = th[
            np.fromiter(itertools.chain.from_iterable(token_ids), dtype=np.int64, count=int(lengths.sum()))
        ]
        lens = lengths[present]
        ends = np.cumsum(lens)
        starts = ends - lens
        with np.errstate(over="ignore"):
            nxt = np.append(flat[1:], np.uint64(0))
            feats64 = flat * np.uint64(_K_BIGRAM) + nxt
            is_last = np.zeros(len(flat), dtype=bool)
            is_last[ends - 1] = True
            keep = ~is_last
            keep[starts[lens == 1]] = True  # one token: its unigram (times another salt)
            feats64 = np.where(lens.repeat(lens) == 1, flat * np.uint64(_K_SINGLE), feats64)[keep]
            feats = (feats64 >> np.uint64(32)).astype(np.uint32)
            counts = np.maximum(lens - 1, 1)
            seg = np.cumsum(counts) - counts  # each instruction's first feature
            block = max(1, 2_000_000 // len(self._a))  # features per numpy block: bounded memory
            lo = 0
            while lo < len(present):
                hi = max(lo + 1, int(np.searchsorted(seg, seg[lo] + block, side="left")))
                f0, f1 = int(seg[lo]), int(seg[hi]) if hi < len(present) else len(feats)
                h = self._a * feats[None, f0:f1] + self._b
                sig[lo:hi] = np.minimum.reduceat(h, seg[lo:hi] - f0, axis=1).T
                lo = hi
        return present, sig

    def _band_keys(self, sig: np.ndarray) -> list[list[int]]:
        with np.errstate(over="ignore"):
            bands = sig.reshape(len(sig), self.num_bands, self.band_rows).astype(np.uint64)
            return (bands * self._mix).sum(axis=2, dtype=np.uint64).tolist()

    def _prepare(self, token_ids: Sequence[tuple[int, ...]]) -> list[tuple[np.ndarray, list[int]] | None]:
        out: list[tuple[np.ndarray, list[int]] | None] = [None] * len(token_ids)
        present, sig = self._signatures(token_ids)
        for i, s, keys in zip(present.tolist(), sig, self._band_keys(sig), strict=True):
            out[i] = (s, keys)
        return out

    # --- the index ----------------------------------------------------------------------
    def _query(
        self, norm: str, toks: tuple[int, ...], prep: tuple[np.ndarray, list[int]] | None
    ) -> Duplicate | None:
        of = self._exact.get(norm)
        if of is not None:
            return Duplicate("exact", of, 1.0)
        if prep is None:
            return None
        sig, keys = prep
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
        idx = np.fromiter(cands, dtype=np.int64, count=len(cands))
        agree = (self._sigs[idx] == sig).sum(axis=1)
        order = np.lexsort((idx, -agree))  # most similar first (early exit), then oldest
        order = order[agree[order] >= self._min_agree]
        m, t = len(toks), self.threshold
        masks: dict[int, int] = {}
        for i, tok in enumerate(toks):
            masks[tok] = masks.get(tok, 0) | (1 << i)
        for j in idx[order].tolist():
            other = self._tokens[j]
            n = len(other)
            if 2 * min(m, n) / (m + n) < t:  # LCS <= the shorter length bounds F from above
                continue
            score = _fmeasure(_lcs_masks(masks, m, other), m, n)
            if score >= t:
                return Duplicate("near", self._ids[j], score)
        return None

    def _insert(
        self, rid: str, norm: str, toks: tuple[int, ...], prep: tuple[np.ndarray, list[int]] | None
    ) -> None:
        if norm in self._exact:
            return
        self._exact[norm] = rid
        if prep is None:
            return
        sig, keys = prep
        j = len(self._ids)
        if j == len(self._sigs):
            self._sigs = np.concatenate((self._sigs, np.zeros_like(self._sigs)))
        self._sigs[j] = sig
        self._ids.append(rid)
        self._tokens.append(toks)
        for table, key in zip(self._tables, keys, strict=True):
            hit = table.get(key)
            if hit is None:
                table[key] = j
            elif isinstance(hit, int):
                table[key] = [hit, j]
            else:
                hit.append(j)

    def check(self, instruction: str) -> Duplicate | None:
        """The kept row this instruction duplicates, or None. Does not add it."""
        toks = self._ids_of(instruction)
        return self._query(_exact_key(instruction), toks, self._prepare([toks])[0])

    def add(self, row_id: str, instruction: str) -> None:
        """Index a row as kept without checking it (seeding, rebuilding from kept rows)."""
        toks = self._ids_of(instruction)
        self._insert(row_id, _exact_key(instruction), toks, self._prepare([toks])[0])

    def check_and_add(self, row_id: str, instruction: str) -> Duplicate | None:
        """Check; when unique, keep it. Returns the duplicate found, if any."""
        toks = self._ids_of(instruction)
        norm, prep = _exact_key(instruction), self._prepare([toks])[0]
        dup = self._query(norm, toks, prep)
        if dup is None:
            self._insert(row_id, norm, toks, prep)
        return dup

    def add_many(self, rows: Iterable[tuple[str, str]]) -> None:
        """`add` for many (row_id, instruction) pairs, signatures computed in bulk."""
        rows = list(rows)
        toks = [self._ids_of(instr) for _, instr in rows]
        for (rid, instr), t, prep in zip(rows, toks, self._prepare(toks), strict=True):
            self._insert(rid, _exact_key(instr), t, prep)

    def find_duplicates(self, rows: Iterable[dict[str, Any] | str]) -> list[tuple[int, Duplicate]]:
        """`check_and_add` over rows in order (first occurrence kept, also against rows
        already indexed), signatures computed in bulk. Rows are dicts with `instruction`
        (and `id`, else `row_id(instruction)` is used) or plain strings. Returns
        (position, Duplicate) for every row not kept."""
        items = [(r, None) if isinstance(r, str) else (r["instruction"], r.get("id")) for r in rows]
        out = []
        chunk = 50_000  # bounded memory for the bulk signatures
        for c0 in range(0, len(items), chunk):
            part = items[c0 : c0 + chunk]
            toks = [self._ids_of(instr) for instr, _ in part]
            for i, ((instr, rid), t, prep) in enumerate(
                zip(part, toks, self._prepare(toks), strict=True), c0
            ):
                norm = _exact_key(instr)
                dup = self._query(norm, t, prep)
                if dup is None:
                    self._insert(rid or row_id(instr), norm, t, prep)
                else:
                    out.append((i, dup))
        return out


def near_duplicate_pairs(
    instructions: Sequence[str], threshold: float = 0.7, **lsh: Any
) -> list[tuple[int, int, float]]:
    """Every pair (i < j) with ROUGE-L >= threshold that the index finds (all pairs, not the
    keep-first rule): for recall measurements against brute force. Quadratic inside a
    bucket, so meant for evaluation-sized inputs."""
    d = Deduplicator(threshold, **lsh)
    toks = [d._ids_of(s) for s in instructions]
    cands: set[tuple[int, int]] = set()
    buckets: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
    prep = d._prepare(toks)
    for i, p in enumerate(prep):
        for band, key in enumerate(p[1] if p else ()):
            bucket = buckets[band, key]
            cands.update((j, i) for j in bucket)
            bucket.append(i)
    out = []
    for i, j in sorted(cands):
        pi, pj = prep[i], prep[j]
        assert pi is not None and pj is not None
        if int((pi[0] == pj[0]).sum()) < d._min_agree:
            continue
        score = rouge_l(toks[i], toks[j])
        if score >= threshold:
            out.append((i, j, score))
    return out
