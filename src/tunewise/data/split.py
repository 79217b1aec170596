"""Seeded train/val/test splits and subsets, and the frozen test split's hash.

One idea serves every split: within each stratum (a label for classification, one stratum
otherwise) the rows are shuffled with the seed and spread evenly over [0, 1) from a seeded
offset; every row (or near-duplicate group) is then sorted by that position and the sorted list
is cut into parts of exact, global sizes. Each part therefore gets every stratum in proportion
(within one row), the sizes are exact, and a part whose fraction is above zero is never empty:
when the data is too small for that, a one-line DataError gives the counts.

``frozen_split`` adds rows to an earlier split (the split ledger, ``data.frozen``): earlier rows stay
in their part, and only the new rows are spread and cut, in the sizes that bring each part nearest
its fraction.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Callable

from tunewise.core import Record
from tunewise.data.load import DataError

Key = Callable[[Record], object]


def by_target(rec: Record) -> object:
    return rec.target


def no_strata(rec: Record) -> object:
    return ""


def part_sizes(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Exact sizes that add up to ``n``: largest remainders, then at least one row per part with fraction > 0."""
    names = list(fractions)
    counts = dict(zip(names, _allocate(n, [fractions[k] for k in names]), strict=True))
    wanted = [k for k in names if fractions[k] > 0]
    if n < len(wanted):
        shares = "/".join(f"{fractions[k]:g}" for k in names)
        raise DataError(f"cannot split {n} rows into {'/'.join(names)} = {shares} without an empty part: "
                        f"need at least {len(wanted)} rows")
    for k in wanted:
        if counts[k] == 0:
            donor = max(names, key=lambda d: (counts[d], -names.index(d)))
            counts[donor] -= 1
            counts[k] = 1
    return counts


