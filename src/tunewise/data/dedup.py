"""Exact and near-duplicate detection: MinHash signatures, LSH banding, exact Jaccard to confirm.

The MinHash is computed for all rows at once with numpy (one pass over every shingle hash per
permutation block), which is what keeps a 100,000-row audit within seconds. LSH only proposes
candidate pairs; each pair's reported similarity is the exact Jaccard of the two shingle sets, so
the numbers in audit.json do not depend on the hashing's luck.
"""

from __future__ import annotations

import string
from collections import defaultdict
from itertools import combinations, pairwise
from zlib import crc32

import numpy as np

_MAX = np.uint64((1 << 32) - 1)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(32)
_PUNCT = str.maketrans(string.punctuation, " " * len(string.punctuation))
_WORD_HASH: dict[str, int] = {}
_EMPTY = np.zeros(0, dtype=np.uint64)


def normalise(text: str | None) -> str:
    """Case- and space-insensitive form used to compare inputs."""
    return " ".join((text or "").lower().split())


def shingle_rows(texts: list[str], k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the word k-grams of every text, concatenated, and how many each text has.

    Words are hashed once each (cached) and neighbours combined with numpy, instead of building
    k-gram strings: this is the audit's hottest loop. A text shorter than k words is one k-gram.
    """
    hashes: list[int] = []
    counts: list[int] = []
    cache = _WORD_HASH
    for text in texts:
        words = (text or "").lower().translate(_PUNCT).split()
        if 0 < len(words) < k:
            words += [""] * (k - len(words))
        hashes.extend([cache.get(w) or cache.setdefault(w, crc32(w.encode()) + 1) for w in words])
        counts.append(len(words))
    n_words = np.array(counts, dtype=np.int64)
    n_grams = np.maximum(n_words - k + 1, 0)
    if not n_grams.sum():
        return _EMPTY, n_grams
    h = np.array(hashes, dtype=np.uint64)
    grams = h[: len(h) - k + 1].copy()
    for i in range(1, k):
        grams = grams * _MIX + h[i : len(h) - k + 1 + i]
    starts = np.cumsum(n_words) - n_words
    first = np.cumsum(n_grams) - n_grams
    index = np.repeat(starts, n_grams) + np.arange(n_grams.sum()) - np.repeat(first, n_grams)
    return grams[index], n_grams


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


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising false positives plus false negatives around ``threshold``."""
    xs = np.linspace(0, 1, 201)
    best, best_err = (num_perm, 1), float("inf")
    for r in range(1, num_perm + 1):
        if num_perm % r:
            continue
        b = num_perm // r
        p = 1 - (1 - xs**r) ** b
        fp = np.trapezoid(p[xs < threshold], xs[xs < threshold])
        fn = np.trapezoid(1 - p[xs >= threshold], xs[xs >= threshold])
        if fp + 2 * fn < best_err:  # missing a duplicate costs more than checking a candidate
            best, best_err = (b, r), fp + 2 * fn
    return best


def candidate_pairs(sig: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """Index pairs that share at least one LSH band."""
    bands, rows = lsh_params(threshold, sig.shape[1])
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


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    if not len(a) and not len(b):
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def near_pairs(texts: list[str], threshold: float = 0.8, k: int = 3, num_perm: int = 64,
               ) -> list[tuple[int, int, float]]:
    """(i, j, Jaccard) for every pair with word-shingle Jaccard >= threshold, i < j, sorted."""
    flat, lengths = shingle_rows(texts, k)
    sig = minhash(flat, lengths, num_perm)
    offsets = np.cumsum(lengths) - lengths

    def grams(i: int) -> np.ndarray:
        return np.unique(flat[offsets[i] : offsets[i] + lengths[i]])

    out = []
    for i, j in sorted(candidate_pairs(sig, threshold)):
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
