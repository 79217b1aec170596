"""The near-duplicate method tunewise used before (word 3-gram MinHash LSH, 8 bands x 8 rows at 0.8),
kept verbatim as the baseline for bench/dedup_short.py. Not used by the product.
"""

from __future__ import annotations

import string
from zlib import crc32

import numpy as np

from tunewise.data.dedup import _EMPTY, _MIX, confirmed_pairs

_PUNCT = str.maketrans(string.punctuation, " " * len(string.punctuation))
_WORD_HASH: dict[str, int] = {}
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


def near_pairs(texts: list[str], threshold: float = 0.8, k: int = 3, num_perm: int = 64,
               ) -> list[tuple[int, int, float]]:
    """(i, j, Jaccard) for every pair with word-shingle Jaccard >= threshold, i < j, sorted."""
    flat, lengths = shingle_rows(texts, k)
    return confirmed_pairs(flat, lengths, threshold, lsh_params(threshold, num_perm), num_perm)