def _allocate(n: int, fractions: list[float]) -> list[int]:
    exact = [n * f for f in fractions]
    counts = [int(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _spread(units: list[list[Record]], seed: int, key: Key) -> list[list[Record]]:
    """Units ordered so that every prefix holds each stratum in proportion; depends on data and seed only."""
    strata: dict[str, list[list[Record]]] = defaultdict(list)
    for unit in sorted(units, key=lambda u: u[0].id):
        strata[str(key(unit[0]))].append(unit)
    placed = []
    for label in sorted(strata):
        group = strata[label]
        rng = random.Random(f"{seed}:{label}")
        rng.shuffle(group)
        total, offset, done = sum(len(u) for u in group), rng.random(), 0
        for unit in group:
            # the unit's middle row sits at (done + offset + (len - 1) / 2) / total in [0, 1)
            placed.append(((done + offset + (len(unit) - 1) / 2) / total, rng.random(), unit))
            done += len(unit)
    placed.sort(key=lambda p: (p[0], p[1]))
    return [unit for _, _, unit in placed]


def stratified_order(records: list[Record], seed: int, key: Key = by_target) -> list[Record]:
    """``records`` in one seeded order whose every prefix holds each stratum in proportion (within a
    row): the first n rows are a stratified subset of size n, and each is a superset of the smaller."""
    return [unit[0] for unit in _spread([[r] for r in records], seed, key)]


def _cut(units: list[list[Record]], fractions: dict[str, float],
         sizes: dict[str, int] | None = None) -> dict[str, list[Record]]:
    """Cut ordered units into consecutive parts, each unit to the part its middle row falls in.

    ``sizes`` given (rows added to a frozen split): parts may stay empty, the kept rows fill them."""
    names = list(fractions)
    n = sum(len(u) for u in units)
    fixed = sizes is not None
    sizes = sizes if fixed else part_sizes(n, fractions)
    bounds, edge = [], 0
    for name in names:
        edge += sizes[name]
        bounds.append(edge)
    chosen: dict[str, list[list[Record]]] = {k: [] for k in names}
    start = 0
    for unit in units:
        middle = start + len(unit) / 2
        chosen[names[min(sum(middle > b for b in bounds), len(names) - 1)]].append(unit)
        start += len(unit)
    for name in names:  # groups larger than a part can leave it empty: move the nearest small group in
        if fractions[name] > 0 and not chosen[name] and not fixed:
            donors = [d for d in names if len(chosen[d]) > 1]
            if not donors:
                got = ", ".join(f"{k} {sum(len(u) for u in chosen[k])}" for k in names)
                raise DataError(f"cannot split {n} rows in {len(units)} near-duplicate groups without an empty "
                                f"{name} split ({got}); add data or lower the near-duplicate threshold")
            donor = max(donors, key=lambda d: sum(len(u) for u in chosen[d]))
            unit = min(chosen[donor], key=len)
            chosen[donor].remove(unit)
            chosen[name].append(unit)
    return {k: sorted((r for u in chosen[k] for r in u), key=lambda r: r.id) for k in names}


def stratified_split(records: list[Record], fractions: dict[str, float], seed: int,
                     key: Key = by_target) -> dict[str, list[Record]]:
    """Split ``records`` into parts of exact sizes, each stratum of ``key`` in proportion.

    Pass ``key=no_strata`` for tasks without labels (generation, extraction): stratifying by a
    free-text target would make every row its own stratum.
    """
    return _cut(_spread([[r] for r in records], seed, key), fractions)


def group_stratified_split(records: list[Record], groups: list[int], fractions: dict[str, float], seed: int,
                           key: Key = by_target) -> dict[str, list[Record]]:
    """Like ``stratified_split``, but rows of one group (a near-duplicate cluster) stay in one part.

    A group is stratified by its first row's key. Sizes are exact up to the size of a group.
    """
    units: dict[int, list[Record]] = defaultdict(list)
    for rec, g in zip(records, groups, strict=True):
        units[g].append(rec)
    for unit in units.values():
        unit.sort(key=lambda r: r.id)
    return _cut(_spread(list(units.values()), seed, key), fractions)


def frozen_split(records: list[Record], groups: list[int], links: list[tuple[int, int]], fractions: dict[str, float],
                 seed: int, known: dict[str, str], key: Key = by_target) -> tuple[dict[str, list[Record]], list[tuple[Record, str]]]:
    """Add rows to an earlier split without moving any row: (parts, dropped rows with the reason).

    ``known`` maps the ids of rows split before to their part; each stays there. A new row that is
    a near-duplicate (``groups``) of earlier rows joins their part; one that would join rows of
    several parts is dropped (it would leak either way). The other new rows are cut like
    ``group_stratified_split``, in the sizes that bring each part nearest its fraction. Earlier rows
    that are themselves near-duplicates across parts (``links``: an edited row, a lower threshold)
    lose the row of the less-evaluated part (test over val over train), so no test row leaks.
    """
    units: dict[int, list[Record]] = defaultdict(list)
    for rec, g in zip(records, groups, strict=True):
        units[g].append(rec)
    parts: dict[str, list[Record]] = {k: [] for k in fractions}
    fresh, dropped = [], []
    for unit in units.values():
        old = sorted({known[r.id] for r in unit if r.id in known})
        if not old:
            fresh.append(sorted(unit, key=lambda r: r.id))
        for rec in unit if old else []:
            if rec.id in known or len(old) == 1:
                parts[known.get(rec.id, old[0])].append(rec)
            else:
                why = f"near-duplicate of rows already in {' and '.join(old)}: left out so that no row changes split"
                dropped.append((rec, why))
    have = {k: len(v) for k, v in parts.items()}
    for name, rows in _cut(_spread(fresh, seed, key), fractions, _sizes_toward(fresh, have, fractions)).items():
        parts[name] += rows
    where = {r.id: name for name, rows in parts.items() for r in rows}
    rank = {name: i for i, name in enumerate(("test", "val", "train"))}
    for i, j in links:
        a, b = records[i], records[j]
        if a.id in where and b.id in where and where[a.id] != where[b.id]:
            keep, lose = sorted((a, b), key=lambda r: rank.get(where[r.id], 3))
            dropped.append((lose, f"near-duplicate of {where[keep.id]} row {keep.id}, which stays in {where[keep.id]}"))
            parts[where.pop(lose.id)].remove(lose)
    empty = [k for k in fractions if fractions[k] > 0 and not parts[k]]
    if empty:
        raise DataError(f"the {'/'.join(empty)} split would be empty: none of its earlier rows is left and no new "
                        "row was assigned to it; `tunewise prepare --resplit` splits afresh")
    return {k: sorted(v, key=lambda r: r.id) for k, v in parts.items()}, dropped


def _sizes_toward(units: list[list[Record]], have: dict[str, int], fractions: dict[str, float]) -> dict[str, int]:
    """How many of the new rows each part gets: in proportion to how far each part is below its
    share of all rows (the config's fractions when none is)."""
    n = sum(len(u) for u in units)
    names = list(fractions)
    want = _allocate(n + sum(have.values()), [fractions[k] for k in names])
    short = [max(0, w - have[k]) for k, w in zip(names, want, strict=True)]
    weights = [x / sum(short) for x in short] if sum(short) else [fractions[k] for k in names]
    return dict(zip(names, _allocate(n, weights), strict=True))


def subsample(records: list[Record], n: int | None, seed: int, key: Key = by_target) -> list[Record]:
    """A seeded subset of exactly ``n`` records, each stratum in proportion (all when n is None).

    Quotas are proportional with the largest remainders; strata with equal remainders are ordered
    by a seeded draw, so small strata (or unique targets) are picked at random, not by name.
    """
    if n is None or n >= len(records):
        return list(records)
    strata: dict[str, list[Record]] = defaultdict(list)
    for rec in sorted(records, key=lambda r: r.id):
        strata[str(key(rec))].append(rec)
    names = sorted(strata)
    rng = random.Random(f"{seed}:sub")
    draw = {name: rng.random() for name in names}
    total = len(records)
    quotas = {name: n * len(strata[name]) // total for name in names}
    rest = sorted(names, key=lambda s: (-(n * len(strata[s]) % total), draw[s]))  # exact integer remainders
    for name in rest[: n - sum(quotas.values())]:
        quotas[name] += 1
    picked = []
    for name in names:
        group = list(strata[name])
        random.Random(f"{seed}:sub:{name}").shuffle(group)
        picked.extend(group[: quotas[name]])
    return sorted(picked, key=lambda r: r.id)


def records_hash(records: list[Record]) -> str:
    """sha256 over the ids, inputs and targets in id order: the identity of a frozen split."""
    h = hashlib.sha256()
    for rec in sorted(records, key=lambda r: r.id):
        h.update(json.dumps([rec.id, rec.input, rec.target], ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
