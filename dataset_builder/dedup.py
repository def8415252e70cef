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
measured near-duplicates sit higher (recall ~1.0 on the original rows). Unrelated rows
share mostly frequent words, so once the index is large (`epoch_rows`) tokens found in more
than `stop_df` of the kept rows are left out of the features; that set is recomputed, and
the index re-signed, when the index has grown 16-fold (deterministic: it only depends on
the rows kept, in order). Candidates then pass the share of equal MinHash values (when
there are more than a few), the exact multiset-overlap bound (Dice >= t, necessary), and
the exact ROUGE-L. Signatures are computed with numpy in bulk (`find_duplicates`,
`add_many`); the LCS is the bit-parallel algorithm (Crochemore et al. 2001) on Python ints.

Cost: about 100-250 us per checked row in CPython (tokens, signature, 32 band lookups,
insertion), plus candidates that grow slowly with the index on templated text (the
offline backend: ~14 per query at 100,000 kept rows, ~68 at 500,000): measured in
benchmarks/dedup.py, which does not reach 500,000 rows in 60 s (see its output).

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


_PUNCT = re.compile(r"[^\w\s]")


def _exact_key(instruction: str) -> str:
    # `normalise`, with a shortcut for ASCII text (NFKD and the ASCII round trip change
    # nothing there; str.split() splits on what `\s+` matches). `normalise` drops what is not
    # ASCII: an all-Chinese instruction would normalise to '' and equal every other one, so
    # such texts are compared as written
    if instruction.isascii():
        key = " ".join(_PUNCT.sub(" ", instruction.lower()).split())
    else:
        key = normalise(instruction)
    return key or "\x00" + instruction.strip()


