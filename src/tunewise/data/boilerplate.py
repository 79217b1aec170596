"""Text shared by many rows (a system prompt, an instruction template, a few-shot preamble, a policy
text), found from the data itself, so near-duplicates and leakage are judged on what varies.

A row's input is cut into lines (a chat transcript has a line per turn, and a line per line of a
long system prompt); a line repeated, after casefolding and spacing, in at least ``SHARE`` of the
rows (and in ``MIN_ROWS`` or more) is boilerplate. Two requests of eight words under one sixty-word
system prompt share most of their words; without the prompt they are compared on their own words.
A row made only of boilerplate lines keeps its whole text, so rows without a varying part are still
compared (and an exact repeat is still an exact duplicate, which compares the whole input and
answer). Tool definitions live beside the turns (``meta["tools"]``) and were never compared.
"""

from __future__ import annotations

import math
from collections import Counter

SHARE = 0.3
"""A line in this share of rows is boilerplate: a system prompt used for a third of the data is
shared text, not what one row says."""
MIN_ROWS = 3


def _key(line: str) -> str:
    return " ".join(line.lower().split())


def shared_lines(texts: list[str]) -> dict[str, int]:
    """Each boilerplate line (normalised) and in how many rows it appears."""
    if len(texts) < MIN_ROWS or not any("\n" in t for t in texts):
        return {}  # one line per row: a repeated line is the whole row, an exact duplicate
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update({k for k in map(_key, text.split("\n")) if k})
    need = max(MIN_ROWS, math.ceil(SHARE * len(texts)))
    return {line: n for line, n in counts.items() if n >= need}


def varying_texts(texts: list[str], shared: dict[str, int] | None = None) -> list[str]:
    """Each text without its boilerplate lines (the whole text when nothing else is left)."""
    shared = shared_lines(texts) if shared is None else shared
    if not shared:
        return texts
    out = []
    for text in texts:
        kept = [line for line in text.split("\n") if _key(line) not in shared]
        out.append("\n".join(kept) if any(line.strip() for line in kept) else text)
    return out


def boilerplate_finding(texts: list[str], tools: list[str | None]) -> dict:
    """The audit's finding: what is shared, by how many rows, how long, and what rows were compared on."""
    shared = shared_lines(texts)
    n = len(texts)
    rows = sum(any(_key(line) in shared for line in t.split("\n")) for t in texts) if shared else 0
    words = sum(len(line.split()) for line in shared)
    items = [{"text": line[:200], "rows": k, "share": round(k / n, 3)} for line, k in
             sorted(shared.items(), key=lambda kv: -kv[1])]
    out = {"count": len(shared), "rows": rows, "share": round(rows / n, 3) if n else 0.0, "words": words,
           "items": items, "min_share": SHARE,
           "compared_on": ("each input without these lines (near-duplicates and leakage)" if shared
                           else "each whole input")}
    common = Counter(t for t in tools if t).most_common(1)
    if common and common[0][1] >= max(MIN_ROWS, SHARE * n):
        out["tools"] = {"rows": common[0][1], "share": round(common[0][1] / n, 3)}
    if shared:
        out["note"] = (f"{words} words of text shared by {out['share']:.0%} of rows, compared out of near-duplicate "
                       "and leakage detection; a shared prefix can be computed once (prefix caching) when serving")
    return out
