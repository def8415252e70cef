"""Exact and near-duplicate detection of instructions (the Alpaca rule), at scale.

Rule: a row is a duplicate when its normalised instruction (`schema.normalise`) equals a
kept row's ("exact"), or when the ROUGE-L F-measure between its instruction and a kept row's
is >= `threshold` ("near", 0.7 as in Self-Instruct/Alpaca). Like Alpaca, a row is compared
with the rows *kept* so far, so `find_duplicates` equals calling `check_and_add` in order.

Scaling: comparing every pair is O(N^2) (Alpaca's script). Here candidates come from
MinHash-LSH (32 bands of 4 values) over each instruction's token *multiset* ((token,
occurrence) pairs). ROUGE-L F >= t needs LCS >= t(m+n)/2, and LCS <= the multiset overlap,
so every true pair has a feature Jaccard >= t/(2-t) (0.538 at 0.7) whatever the text: a
band catches it with probability >= 0.538^4, 32 bands miss it with probability <= 6%, and
measured near-duplicates sit higher. Unrelated rows share mostly frequent words, so once
the index is large (`epoch_rows`) tokens found in more than `stop_df` of the kept rows are
left out of the features; that set is recomputed, and the index re-signed, when the index
has grown 16-fold (deterministic: it only depends on the rows kept, in order). Candidates
then pass the length ratio and the exact multiset-overlap bound (Dice >= t, necessary),
highest Dice first, and the exact ROUGE-L (bit-parallel LCS, Crochemore et al. 2001).

Cost: the per-row work (tokens, exact key, signature, band look-ups, filters, LCS, insertion)
runs compiled (`_lsh.py`, numba): a few microseconds a row plus ~0.5 us per LSH candidate;
candidates per query grow with the index on templated text (offline backend: ~7 at 100,000
kept rows, ~58 at 500,000). `benchmarks/dedup.py` measures speed and recall, including
recall at 500,000 rows on planted near-duplicates (after the frequent-token epochs).

Tokens follow `rouge_score`'s tokenizer without stemming, exactly (lower-case, every run
of characters outside [a-z0-9] is a separator), and the F-measure is computed with the
same float formula, so `rouge_l(a, b)` equals `rouge_scorer.RougeScorer(["rougeL"])
.score(a, b)["rougeL"].fmeasure` (the tests check this, in Python and in the compiled
code). LSH is probabilistic: a pair of near-duplicates can be missed. Everything is
deterministic (fixed seeds, fixed hash functions; no Python `hash()`).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from taskdecomp.rouge import lcs_length, rouge_l, rouge_l_text, rouge_tokens
from taskdecomp.schema import normalise, row_id

from . import _lsh

__all__ = [
    "Duplicate",
    "Deduplicator",
    "rouge_tokens",
    "lcs_length",
    "rouge_l",
    "rouge_l_text",
    "near_duplicate_pairs",
]


def _exact_key(instruction: str) -> str:
    # a text without any word character ("???") normalises to '', which would make every such
    # text equal: those are compared as written (after a NUL, which no normalised text holds).
    # `_lsh` computes the same key's hashes itself for ASCII text.
    return normalise(instruction) or "\x00" + instruction.strip()


@dataclass(frozen=True)
class Duplicate:
    kind: Literal["exact", "near"]
    of_id: str  # the kept row it duplicates
    score: float  # 1.0 for exact, the ROUGE-L F-measure for near


def _grown(arr: np.ndarray, need: int, fill: Any) -> np.ndarray:
    """`arr` with at least `need` rows (doubling), new rows set to `fill`."""
    if len(arr) >= need:
        return arr
    out = np.full((max(need, 2 * len(arr)), *arr.shape[1:]), fill, dtype=arr.dtype)
    out[: len(arr)] = arr
    return out


def _table_size(entries: int) -> int:
    return 1 << max(4, (2 * entries - 1).bit_length())  # a power of two, load <= 1/2


def _rehashed(table: np.ndarray, entries: int) -> np.ndarray:
    """`table` (an `_lsh` hash table), moved into a larger one unless `entries` fit at load <= 1/2."""
    if len(table) >= 2 * entries:
        return table
    out = np.zeros((_table_size(max(entries, len(table))), table.shape[1]), table.dtype)
    _lsh.rehash(table, out)
    return out


def _encode(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bytes, offsets, key bytes, key offsets) for `_lsh.process`: the lower-cased UTF-8
    of each text, and `_exact_key` for the texts that are not ASCII (the compiled code
    keys ASCII text itself)."""
    joined = "".join(texts)
    if joined.isascii():  # the common case: one lower() and one encode() for the batch
        data = joined.lower().encode("ascii")
        lengths: Iterable[int] = map(len, texts)
        keys, key_lengths = b"", [0] * len(texts)
    else:
        parts = [t.lower().encode() for t in texts]
        data, lengths = b"".join(parts), map(len, parts)
        key_parts = [b"" if t.isascii() else _exact_key(t).encode() for t in texts]
        keys, key_lengths = b"".join(key_parts), list(map(len, key_parts))
    return (
        np.frombuffer(data, np.uint8).copy(),
        _offsets(lengths, len(texts)),
        np.frombuffer(keys, np.uint8).copy(),
        _offsets(key_lengths, len(texts)),
    )


