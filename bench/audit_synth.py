"""Synthetic rows with planted duplicates, near-duplicates and PII whose spans are known.

Shared by bench/audit_100k.py (the tunewise side) and bench/audit_pii_peer.py (the peer side) so
both tools are scored on exactly the same texts and ground truth.
"""

from __future__ import annotations

import random
import string

PII_KINDS = ("email", "phone", "credit_card", "iban", "ssn", "ip_address", "secret")


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def _iban(rng: random.Random) -> str:
    country, length = rng.choice([("GB", 22), ("DE", 22), ("FR", 27), ("NL", 18)])
    if country in ("GB", "NL"):
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + \
            "".join(rng.choice(string.digits) for _ in range(length - 8))
    else:
        bban = "".join(rng.choice(string.digits) for _ in range(length - 4))
    number = "".join(str(int(c, 36)) for c in bban + country + "00")
    code = f"{country}{98 - int(number) % 97:02d}{bban}"
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4)) if rng.random() < 0.6 else code


def make_pii(kind: str, rng: random.Random) -> str:
    if kind == "email":
        user = rng.choice(["anna", "li.wei", "j.smith", "omar_k", "p.garcia"]) + str(rng.randrange(100))
        return f"{user}@{rng.choice(['example', 'mail', 'acme-corp'])}.{rng.choice(['com', 'org', 'co.uk', 'de'])}"
    if kind == "phone":
        a, b, c = rng.randrange(201, 989), rng.randrange(200, 999), rng.randrange(1000, 9999)
        return rng.choice([f"({a}) {b}-{c}", f"+1 {a}-{b}-{c}", f"{a}.{b}.{c}", f"+44 20 {b}{c % 10} {c}"])
    if kind == "credit_card":
        num = _luhn_complete(rng.choice(["4", "51", "55", "37"]), 16, rng)
        sep = rng.choice([" ", "-", ""])
        return sep.join(num[i : i + 4] for i in range(0, 16, 4))
    if kind == "iban":
        return _iban(rng)
    if kind == "ssn":
        return f"{rng.randrange(100, 665)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}"
    if kind == "ip_address":
        return ".".join(str(rng.randrange(1, 255)) for _ in range(4))
    alphabet = string.ascii_uppercase + string.digits
    return rng.choice(["AKIA" + "".join(rng.choice(alphabet) for _ in range(16)),
                       "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))])


def make_negative(rng: random.Random) -> str:
    """Number-like text that is not PII: Luhn-failing 16-digit numbers, dates, versions, amounts."""
    while True:
        num = "".join(rng.choice(string.digits) for _ in range(16))
        if not _luhn_ok(num):
            break
    return rng.choice([num, f"order #{rng.randrange(10**7, 10**8)}", f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                       f"v{rng.randrange(1, 9)}.{rng.randrange(0, 20)}.{rng.randrange(0, 9)}", f"${rng.randrange(1, 9999)}.{rng.randrange(10, 99)}",
                       f"ticket {rng.randrange(10**5, 10**6)}", f"{rng.randrange(1, 12)}:{rng.randrange(10, 59)} pm"])


def _luhn_ok(num: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(num)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def vocabulary(rng: random.Random, n: int = 20000) -> list[str]:
    return ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randrange(2, 10))) for _ in range(n)]


def sentence_text(rng: random.Random, vocab: list[str], chars: int = 500) -> str:
    words, size = [], 0
    while size < chars:
        w = vocab[min(int(rng.paretovariate(1.1)) - 1, len(vocab) - 1)] if rng.random() < 0.5 else rng.choice(vocab)
        words.append(w)
        size += len(w) + 1
    return " ".join(words)[:chars]


def make_rows(n: int, seed: int = 0, pii_rate: float = 0.05, dup_rate: float = 0.02, near_rate: float = 0.01,
              labels: int = 5) -> tuple[list[dict], dict]:
    """Rows {id, input, target, pii: [[kind, start, end]…]} and the planted counts."""
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    rows = []
    n_base = n - int(n * dup_rate) - int(n * near_rate)
    for i in range(n_base):
        text = sentence_text(rng, vocab)
        spans = []
        if rng.random() < pii_rate:
            text, spans = insert_pii(text, rng)
        elif rng.random() < pii_rate:
            pos = text.rfind(" ", 0, rng.randrange(50, 450)) + 1
            text = text[:pos] + make_negative(rng) + " " + text[pos:]
        rows.append({"id": str(i), "input": text, "target": f"label{rng.randrange(labels)}", "pii": spans})
    for k in range(int(n * dup_rate)):
        src = rows[rng.randrange(n_base)]
        rows.append(dict(src, id=f"dup{k}"))
    for k in range(int(n * near_rate)):
        src = rows[rng.randrange(n_base)]
        rows.append(dict(src, id=f"near{k}", input=src["input"] + " extra words here"))
    return rows, {"exact_duplicates": int(n * dup_rate), "near_duplicates_planted": int(n * near_rate)}


def insert_pii(text: str, rng: random.Random, count: int = 1) -> tuple[str, list[list]]:
    spans = []
    for _ in range(count):
        kind = rng.choice(PII_KINDS)
        value = make_pii(kind, rng)
        pos = text.rfind(" ", 0, rng.randrange(20, max(21, len(text) - 20))) + 1
        for _, s, e in spans:  # never inside an entity already placed
            if s < pos <= e:
                pos = s
        text = text[:pos] + value + " " + text[pos:]
        spans = [[k, s + len(value) + 1 if s >= pos else s, e + len(value) + 1 if s >= pos else e] for k, s, e in spans]
        spans.append([kind, pos, pos + len(value)])
    return text, spans


def pii_eval_rows(n: int, seed: int = 1) -> list[dict]:
    """A PII evaluation set: 40% of rows hold 1-2 entities, 30% hold hard negatives, the rest none."""
    rng = random.Random(seed)
    vocab = vocabulary(rng, 5000)
    rows = []
    for i in range(n):
        text, spans = sentence_text(rng, vocab, 300), []
        r = rng.random()
        if r < 0.4:
            text, spans = insert_pii(text, rng, rng.choice([1, 2]))
        elif r < 0.7:
            pos = text.rfind(" ", 0, rng.randrange(50, 250)) + 1
            text = text[:pos] + make_negative(rng) + " " + text[pos:]
        rows.append({"id": str(i), "input": text, "pii": spans})
    return rows


def score(truth: list[list[list]], found: list[list[list]], kinds=PII_KINDS) -> dict:
    """Entity-level precision/recall per kind: a finding counts when its kind matches and spans overlap."""
    out = {}
    for kind in kinds:
        tp = fp = fn = 0
        for t_row, f_row in zip(truth, found, strict=True):
            t = [s for s in t_row if s[0] == kind]
            f = [s for s in f_row if s[0] == kind]
            used = set()
            for _, fs, fe in f:
                hit = next((i for i, (_, ts, te) in enumerate(t) if i not in used and fs < te and ts < fe), None)
                if hit is None:
                    fp += 1
                else:
                    used.add(hit)
                    tp += 1
            fn += len(t) - len(used)
        out[kind] = {"tp": tp, "fp": fp, "fn": fn, "precision": round(tp / (tp + fp), 4) if tp + fp else None,
                     "recall": round(tp / (tp + fn), 4) if tp + fn else None}
    tp, fp, fn = (sum(v[k] for v in out.values()) for k in ("tp", "fp", "fn"))
    out["all"] = {"tp": tp, "fp": fp, "fn": fn, "precision": round(tp / (tp + fp), 4) if tp + fp else None,
                  "recall": round(tp / (tp + fn), 4) if tp + fn else None}
    return out
