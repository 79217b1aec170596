"""Exact and near-duplicate detection: MinHash signatures, LSH banding, exact Jaccard to confirm.

What two inputs are compared on: the set of their words and adjacent word pairs, after casefolding
and dropping punctuation (``tokens``). Words alone would pair texts that share a vocabulary; pairs
alone (or the word 3-grams used before) lose too much to a single edit in a short text: one inserted
word costs an n-word text 1 word and 1 pair of about 2n, so the Jaccard is about (n-1)/(n+1), 0.82
at 10 words, where word 3-grams gave (n-4)/(n+1), 0.55. A replaced word costs more: (n-2)/(n+1) in
the middle of the text, (2n-3)/(2n+1) at either end. So at the default 0.8, texts built on one
template that differ in one word ("refund policy for X" / "for Y") stay apart up to 13 words (9 when
the word is first or last) and are near-duplicates beyond: no set of words can tell one word
replaced in 15 from one added in 10. A higher threshold keeps more of them apart (0.85: up to 18
words, 12 at an end) and catches an inserted word from 13 words instead of 9.

The MinHash is computed for all rows at once with numpy (one pass over every shingle hash per
permutation), which is what keeps a 100,000-row audit within seconds. LSH only proposes candidate
pairs; each pair's reported similarity is the exact Jaccard of the two shingle sets, so the numbers
in audit.json do not depend on the hashing's luck.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations, pairwise
from zlib import crc32

import numpy as np

from tunewise.data.boilerplate import varying_texts
from tunewise.tokens import words

_MAX = np.uint64((1 << 32) - 1)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(32)
_WORD_HASH: dict[str, int] = {}
_EMPTY = np.zeros(0, dtype=np.uint64)
MEASURE = "Jaccard of word and word-pair sets (casefolded, punctuation dropped)"


def normalise(text: str | None) -> str:
    """Case- and space-insensitive form used to compare inputs."""
    return " ".join((text or "").lower().split())


def tokens(text: str | None) -> list[str]:
    """The words two inputs are compared on (``tunewise.tokens.words``, every script): recasing,
    punctuation and spacing do not change them."""
    return words(text)


def shingle_rows(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every text's words and adjacent word pairs, concatenated, and how many each has.

    Words are hashed once each (cached) and pairs combined with numpy, instead of building pair
    strings: this is the audit's hottest loop. An n-word text has n + (n - 1) shingles; an empty one 0.
    """
    words: list[str] = []
    counts: list[int] = []
    for text in texts:
        row = tokens(text)
        words += row
        counts.append(len(row))
    n_words = np.array(counts, dtype=np.int64)
    if not words:
        return _EMPTY, np.zeros(len(texts), dtype=np.int64)
    cache = _WORD_HASH
    for w in set(words).difference(cache):
        cache[w] = crc32(w.encode()) + 1
    h = np.fromiter(map(cache.__getitem__, words), dtype=np.uint64, count=len(words))
    pair = np.empty_like(h)
    pair[:-1] = h[:-1] * _MIX + h[1:]  # 64-bit: meets a (32-bit) word hash by a 2**-32 chance at most
    # Interleave each word with the pair it starts; the pair started by a text's last word would
    # cross into the next text, so it is left out.
    flat = np.stack([h, pair], axis=1).ravel()
    keep = np.ones(len(flat), dtype=bool)
    last = np.cumsum(n_words)[n_words > 0] - 1
    keep[2 * last + 1] = False
    return flat[keep], np.maximum(2 * n_words - 1, 0)


