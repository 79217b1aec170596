"""Deterministic, stratified train/val/test splits and the frozen test split's hash."""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict

from tunewise.core import Record


def stratified_split(
    records: list[Record], fractions: dict[str, float], seed: int, key=lambda r: r.target
) -> dict[str, list[Record]]:
    """Split ``records`` so each stratum keeps the same proportions in every part.

    Records are ordered by id before shuffling, so the split depends on the data and the seed, not
    on file order. Rounding is done per stratum with the largest remainders, so counts are exact.
    """
    names = list(fractions)
    strata: dict[str, list[Record]] = defaultdict(list)
    for rec in sorted(records, key=lambda r: r.id):
        strata[str(key(rec))].append(rec)
    parts: dict[str, list[Record]] = {n: [] for n in names}
    for label in sorted(strata):
        group = strata[label]
        random.Random(f"{seed}:{label}").shuffle(group)
        counts = _allocate(len(group), [fractions[n] for n in names])
        start = 0
        for name, count in zip(names, counts, strict=True):
            parts[name].extend(group[start : start + count])
            start += count
    for name in names:
        parts[name].sort(key=lambda r: r.id)
    return parts


def _allocate(n: int, fractions: list[float]) -> list[int]:
    exact = [n * f for f in fractions]
    counts = [int(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def subsample(records: list[Record], n: int | None, seed: int, key=lambda r: r.target) -> list[Record]:
    """A seeded subset of exactly ``n`` records, each stratum in proportion (all when n is None)."""
    if n is None or n >= len(records):
        return list(records)
    strata: dict[str, list[Record]] = defaultdict(list)
    for rec in sorted(records, key=lambda r: r.id):
        strata[str(key(rec))].append(rec)
    names = sorted(strata)
    quotas = _allocate(n, [len(strata[s]) / len(records) for s in names])
    picked = []
    for name, quota in zip(names, quotas, strict=True):
        group = list(strata[name])
        random.Random(f"{seed}:sub:{name}").shuffle(group)
        picked.extend(group[:quota])
    return sorted(picked, key=lambda r: r.id)


def records_hash(records: list[Record]) -> str:
    """sha256 over the ids, inputs and targets in id order: the identity of a frozen split."""
    h = hashlib.sha256()
    for rec in sorted(records, key=lambda r: r.id):
        h.update(json.dumps([rec.id, rec.input, rec.target], ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def group_stratified_split(
    records: list[Record], groups: list[int], fractions: dict[str, float], seed: int, key=lambda r: r.target
) -> dict[str, list[Record]]:
    """Like ``stratified_split``, but rows of one group (a near-duplicate cluster) stay together.

    Each group is stratified by its first row's key; within a stratum the groups are shuffled with
    the seed and each goes to the part furthest below its quota, so counts stay close to exact.
    """
    names = list(fractions)
    units: dict[int, list[Record]] = defaultdict(list)
    for rec, g in zip(records, groups, strict=True):
        units[g].append(rec)
    strata: dict[str, list[list[Record]]] = defaultdict(list)
    for unit in units.values():
        unit.sort(key=lambda r: r.id)
        strata[str(key(unit[0]))].append(unit)
    parts: dict[str, list[Record]] = {n: [] for n in names}
    for label in sorted(strata):
        stratum = sorted(strata[label], key=lambda u: u[0].id)
        random.Random(f"{seed}:{label}").shuffle(stratum)
        quotas = dict(zip(names, _allocate(sum(len(u) for u in stratum), [fractions[n] for n in names]), strict=True))
        filled = dict.fromkeys(names, 0)
        for unit in stratum:
            name = max(names, key=lambda n: (quotas[n] - filled[n], -names.index(n)))
            parts[name].extend(unit)
            filled[name] += len(unit)
    for name in names:
        parts[name].sort(key=lambda r: r.id)
    return parts