def _row_id(instruction: str, key: str) -> str:
    # `row_id` without normalising twice (the key is the normalised text unless it fell back)
    return row_id(instruction) if key.startswith("\x00") else hashlib.sha256(key.encode()).hexdigest()[:16]


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

    Features: each instruction's token *multiset* (token, occurrence) pairs. ROUGE-L F >= t
    implies LCS >= t(m+n)/2 and LCS <= the multiset overlap, so every true pair has feature
    Jaccard >= t/(2-t) (0.538 at 0.7): the candidate stage has a floor that does not depend
    on the data. Once the index holds `epoch_rows` rows, tokens in more than `stop_df` of the
    kept rows (function words, a generator's template words) are left out of the features:
    unrelated rows share mostly those, so this slows the growth of candidates per query with
    the index (it still grows: ~14 at 100,000 offline rows, ~68 at 500,000). The frequent-token
    set is recomputed (and every kept row re-signed) each time the index grows 16-fold, so it
    only depends on the rows kept, in order: deterministic, and every signature in the index
    is made with the same set as the query's. The price: near-duplicates whose shared words
    are mostly frequent ones can be missed in a large index (below `epoch_rows`, never).

    Candidates: MinHash-LSH, `num_bands` bands of `band_rows` values; then the fraction of
    all MinHash values shared (>= `min_jaccard`, vectorised), then the exact multiset-overlap
    bound (Dice >= t, a necessary condition), then the exact ROUGE-L (bit-parallel LCS).
    """

    _chunk = 10_000  # rows signed per bulk step: bounded memory

    def __init__(
        self,
        threshold: float = 0.7,
        *,
        num_bands: int = 32,
        band_rows: int = 4,
        min_jaccard: float = 0.15,
        stop_df: float = 0.05,
        epoch_rows: int = 4096,
        seed: int = 0,
    ) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.num_bands, self.band_rows = num_bands, band_rows
        self.stop_df, self._next_epoch = stop_df, epoch_rows
        k = num_bands * band_rows
        self._min_agree = int(min_jaccard * k)
        rng = np.random.default_rng(seed)
        # 32-bit multiply-add hashing, one odd multiplier per MinHash "permutation": with
        # uint32 lanes numpy computes (k x features) blocks several times faster than uint64
        self._a = (rng.integers(0, 2**31, size=k, dtype=np.uint32) << np.uint32(1)) | np.uint32(1)
        self._b = rng.integers(0, 2**32, size=k, dtype=np.uint32)
        self._mix = rng.integers(0, 2**63, size=band_rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._vocab = _Vocab()
        self._tok_hash = np.zeros(0, dtype=np.uint64)  # vocab id → 64-bit blake2b of the token
        self._stop = np.zeros(0, dtype=bool)  # vocab id → left out of the features
        self._df: collections.Counter[int] = collections.Counter()  # vocab id → kept rows with it
        self._epoch = 0
        self._n_queries = self._n_candidates = 0  # LSH candidates looked at (benchmarks/dedup.py)
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

    def _hashes(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self._tok_hash) < len(self._vocab):
            new = list(self._vocab)[len(self._tok_hash) :]
            digests = b"".join(hashlib.blake2b(t.encode(), digest_size=8).digest() for t in new)
            self._tok_hash = np.concatenate(
                (self._tok_hash, np.frombuffer(digests, dtype="<u8").astype(np.uint64))
            )
        if len(self._stop) < len(self._vocab):  # tokens first seen since the last epoch: kept
            self._stop = np.concatenate((self._stop, np.zeros(len(self._vocab) - len(self._stop), bool)))
        return self._tok_hash, self._stop

    def _signatures(self, token_ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(rows that have tokens, their MinHash values [rows x k]) for instructions given
        as token ids; features are (token, occurrence) pairs of the non-frequent tokens (all
        tokens when every one is frequent)."""
        th, stop = self._hashes()
        lengths = np.fromiter(map(len, token_ids), dtype=np.int64, count=len(token_ids))
        present = np.flatnonzero(lengths)
        sig = np.zeros((len(present), len(self._a)), dtype=np.uint32)
        if not len(present):
            return present, sig
        tok = np.fromiter(itertools.chain.from_iterable(token_ids), dtype=np.int64, count=int(lengths.sum()))
        lens = lengths[present]
        row = np.repeat(np.arange(len(present)), lens)
        # occurrence number of each token within its row: rank inside equal (row, token) runs
        order = np.lexsort((tok, row))
        st, sr = tok[order], row[order]
        new_run = np.ones(len(st), dtype=bool)
        new_run[1:] = (st[1:] != st[:-1]) | (sr[1:] != sr[:-1])
        run_start = np.maximum.accumulate(np.where(new_run, np.arange(len(st)), 0))
        occ = np.arange(len(st)) - run_start
        keep = ~stop[st]
        n_keep = np.bincount(sr, weights=keep, minlength=len(present))
        keep |= (n_keep == 0)[sr]  # only frequent tokens: use them all rather than nothing
        st, sr, occ = st[keep], sr[keep], occ[keep]
        with np.errstate(over="ignore"):
            feats64 = (th[st] + occ.astype(np.uint64) * np.uint64(_K_SINGLE)) * np.uint64(_K_BIGRAM)
            feats = (feats64 >> np.uint64(32)).astype(np.uint32)
            counts = np.bincount(sr, minlength=len(present))
            seg = np.cumsum(counts) - counts  # each instruction's first feature (sr is sorted)
            block = max(1, 2_000_000 // len(self._a))  # features per numpy block: bounded memory
            lo = 0
            while lo < len(present):
                hi = max(lo + 1, int(np.searchsorted(seg, seg[lo] + block, side="left")))
                f0, f1 = int(seg[lo]), int(seg[hi]) if hi < len(present) else len(feats)
                h = feats[f0:f1, None] * self._a + self._b  # (features x k): rows reduce in place
                sig[lo:hi] = np.minimum.reduceat(h, seg[lo:hi] - f0, axis=0)
                lo = hi
        return present, sig

    def _band_keys(self, sig: np.ndarray) -> list[list[int]]:
        with np.errstate(over="ignore"):
            bands = sig.reshape(len(sig), self.num_bands, self.band_rows).astype(np.uint64)
            return (bands * self._mix).sum(axis=2, dtype=np.uint64).tolist()

    def _prepare(self, token_ids: Sequence[tuple[int, ...]]) -> list[tuple[np.ndarray, list[int]] | None]:
        present, sig = self._signatures(token_ids)
        return _assemble(len(token_ids), present, sig, self._band_keys(sig))

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
        for hit in map(dict.get, self._tables, keys):
            if hit is not None:
                if type(hit) is int:
                    cands.add(hit)
                else:
                    cands.update(hit)
        self._n_queries += 1
        self._n_candidates += len(cands)
        if not cands:
            return None
        if len(cands) <= 4:  # a few: the exact bounds below cost less than the numpy calls
            ranked = [(0, j) for j in sorted(cands)]
        else:  # most similar first (an early exit), then oldest: deterministic
            idx = np.fromiter(cands, dtype=np.int64, count=len(cands))
            agree = np.count_nonzero(self._sigs[idx] == sig, axis=1)
            ok = agree >= self._min_agree
            if not ok.any():
                return None
            ranked = sorted(zip((-agree[ok]).tolist(), idx[ok].tolist(), strict=True))
        m, t = len(toks), self.threshold
        counts = collections.Counter(toks)
        masks: dict[int, int] = {}
        for i, tok in enumerate(toks):
            masks[tok] = masks.get(tok, 0) | (1 << i)
        for _, j in ranked:
            other = self._tokens[j]
            n = len(other)
            if 2 * min(m, n) / (m + n) < t:  # LCS <= the shorter length bounds F from above
                continue
            # LCS <= multiset overlap: an exact bound, a dict walk instead of the LCS
            rest, overlap = dict(counts), 0
            for tok in other:
                if rest.get(tok, 0) > 0:
                    rest[tok] -= 1
                    overlap += 1
            if 2 * overlap / (m + n) < t:
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
        self._df.update(set(toks))
        self._index(j, keys)
        if len(self._ids) >= self._next_epoch:
            self._new_epoch()

    def _index(self, j: int, keys: list[int]) -> None:
        for table, key in zip(self._tables, keys, strict=True):
            hit = table.setdefault(key, j)
            if hit is not j:  # the key was there: a bucket of two or more rows
                if type(hit) is int:
                    table[key] = [hit, j]
                else:
                    hit.append(j)

    def _new_epoch(self) -> None:
        """Recompute the frequent tokens from the kept rows and re-sign the whole index."""
        self._next_epoch *= 16
        self._epoch += 1
        cap = self.stop_df * len(self._ids)
        _, stop = self._hashes()
        stop[:] = False
        stop[[t for t, c in self._df.items() if c > cap]] = True
        self._tables = [{} for _ in range(self.num_bands)]
        chunk = 50_000
        for c0 in range(0, len(self._tokens), chunk):
            _, sig = self._signatures(self._tokens[c0 : c0 + chunk])
            self._sigs[c0 : c0 + len(sig)] = sig
            for j, keys in enumerate(self._band_keys(sig), c0):
                self._index(j, keys)

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

    def _bulk(self, items: list[tuple[str, str | None]], check: bool) -> list[tuple[int, Duplicate]]:
        """check_and_add (or add) over (instruction, id) in order, signatures in bulk; a new
        epoch changes the features, so what was prepared before it is prepared again."""
        out: list[tuple[int, Duplicate]] = []
        chunk = self._chunk
        for c0 in range(0, len(items), chunk):
            part = items[c0 : c0 + chunk]
            toks = [self._ids_of(instr) for instr, _ in part]
            keys = [_exact_key(instr) for instr, _ in part]
            self._run(part, c0, toks, keys, self._epoch, self._prepare(toks), check, out)
        return out

    def _run(
        self,
        part: list[tuple[str, str | None]],
        c0: int,
        toks: list[tuple[int, ...]],
        keys: list[str],
        epoch: int,
        preps: list[tuple[np.ndarray, list[int]] | None],
        check: bool,
        out: list[tuple[int, Duplicate]],
    ) -> None:
        k = 0
        while k < len(part):
            if epoch != self._epoch:  # prepared with other features: prepare the rest again
                epoch, preps = self._epoch, [None] * k + self._prepare(toks[k:])
            for i in range(k, len(part)):
                instr, rid = part[i]
                norm, prep = keys[i], preps[i]
                dup = self._query(norm, toks[i], prep) if check else None
                if dup is None:
                    self._insert(rid or _row_id(instr, norm), norm, toks[i], prep)
                else:
                    out.append((c0 + i, dup))
                k = i + 1
                if self._epoch != epoch:
                    break

    def add_many(self, rows: Iterable[tuple[str, str]]) -> None:
        """`add` for many (row_id, instruction) pairs, signatures computed in bulk."""
        self._bulk([(instr, rid) for rid, instr in rows], check=False)

    def find_duplicates(self, rows: Iterable[dict[str, Any] | str]) -> list[tuple[int, Duplicate]]:
        """`check_and_add` over rows in order (first occurrence kept, also against rows
        already indexed), signatures computed in bulk. Rows are dicts with `instruction`
        (and `id`, else `row_id(instruction)` is used) or plain strings. Returns
        (position, Duplicate) for every row not kept."""
        items = [(r, None) if isinstance(r, str) else (r["instruction"], r.get("id")) for r in rows]
        return self._bulk(items, check=True)


def _assemble(
    n: int, present: np.ndarray, sig: np.ndarray, band_keys: list[list[int]]
) -> list[tuple[np.ndarray, list[int]] | None]:
    out: list[tuple[np.ndarray, list[int]] | None] = [None] * n
    for i, s, keys in zip(present.tolist(), sig, band_keys, strict=True):
        out[i] = (s, keys)
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