def minhash(flat: np.ndarray, lengths: np.ndarray, num_perm: int = 64, seed: int = 1) -> np.ndarray:
    """(rows, num_perm) uint32 MinHash signatures; a row without shingles gets the maximum value."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 1 << 63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd
    b = rng.integers(0, 1 << 63, num_perm, dtype=np.uint64)
    sig = np.full((len(lengths), num_perm), _MAX, dtype=np.uint64)
    nonempty = np.flatnonzero(lengths)
    if not len(nonempty):
        return sig.astype(np.uint32)
    starts = (np.cumsum(lengths) - lengths)[nonempty]
    # Multiply-shift hashing (the high 32 bits of a wrapped 64-bit product): a universal family
    # that needs no modulo, so each permutation is two vector operations over every shingle.
    for j in range(num_perm):
        h = (flat * a[j] + b[j]) >> _SHIFT
        sig[nonempty, j] = np.minimum.reduceat(h, starts)
    return sig.astype(np.uint32)


LSH_MIN_ROWS = 4  # narrower bands make chance candidates explode at 100k rows


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows): the widest bands that still propose a pair at exactly ``threshold`` with
    probability >= 0.99, since a missed duplicate costs more than checking a candidate.

    Wider bands mean fewer chance candidates among unrelated rows. Below a threshold of about 0.7
    no width of at least LSH_MIN_ROWS reaches 0.99 with 64 permutations; then the band is
    LSH_MIN_ROWS wide and ``lsh_recall`` says what a pair at the threshold can expect.
    """
    for rows in range(num_perm, LSH_MIN_ROWS, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= 0.99:
            return bands, rows
    return num_perm // LSH_MIN_ROWS, LSH_MIN_ROWS


def lsh_recall(threshold: float, num_perm: int = 64) -> float:
    """Probability that LSH proposes a pair whose similarity is exactly ``threshold``."""
    bands, rows = lsh_params(threshold, num_perm)
    return 1 - (1 - threshold**rows) ** bands


def candidate_pairs(sig: np.ndarray, bands: int, rows: int) -> set[tuple[int, int]]:
    """Index pairs whose signatures agree on every row of at least one band."""
    pairs: set[tuple[int, int]] = set()
    for band in range(bands):
        block = np.ascontiguousarray(sig[:, band * rows : (band + 1) * rows])
        keys = block.view(np.dtype((np.void, block.dtype.itemsize * rows))).ravel()
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        shared = np.flatnonzero(counts[inverse] > 1)
        buckets: dict[int, list[int]] = defaultdict(list)
        for i in shared:
            buckets[int(inverse[i])].append(int(i))
        for members in buckets.values():
            if len(members) > 200:  # a giant bucket is one cluster; a chain of neighbours covers it
                members.sort()
                pairs.update(pairwise(members))
            else:
                pairs.update(combinations(sorted(members), 2))
    return pairs


def method(threshold: float, num_perm: int = 64) -> str:
    """One line for audit.json: how pairs were found and what their similarity means."""
    bands, rows = lsh_params(threshold, num_perm)
    return (f"MinHash LSH ({num_perm} permutations, {bands} bands x {rows} rows: a pair at the threshold is "
            f"proposed with p={lsh_recall(threshold, num_perm):.3f}), exact {MEASURE}")


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    if not len(a) and not len(b):
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def near_pairs(texts: list[str], threshold: float = 0.8, num_perm: int = 64) -> list[tuple[int, int, float]]:
    """(i, j, Jaccard) for every pair whose word-and-word-pair Jaccard is >= threshold, i < j, sorted.
    Texts are compared on what varies: lines shared by many of them are left out (``boilerplate``)."""
    flat, lengths = shingle_rows(varying_texts(texts))
    return confirmed_pairs(flat, lengths, threshold, lsh_params(threshold, num_perm), num_perm)


def confirmed_pairs(flat: np.ndarray, lengths: np.ndarray, threshold: float, bands_rows: tuple[int, int],
                    num_perm: int = 64) -> list[tuple[int, int, float]]:
    """MinHash + LSH candidates over any shingles (``flat``, ``lengths`` as shingle_rows gives them),
    each confirmed by its exact Jaccard: (i, j, Jaccard) >= threshold, i < j, sorted."""
    sig = minhash(flat, lengths, num_perm)
    offsets = np.cumsum(lengths) - lengths

    def grams(i: int) -> np.ndarray:
        return np.unique(flat[offsets[i] : offsets[i] + lengths[i]])

    out = []
    for i, j in sorted(candidate_pairs(sig, *bands_rows)):
        if lengths[i] and lengths[j]:
            sim = jaccard(grams(i), grams(j))
            if sim >= threshold:
                out.append((i, j, round(sim, 4)))
    return out


def clusters(n: int, pairs: list[tuple[int, int]]) -> list[int]:
    """Union-find: the cluster representative (smallest index) of each of ``n`` items."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return [find(i) for i in range(n)]
