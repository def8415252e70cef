"""The compiled inner loops of the near-duplicate index (numba; `dedup.py` is the API).

A checked row costs a few microseconds here instead of a few hundred in CPython: its
tokens, exact-text key, MinHash signature, band look-ups, the filters on every candidate
and the exact ROUGE-L are loops over bytes and small integer arrays, which is what numba
compiles well. The rule stays the sequential one (each row against the rows kept before
it), so the batch and the streaming paths run this same code and give the same answers.

Text arrives as the UTF-8 bytes of `str.lower()`. rouge_score's tokens are the maximal
runs of [a-z0-9] in the lower-cased text, and no byte of a multi-byte UTF-8 character is
ASCII, so scanning bytes finds exactly its tokens. The exact-duplicate key of an ASCII row
is `schema.normalise`'s output (the runs of [a-z0-9_] joined by one space), hashed as it is
scanned; for other rows Python passes `normalise`'s output (or the stripped text, when it
is empty), hashed the same way. Keys are compared by two independent 64-bit hashes (a
false match needs both to collide: ~2^-128 a pair); tokens by hash, then by their bytes.

All state lives in numpy arrays held by `Index` (a NamedTuple, so one argument carries
it); `dedup.Deduplicator` grows them between calls, and `process` stops early (returning
how far it got) when the vocabulary is full or the index reaches a new epoch. Integer
arithmetic is unsigned 64-bit and wraps, as in C: constants are typed, because numba
turns uint64 mixed with int64 into float64.

The functions are compiled on first use and cached on disk (`cache=True`: `__pycache__`
next to this file, else NUMBA_CACHE_DIR or a user cache), so only the first run pays.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from taskdecomp import rouge

U64 = np.uint64
_ONES = U64(0xFFFFFFFFFFFFFFFF)
_FNV_BASIS = U64(0xCBF29CE484222325)
_FNV_PRIME = U64(0x100000001B3)
_K_POLY = U64(0x9E3779B97F4A7C15)  # odd: the second key hash's multiplier
_K_OCC = U64(0xC2B2AE3D27D4EB4F)  # turns (token hash, occurrence) into one feature
_K_BAND = U64(0xD6E8FEB86659FD93)  # salts a band key with its band number

# counters[...]: one int64 array, updated in place by the compiled code
(KEPT, NEXT_EPOCH, N_POST, N_VOCAB, STAMP,
 N_QUERIES, N_CANDIDATES, N_BOUNDED, N_LCS) = range(9)  # fmt: skip
N_COUNTERS = 9

# what `process` does with each row
CHECK_AND_ADD, CHECK, ADD = 0, 1, 2
# outcome per row
UNIQUE, EXACT, NEAR = 0, 1, 2


class Index(NamedTuple):
    # hashing: MinHash multipliers and offsets (k = bands x band_rows), band mixing
    a: np.ndarray  # uint32[k], odd
    b: np.ndarray  # uint32[k]
    mix: np.ndarray  # uint64[band_rows], odd
    # The three tables are open-addressing (linear probing), uint64[power of two, width], with
    # a non-zero key in column 0 (0 = empty slot): one layout, one `_find`, one `rehash`.
    # vocabulary: [token hash, id]; ids index the arrays below
    vocab: np.ndarray  # uint64[., 2]
    tok_off: np.ndarray  # int64[capacity + 1]: token id's bytes are pool[tok_off[i]:tok_off[i+1]]
    pool: np.ndarray  # uint8
    tok_hash: np.ndarray  # uint64 per token id
    stop: np.ndarray  # bool per token id: left out of the features (frequent)
    df: np.ndarray  # int64 per token id: kept rows containing it
    occ: np.ndarray  # int32 scratch per token id, all zero between rows
    slot: np.ndarray  # int32 scratch per token id, all -1 between rows
    # kept rows
    row_ptr: np.ndarray  # int64[capacity + 1]: row j's tokens are tokens[row_ptr[j]:row_ptr[j+1]]
    tokens: np.ndarray  # int32: token ids in text order
    sorted_tokens: np.ndarray  # int32: the same, sorted within each row (multiset overlap)
    seen: np.ndarray  # int64 per kept row: the query that last collected it
    cand: np.ndarray  # int64 scratch: one query's candidates
    cand_key: np.ndarray  # int64 scratch: their ranking keys
    # exact duplicates: [key hash 1, key hash 2, kept row]
    keys: np.ndarray  # uint64[., 3]
    # LSH, all bands: [band key, 1 + first posting]; a posting packs its row and the next
    # posting of the same key into one word
    table: np.ndarray  # uint64[., 2]
    post: np.ndarray  # uint64: row << 32 | (1 + next posting), 0 ends a list
    counters: np.ndarray  # int64[N_COUNTERS]


# --- small pieces ---------------------------------------------------------------------
@njit(cache=True, inline="always")
def _splitmix(x: np.uint64) -> np.uint64:
    x = (x ^ (x >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> U64(27))) * U64(0x94D049BB133111EB)
    return x ^ (x >> U64(31))


@njit(cache=True, inline="always")
def _popcount(x: np.uint64) -> np.uint64:
    x = x - ((x >> U64(1)) & U64(0x5555555555555555))
    x = (x & U64(0x3333333333333333)) + ((x >> U64(2)) & U64(0x3333333333333333))
    x = (x + (x >> U64(4))) & U64(0x0F0F0F0F0F0F0F0F)
    return (x * U64(0x0101010101010101)) >> U64(56)


@njit(cache=True, inline="always")
def _is_token_byte(c: np.uint8) -> np.bool_:
    return (48 <= c <= 57) or (97 <= c <= 122)  # [0-9a-z]


@njit(cache=True, inline="always")
def _is_key_byte(c: np.uint8) -> np.bool_:
    return _is_token_byte(c) or c == 95  # \w on lower-cased ASCII: [0-9a-z_]


@njit(cache=True, inline="always")
def _is_space(c: np.uint8) -> np.bool_:
    return c == 32 or 9 <= c <= 13 or 28 <= c <= 31  # what str.strip() strips in ASCII


@njit(cache=True, inline="always")
def _feed(h1: np.uint64, h2: np.uint64, c: np.uint8) -> tuple[np.uint64, np.uint64]:
    # two unrelated streaming hashes: FNV-1a and a polynomial hash mod 2^64
    return (h1 ^ U64(c)) * _FNV_PRIME, h2 * _K_POLY + U64(c) + U64(1)


@njit(cache=True, inline="always")
def hash_bytes(buf: np.ndarray) -> tuple[np.uint64, np.uint64]:
    """The key hashes of a byte string (the hashes `_key_of_ascii` computes as it scans)."""
    h1, h2 = _FNV_BASIS, U64(0)
    for c in buf:
        h1, h2 = _feed(h1, h2, c)
    return _splitmix(h1) | U64(1), _splitmix(h2)


@njit(cache=True, inline="always")
def _key_of_ascii(buf: np.ndarray) -> tuple[np.uint64, np.uint64]:
    """Key hashes of `normalise(text)` for lower-cased ASCII text, without building it: its
    words (runs of [a-z0-9_]) with one space between; when it has none, the text
    stripped, after a NUL (`dedup._exact_key`'s fallback)."""
    h1, h2 = _FNV_BASIS, U64(0)
    words = 0
    i, n = 0, buf.shape[0]
    while i < n:
        if not _is_key_byte(buf[i]):
            i += 1
            continue
        if words:
            h1, h2 = _feed(h1, h2, np.uint8(32))
        while i < n and _is_key_byte(buf[i]):
            h1, h2 = _feed(h1, h2, buf[i])
            i += 1
        words += 1
    if words == 0:
        lo, hi = 0, n
        while lo < hi and _is_space(buf[lo]):
            lo += 1
        while hi > lo and _is_space(buf[hi - 1]):
            hi -= 1
        h1, h2 = _feed(h1, h2, np.uint8(0))
        for c in buf[lo:hi]:
            h1, h2 = _feed(h1, h2, c)
    return _splitmix(h1) | U64(1), _splitmix(h2)


# --- vocabulary and tokens -------------------------------------------------------------
@njit(cache=True, inline="always")
def vocab_room(ix: Index, nbytes: int) -> bool:
    """Whether a text of `nbytes` bytes can add all its tokens to the vocabulary."""
    new = nbytes // 2 + 1  # at most this many tokens
    c = ix.counters
    return (
        2 * (c[N_VOCAB] + new) <= ix.vocab.shape[0]
        and c[N_VOCAB] + new < ix.tok_off.shape[0]
        and ix.tok_off[c[N_VOCAB]] + nbytes <= ix.pool.shape[0]
    )


@njit(cache=True, inline="always")
def _token_id(ix: Index, buf: np.ndarray, lo: int, hi: int) -> np.int64:
    h1 = _FNV_BASIS
    for q in range(lo, hi):
        h1 = (h1 ^ U64(buf[q])) * _FNV_PRIME
    h = _splitmix(h1) | U64(1)
    mask = U64(ix.vocab.shape[0] - 1)
    s = h & mask
    while ix.vocab[s, 0] != U64(0):
        if ix.vocab[s, 0] == h:  # the same token unless the bytes differ
            t = np.int64(ix.vocab[s, 1])
            p0 = ix.tok_off[t]
            if ix.tok_off[t + 1] - p0 == hi - lo:
                q = 0
                while q < hi - lo and ix.pool[p0 + q] == buf[lo + q]:
                    q += 1
                if q == hi - lo:
                    return t
        s = (s + U64(1)) & mask
    t = ix.counters[N_VOCAB]
    ix.counters[N_VOCAB] = t + 1
    ix.vocab[s, 0] = h
    ix.vocab[s, 1] = U64(t)
    p0 = ix.tok_off[t]
    for q in range(hi - lo):
        ix.pool[p0 + q] = buf[lo + q]
    ix.tok_off[t + 1] = p0 + hi - lo
    ix.tok_hash[t] = _splitmix(h ^ _K_POLY)
    return t


@njit(cache=True, inline="always")
def _tokenise(ix: Index, buf: np.ndarray, out: np.ndarray) -> int:
    """Token ids of lower-cased text into `out`; returns how many."""
    n, i, m = buf.shape[0], 0, 0
    while i < n:
        if not _is_token_byte(buf[i]):
            i += 1
            continue
        lo = i
        while i < n and _is_token_byte(buf[i]):
            i += 1
        out[m] = _token_id(ix, buf, lo, i)
        m += 1
    return m


@njit(cache=True)
def tokenise(ix: Index, buf: np.ndarray, bptr: np.ndarray, ptr: np.ndarray, toks: np.ndarray) -> int:
    """Tokenise texts bptr[i]:bptr[i+1] of `buf` into ptr/toks (sized by the caller) until
    the vocabulary is full; returns how many texts were done."""
    for i in range(bptr.shape[0] - 1):
        lo, hi = bptr[i], bptr[i + 1]
        if not vocab_room(ix, hi - lo):
            return i
        ptr[i + 1] = ptr[i] + _tokenise(ix, buf[lo:hi], toks[ptr[i] :])
    return bptr.shape[0] - 1


# --- MinHash and the LSH tables ---------------------------------------------------------
@njit(cache=True, inline="always")
def signature(ix: Index, toks: np.ndarray, out: np.ndarray) -> None:
    """MinHash of the row's (token, occurrence) features, frequent tokens left out (all
    tokens when every one is frequent): a 32-bit feature hash x, then min over the
    features of a*x + b (mod 2^32), one odd `a` per hash function. The loop over
    features is innermost so it vectorises (8 lanes of 32 bits)."""
    use_all = True
    for t in toks:
        if not ix.stop[t]:
            use_all = False
            break
    xs = np.empty(toks.shape[0], dtype=np.uint32)
    nf = 0
    for t in toks:
        c = ix.occ[t]
        ix.occ[t] = c + 1
        if use_all or not ix.stop[t]:
            xs[nf] = np.uint32(((ix.tok_hash[t] + U64(c) * _K_OCC) * _K_POLY) >> U64(32))
            nf += 1
    for t in toks:
        ix.occ[t] = 0
    for h in range(ix.a.shape[0]):
        a, b = ix.a[h], ix.b[h]
        m = np.uint32(0xFFFFFFFF)
        for f in range(nf):
            m = min(m, np.uint32(xs[f] * a + b))
        out[h] = m


@njit(cache=True)
def sign_rows(ix: Index, ptr: np.ndarray, toks: np.ndarray) -> np.ndarray:
    """uint32[rows, k]: signatures of rows ptr[i]:ptr[i+1] of `toks` (nothing kept)."""
    out = np.empty((ptr.shape[0] - 1, ix.a.shape[0]), dtype=np.uint32)
    for i in range(ptr.shape[0] - 1):
        signature(ix, toks[ptr[i] : ptr[i + 1]], out[i])
    return out


@njit(cache=True, inline="always")
def _band_key(sig: np.ndarray, band: int, mix: np.ndarray) -> np.uint64:
    r = mix.shape[0]
    key = U64(band + 1) * _K_BAND
    for i in range(r):
        key += U64(sig[band * r + i]) * mix[i]
    return _splitmix(key) | U64(1)


@njit(cache=True)
def band_keys(sigs: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """uint64[rows, bands]: each band's key (for `near_duplicate_pairs`)."""
    nb = sigs.shape[1] // mix.shape[0]
    out = np.empty((sigs.shape[0], nb), dtype=np.uint64)
    for i in range(sigs.shape[0]):
        for band in range(nb):
            out[i, band] = _band_key(sigs[i], band, mix)
    return out


@njit(cache=True, inline="always")
def _find(table: np.ndarray, key: np.uint64) -> np.int64:
    """The slot holding `key` in column 0, or the empty slot where it would go."""
    mask = U64(table.shape[0] - 1)
    s = key & mask
    while table[s, 0] != key and table[s, 0] != U64(0):
        s = (s + U64(1)) & mask
    return np.int64(s)


@njit(cache=True)
def rehash(old: np.ndarray, new: np.ndarray) -> None:
    """Move every entry of a table into a larger, empty one (entries are distinct, so each
    goes to the first empty slot of its probe sequence)."""
    mask = U64(new.shape[0] - 1)
    for s in range(old.shape[0]):
        key = old[s, 0]
        if key != U64(0):
            t = key & mask
            while new[t, 0] != U64(0):
                t = (t + U64(1)) & mask
            new[t] = old[s]


@njit(cache=True, inline="always")
def _index_row(ix: Index, j: int, sig: np.ndarray) -> None:
    """Put kept row j into every band's list."""
    nb = ix.a.shape[0] // ix.mix.shape[0]
    for band in range(nb):
        key = _band_key(sig, band, ix.mix)
        s = _find(ix.table, key)
        ix.table[s, 0] = key
        p = ix.counters[N_POST]
        ix.post[p] = (U64(j) << U64(32)) | ix.table[s, 1]
        ix.table[s, 1] = U64(p + 1)
        ix.counters[N_POST] = p + 1


@njit(cache=True)
def resign(ix: Index) -> None:
    """A new epoch: sign every kept row again with the current frequent-token set and
    rebuild the band tables."""
    ix.table[:] = 0
    ix.counters[N_POST] = 0
    sig = np.empty(ix.a.shape[0], dtype=np.uint32)
    for j in range(ix.counters[KEPT]):
        lo, hi = ix.row_ptr[j], ix.row_ptr[j + 1]
        if hi > lo:
            signature(ix, ix.tokens[lo:hi], sig)
            _index_row(ix, j, sig)


# --- the exact filters and ROUGE-L -----------------------------------------------------
@njit(cache=True, inline="always")
def _overlap(counts: np.ndarray, b: np.ndarray, lo: int, hi: int, mn: int, threshold: float) -> int:
    """Multiset overlap of the query (its token counts in `counts`) and the sorted tokens
    b[lo:hi]: the sum over b's distinct tokens of min(count in b, count in the query).
    Stops early (returning a smaller number) once even every remaining token matching
    could not reach 2 * overlap / mn >= threshold."""
    ov, q = 0, lo
    while q < hi:
        t = b[q]
        r = q + 1
        while r < hi and b[r] == t:
            r += 1
        ov += min(r - q, counts[t])
        q = r
        if 2 * (ov + hi - q) / mn < threshold:
            return ov
    return ov


@njit(cache=True, inline="always")
def _lcs(masks: np.ndarray, slot: np.ndarray, m: int, other: np.ndarray, lo: int, hi: int) -> int:
    """LCS length of the query (m tokens) and other[lo:hi], bit-parallel (Crochemore et al.
    2001) over ceil(m/64) words: `masks[slot[t]]` holds the positions of token t in the
    query. With
    U = V & M, V - U is V xor U (U is a subset of V), so only the addition carries."""
    nw = masks.shape[1]
    v = np.full(nw, _ONES)
    rem = m - 64 * (nw - 1)
    last = _ONES if rem == 64 else (U64(1) << U64(rem)) - U64(1)
    v[nw - 1] = last
    for q in range(lo, hi):
        s = slot[other[q]]
        if s < 0:
            continue  # U = 0 leaves V as it is
        carry = U64(0)
        for w in range(nw):
            vw = v[w]
            u = vw & masks[s, w]
            total = vw + u
            c1 = total < vw
            total2 = total + carry
            c2 = total2 < total
            carry = U64(1) if (c1 or c2) else U64(0)
            v[w] = total2 | (vw ^ u)
        v[nw - 1] &= last
    ones = 0
    for w in range(nw):
        # int64 first (uint64 + int64 would promote to float64 in numba); int() is the same
        # int64 to numba and tells mypy the sum stays an int
        ones += int(np.int64(_popcount(v[w])))
    return m - ones


# rouge_score's F-measure expression (`rouge.fmeasure`), compiled
fmeasure = njit(cache=True, inline="always")(rouge.fmeasure)


@njit(cache=True, inline="always")
def _near(ix: Index, toks: np.ndarray, sig: np.ndarray, threshold: float) -> tuple[int, float]:
    """(kept row, ROUGE-L) of the best near-duplicate of a row, or (-1, 0.0).

    Candidates share a band key; those whose length and multiset overlap allow F >=
    threshold (LCS <= both; Dice >= threshold is necessary) are ranked by that overlap
    (Dice), then age, and the first whose exact ROUGE-L passes is the answer."""
    nb = ix.a.shape[0] // ix.mix.shape[0]
    stamp = ix.counters[STAMP] + 1
    ix.counters[STAMP] = stamp
    nc = 0
    for band in range(nb):
        key = _band_key(sig, band, ix.mix)
        s = _find(ix.table, key)
        p1 = ix.table[s, 1]  # 0 when the slot is empty
        while p1 != U64(0):
            posting = ix.post[p1 - U64(1)]
            j = np.int64(posting >> U64(32))
            if ix.seen[j] != stamp:
                ix.seen[j] = stamp
                ix.cand[nc] = j
                nc += 1
            p1 = posting & U64(0xFFFFFFFF)
    ix.counters[N_QUERIES] += 1
    ix.counters[N_CANDIDATES] += nc
    if nc == 0:
        return -1, 0.0
    m = toks.shape[0]
    for t in toks:  # the query's token counts, for the overlap bound
        ix.occ[t] += 1
    n_ok = 0
    for c in range(nc):
        j = ix.cand[c]
        lo, hi = ix.row_ptr[j], ix.row_ptr[j + 1]
        n = hi - lo
        if 2 * min(m, n) / (m + n) < threshold:
            continue
        dice = 2 * _overlap(ix.occ, ix.sorted_tokens, lo, hi, m + n, threshold) / (m + n)
        if dice < threshold:
            continue
        # highest Dice first (it bounds F from above), then the oldest row
        ix.cand_key[n_ok] = (np.int64((1.0 - dice) * (1 << 20)) << 40) | j
        n_ok += 1
    for t in toks:
        ix.occ[t] = 0
    ix.counters[N_BOUNDED] += n_ok
    if n_ok == 0:
        return -1, 0.0
    ranked = np.sort(ix.cand_key[:n_ok])
    # the query's bit masks: one row of ceil(m/64) words per distinct token
    masks = np.zeros((m, (m + 63) // 64), dtype=np.uint64)
    nd = 0
    for i in range(m):
        t = toks[i]
        if ix.slot[t] < 0:
            ix.slot[t] = nd
            nd += 1
        masks[ix.slot[t], i // 64] |= U64(1) << U64(i % 64)
    best, score = -1, 0.0
    for c in range(n_ok):
        j = ranked[c] & ((1 << 40) - 1)
        lo, hi = ix.row_ptr[j], ix.row_ptr[j + 1]
        ix.counters[N_LCS] += 1
        f = fmeasure(_lcs(masks, ix.slot, m, ix.tokens, lo, hi), m, hi - lo)
        if f >= threshold:
            best, score = j, f
            break
    for t in toks:
        ix.slot[t] = -1
    return best, score


# --- the rule --------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _find_key(keys: np.ndarray, h1: np.uint64, h2: np.uint64) -> np.int64:
    """The slot of the exact key (h1, h2), or the empty slot where it would go."""
    mask = U64(keys.shape[0] - 1)
    s = h1 & mask
    while keys[s, 0] != U64(0) and not (keys[s, 0] == h1 and keys[s, 1] == h2):
        s = (s + U64(1)) & mask
    return np.int64(s)


@njit(cache=True, inline="always")
def _keep(
    ix: Index, toks: np.ndarray, sig: np.ndarray, key_slot: np.int64, h1: np.uint64, h2: np.uint64
) -> None:
    j = ix.counters[KEPT]
    ix.counters[KEPT] = j + 1
    ix.keys[key_slot, 0] = h1
    ix.keys[key_slot, 1] = h2
    ix.keys[key_slot, 2] = U64(j)
    lo = ix.row_ptr[j]
    hi = lo + toks.shape[0]
    ix.row_ptr[j + 1] = hi
    ix.tokens[lo:hi] = toks
    ix.sorted_tokens[lo:hi] = np.sort(toks)
    for t in toks:  # document frequency: once per row
        if ix.occ[t] == 0:
            ix.occ[t] = 1
            ix.df[t] += 1
    for t in toks:
        ix.occ[t] = 0
    if toks.shape[0]:
        _index_row(ix, j, sig)


@njit(cache=True)
def process(
    ix: Index,
    mode: int,
    buf: np.ndarray,
    bptr: np.ndarray,
    keys: np.ndarray,
    kptr: np.ndarray,
    threshold: float,
    out_kind: np.ndarray,
    out_row: np.ndarray,
    out_score: np.ndarray,
) -> int:
    """Rows bptr[i]:bptr[i+1] of `buf` (lower-cased UTF-8), in order: check each against
    the kept rows and/or keep it. A row with kptr[i+1] > kptr[i] takes its exact key from
    keys[kptr[i]:kptr[i+1]] (`normalise` done by Python, for non-ASCII text); the others
    are ASCII and keyed here. The caller has made room for every row in the kept-row
    arrays; the vocabulary may fill up. Returns how many rows were done: fewer than
    given when the vocabulary is full or the index has reached its next epoch."""
    k = ix.a.shape[0]
    sig = np.empty(k, dtype=np.uint32)
    toks = np.empty((bptr[-1] - bptr[0]) // 2 + 1, dtype=np.int32)
    for i in range(bptr.shape[0] - 1):
        text = buf[bptr[i] : bptr[i + 1]]
        if not vocab_room(ix, text.shape[0]):
            return i
        row_toks = toks[: _tokenise(ix, text, toks)]
        if kptr[i + 1] > kptr[i]:
            h1, h2 = hash_bytes(keys[kptr[i] : kptr[i + 1]])
        else:
            h1, h2 = _key_of_ascii(text)
        key_slot = _find_key(ix.keys, h1, h2)
        if row_toks.shape[0]:
            signature(ix, row_toks, sig)
        out_kind[i] = UNIQUE
        if ix.keys[key_slot, 0] != U64(0):  # the same text was kept
            out_kind[i] = EXACT
            out_row[i] = np.int64(ix.keys[key_slot, 2])
            out_score[i] = 1.0
        elif mode != ADD and row_toks.shape[0]:
            j, f = _near(ix, row_toks, sig, threshold)
            if j >= 0:
                out_kind[i] = NEAR
                out_row[i] = j
                out_score[i] = f
        if mode != CHECK and out_kind[i] == UNIQUE:
            _keep(ix, row_toks, sig, key_slot, h1, h2)
            if ix.counters[KEPT] >= ix.counters[NEXT_EPOCH]:
                return i + 1
    return bptr.shape[0] - 1