def _offsets(lengths: Iterable[int], n: int) -> np.ndarray:
    out = np.zeros(n + 1, np.int64)
    np.cumsum(np.fromiter(lengths, np.int64, count=n), out=out[1:])
    return out


class Deduplicator:
    """Index of kept instructions; each row is checked against the rows kept before it.

    Features: each instruction's token *multiset* ((token, occurrence) pairs). ROUGE-L F >= t
    implies LCS >= t(m+n)/2 and LCS <= the multiset overlap, so every true pair has feature
    Jaccard >= t/(2-t) (0.538 at 0.7): the candidate stage has a floor that does not depend
    on the data. Once the index holds `epoch_rows` rows, tokens in more than `stop_df` of the
    kept rows (function words, a generator's template words) are left out of the features:
    unrelated rows share mostly those, so this slows the growth of candidates per query with
    the index. The frequent-token set is recomputed (and every kept row re-signed) each time
    the index grows 16-fold, so it only depends on the rows kept, in order: deterministic,
    and every signature in the index is made with the same set as the query's. The price:
    near-duplicates whose shared words are mostly frequent ones can be missed in a large
    index (below `epoch_rows`, never).

    Candidates: MinHash-LSH, `num_bands` bands of `band_rows` values; then the length ratio
    and the exact multiset-overlap bound (Dice >= t, necessary); then the exact ROUGE-L
    (bit-parallel LCS), highest Dice first. The loops are compiled (`_lsh.py`); Python
    encodes the text and keeps the row ids.
    """

    _chunk = 65_536  # rows per compiled call in the bulk paths: bounded scratch memory

    def __init__(
        self,
        threshold: float = 0.7,
        *,
        num_bands: int = 32,
        band_rows: int = 4,
        stop_df: float = 0.05,
        epoch_rows: int = 4096,
        seed: int = 0,
    ) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if num_bands < 1 or band_rows < 1:
            raise ValueError("num_bands and band_rows must be >= 1")
        self.threshold = threshold
        self.num_bands, self.band_rows = num_bands, band_rows
        self.stop_df = stop_df
        rng = np.random.default_rng(seed)

        def uint(n: int, bits: int) -> np.ndarray:
            dtype = np.uint32 if bits == 32 else np.uint64
            return rng.integers(0, 2**bits, size=n, dtype=dtype, endpoint=False)

        k, vocab, rows = num_bands * band_rows, 1 << 10, 1 << 6
        self._ix = _lsh.Index(
            a=uint(k, 32) | np.uint32(1),
            b=uint(k, 32),
            mix=uint(band_rows, 64) | np.uint64(1),
            vocab=np.zeros((2 * vocab, 2), np.uint64),
            tok_off=np.zeros(vocab + 1, np.int64),
            pool=np.zeros(8 * vocab, np.uint8),
            tok_hash=np.zeros(vocab, np.uint64),
            stop=np.zeros(vocab, bool),
            df=np.zeros(vocab, np.int64),
            occ=np.zeros(vocab, np.int32),
            slot=np.full(vocab, -1, np.int32),
            row_ptr=np.zeros(rows + 1, np.int64),
            tokens=np.zeros(rows * 32, np.int32),
            sorted_tokens=np.zeros(rows * 32, np.int32),
            seen=np.zeros(rows, np.int64),
            cand=np.zeros(rows, np.int64),
            cand_key=np.zeros(rows, np.int64),
            keys=np.zeros((2 * rows, 3), np.uint64),
            table=np.zeros((_table_size(rows * num_bands), 2), np.uint64),
            post=np.zeros(rows * num_bands, np.uint64),
            counters=np.zeros(_lsh.N_COUNTERS, np.int64),
        )
        self._ix.counters[_lsh.NEXT_EPOCH] = epoch_rows
        self._ids: list[str | None] = []  # kept index → row id (None: row_id of the text)
        self._texts: dict[int, str] = {}  # kept index → text, for the ids made on demand

    def __len__(self) -> int:
        return int(self._ix.counters[_lsh.KEPT])

    @property
    def _stop(self) -> np.ndarray:  # tokens left out of the features (tests look)
        return self._ix.stop[: self._ix.counters[_lsh.N_VOCAB]]

    @property
    def stats(self) -> dict[str, int]:
        """Work done so far: queries, LSH candidates, candidates past the exact bounds,
        LCS computed (benchmarks/dedup.py prints them)."""
        c = self._ix.counters
        return {
            "kept": int(c[_lsh.KEPT]),
            "queries": int(c[_lsh.N_QUERIES]),
            "candidates": int(c[_lsh.N_CANDIDATES]),
            "bounded": int(c[_lsh.N_BOUNDED]),
            "lcs": int(c[_lsh.N_LCS]),
        }

    def _id(self, j: int) -> str:
        rid = self._ids[j]
        if rid is None:
            rid = self._ids[j] = row_id(self._texts.pop(j))
        return rid

    # --- capacity -------------------------------------------------------------------------
    def _reserve(self, rows: int, nbytes: int, row_bytes: int) -> _lsh.Index:
        """Grow the arrays so that `rows` more rows of `nbytes` bytes in all (the longest
        `row_bytes`) can be kept, and one more row's tokens fit the vocabulary."""
        ix, c = self._ix, self._ix.counters
        new: dict[str, Any] = {}
        kept, posts = int(c[_lsh.KEPT]) + rows, int(c[_lsh.N_POST]) + rows * self.num_bands
        for name in ("seen", "cand", "cand_key"):
            new[name] = _grown(getattr(ix, name), kept, 0)
        new["row_ptr"] = _grown(ix.row_ptr, kept + 1, 0)
        for name in ("tokens", "sorted_tokens"):
            new[name] = _grown(getattr(ix, name), int(ix.row_ptr[c[_lsh.KEPT]]) + nbytes // 2 + rows, 0)
        if posts >= 1 << 32:
            raise ValueError("the index holds at most 2^32 band postings (134 million rows at 32 bands)")
        new["post"] = _grown(ix.post, posts, 0)
        vocab, more = int(c[_lsh.N_VOCAB]), row_bytes // 2 + 1
        for name, entries in (("table", posts), ("keys", kept), ("vocab", vocab + more)):
            new[name] = _rehashed(getattr(ix, name), entries)
        new["tok_off"] = _grown(ix.tok_off, vocab + more + 1, 0)
        for name, fill in (("tok_hash", 0), ("stop", False), ("df", 0), ("occ", 0), ("slot", -1)):
            new[name] = _grown(getattr(ix, name), len(new["tok_off"]) - 1, fill)
        new["pool"] = _grown(ix.pool, int(ix.tok_off[vocab]) + row_bytes, 0)
        changed = {name: arr for name, arr in new.items() if arr is not getattr(ix, name)}
        if changed:
            self._ix = ix = ix._replace(**changed)
        return ix

    def _new_epoch(self) -> None:
        """Recompute the frequent tokens from the kept rows and re-sign the whole index."""
        ix = self._ix
        ix.counters[_lsh.NEXT_EPOCH] *= 16
        ix.stop[:] = ix.df > self.stop_df * len(self)
        _lsh.resign(ix)

    # --- the rule, over a batch -----------------------------------------------------------
    def _process(
        self, mode: int, texts: Sequence[str], ids: Sequence[str | None]
    ) -> list[tuple[int, Duplicate]]:
        out: list[tuple[int, Duplicate]] = []
        for c0 in range(0, len(texts), self._chunk):
            part = texts[c0 : c0 + self._chunk]
            buf, bptr, keys, kptr = _encode(part)
            kind = np.zeros(len(part), np.int8)
            row = np.zeros(len(part), np.int64)
            score = np.zeros(len(part), np.float64)
            done = 0
            while done < len(part):
                row_bytes = int(np.diff(bptr[done:]).max())
                ix = self._reserve(len(part) - done, int(bptr[-1] - bptr[done]), row_bytes)
                kept = len(self)
                n = _lsh.process(
                    ix, mode, buf, bptr[done:], keys, kptr[done:], self.threshold,
                    kind[done:], row[done:], score[done:],
                )  # fmt: skip
                if len(self) > kept:  # the rows kept, in order, get their ids
                    for i in np.flatnonzero(kind[done : done + n] == _lsh.UNIQUE).tolist():
                        rid = ids[c0 + done + i]
                        if rid is None:
                            self._texts[len(self._ids)] = part[done + i]
                        self._ids.append(rid)
                done += n
                if len(self) >= ix.counters[_lsh.NEXT_EPOCH]:
                    self._new_epoch()
            if mode != _lsh.ADD:
                for i in np.flatnonzero(kind).tolist():
                    kind_name: Literal["exact", "near"] = "exact" if kind[i] == _lsh.EXACT else "near"
                    out.append((c0 + i, Duplicate(kind_name, self._id(int(row[i])), float(score[i]))))
        return out

    def check(self, instruction: str) -> Duplicate | None:
        """The kept row this instruction duplicates, or None. Does not add it."""
        found = self._process(_lsh.CHECK, [instruction], [None])
        return found[0][1] if found else None

    def add(self, row_id: str, instruction: str) -> None:
        """Index a row as kept without checking it (seeding, rebuilding from kept rows)."""
        self._process(_lsh.ADD, [instruction], [row_id])

    def check_and_add(self, row_id: str, instruction: str) -> Duplicate | None:
        """Check; when unique, keep it. Returns the duplicate found, if any."""
        found = self._process(_lsh.CHECK_AND_ADD, [instruction], [row_id])
        return found[0][1] if found else None

    def add_many(self, rows: Iterable[tuple[str, str]]) -> None:
        """`add` for many (row_id, instruction) pairs."""
        pairs = list(rows)
        self._process(_lsh.ADD, [instr for _, instr in pairs], [rid for rid, _ in pairs])

    def find_duplicates(self, rows: Iterable[dict[str, Any] | str]) -> list[tuple[int, Duplicate]]:
        """`check_and_add` over rows in order (first occurrence kept, also against rows
        already indexed). Rows are dicts with `instruction` (and `id`, else
        `row_id(instruction)` is used) or plain strings. Returns (position, Duplicate) for
        every row not kept."""
        items = [(r, None) if isinstance(r, str) else (r["instruction"], r.get("id")) for r in rows]
        return self._process(_lsh.CHECK_AND_ADD, [t for t, _ in items], [i for _, i in items])


def near_duplicate_pairs(
    instructions: Sequence[str], threshold: float = 0.7, **lsh: Any
) -> list[tuple[int, int, float]]:
    """Every pair (i < j) with ROUGE-L >= threshold among the index's LSH candidates (all
    pairs, not the keep-first rule): for recall measurements against brute force.
    Quadratic inside a bucket, so meant for evaluation-sized inputs."""
    d = Deduplicator(threshold, **lsh)
    buf, bptr, _, _ = _encode(instructions)
    ix = d._reserve(len(instructions), len(buf), int(bptr[-1]))
    ptr = np.zeros(len(instructions) + 1, np.int64)
    flat = np.zeros(len(buf) // 2 + 1, np.int32)
    if _lsh.tokenise(ix, buf, bptr, ptr, flat) != len(instructions):  # room was made for all
        raise AssertionError("vocabulary full")
    keys = _lsh.band_keys(_lsh.sign_rows(ix, ptr, flat), ix.mix)
    toks = [flat[ptr[i] : ptr[i + 1]].tolist() for i in range(len(instructions))]
    buckets: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
    cands: set[tuple[int, int]] = set()
    for i in range(len(instructions)):
        if toks[i]:
            for band, key in enumerate(keys[i].tolist()):
                bucket = buckets[band, key]
                cands.update((j, i) for j in bucket)
                bucket.append(i)
    scored = ((i, j, rouge_l(toks[i], toks[j])) for i, j in sorted(cands))
    return [(i, j, score) for i, j, score in scored if score >= threshold]
