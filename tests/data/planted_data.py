"""A classification dataset with known, planted defects, and the exact counts the audit must report."""

from __future__ import annotations

import json
import random
from pathlib import Path

TOPICS = {
    "business": ["market", "shares", "profit", "bank", "economy", "stocks", "investor", "trade", "revenue", "merger"],
    "sports": ["match", "team", "goal", "cup", "player", "coach", "league", "score", "stadium", "referee"],
    "tech": ["phone", "software", "internet", "computer", "games", "chip", "browser", "laptop", "robot", "network"],
}
RARE = ("weather", ["rain", "storm", "sunny", "forecast", "cloud", "wind", "snow"])
PII_ROWS = {  # one row per type; the 16-digit order number fails Luhn and is not a card
    "email": "write to jane.doe@example.org please",
    "phone": "call +1 415-555-0123 tonight",
    "credit_card": "card 4111 1111 1111 1111 charged",
    "iban": "pay to GB82 WEST 1234 5698 7654 32 today",
    "ssn": "ssn 123-45-6789 on file",
    "ip_address": "login from 192.168.10.20 failed",
    "secret": "key AKIAIOSFODNN7EXAMPLE leaked",
}
NOT_PII = "order 4111111111111112 shipped"

EXPECTED = {
    "rows": 132, "rejected": 3, "exact_duplicates": 3, "near_duplicates": 2, "conflicting_targets": 2,
    "empty_inputs": 2, "missing_targets": 2, "too_long": 2, "class_balance": 1, "pii": 7,
    "leakage": 3, "leak_exact": 2, "leak_near": 1, "review_sample": 50,
}


def _text(rng: random.Random, label: str, n: int = 30) -> str:
    vocab = TOPICS[label] if label in TOPICS else RARE[1]
    words = [rng.choice(vocab) for _ in range(4)] + [f"f{rng.randrange(100000)}" for _ in range(n - 4)]
    rng.shuffle(words)
    return " ".join(words)


def build(folder: Path, model_dir: Path | None = None) -> Path:
    """Write data/train.jsonl, data/test.jsonl and tunewise.yaml; return the project folder."""
    rng = random.Random(7)
    rows = []
    for label in TOPICS:
        for i in range(35):
            rows.append({"id": f"{label[:3]}{i}", "text": _text(rng, label), "label": label})
    rows += [{"id": f"wea{i}", "text": _text(rng, "weather"), "label": "weather"} for i in range(3)]
    base = list(rows)
    for i in range(3):  # exact duplicates of three distinct rows
        rows.append(dict(base[i], id=f"dup{i}"))
    for i in range(2):  # near duplicates: last word changed (words and word pairs: 56/60 and 57/61 shared)
        words = base[10 + i]["text"].split()
        rows.append(dict(base[10 + i], id=f"near{i}", text=" ".join(words[:-1] + ["changed"])))
    for i in range(2):  # conflicts: same input up to case and spacing, another label
        src = base[20 + i]
        rows.append({"id": f"conf{i}", "text": "  " + src["text"].upper(), "label": "tech" if src["label"] != "tech" else "sports"})
    rows += [{"id": "empty0", "text": "", "label": "sports"}, {"id": "empty1", "text": "   ", "label": "sports"}]
    rows += [{"id": "notarget0", "text": _text(rng, "tech"), "label": None}, {"id": "notarget1", "text": _text(rng, "tech")}]
    rows += [{"id": f"long{i}", "text": _text(rng, "business", 400), "label": "business"} for i in range(2)]
    for kind, text in PII_ROWS.items():
        rows.append({"id": f"pii_{kind}", "text": f"{text} {_text(rng, 'business', 10)}", "label": "business"})
    for i in range(3):  # mislabels: clearly sports text, labelled business
        words = [rng.choice(TOPICS["sports"]) for _ in range(12)] + [f"f{rng.randrange(100000)}" for _ in range(8)]
        rows.append({"id": f"mis{i}", "text": " ".join(words), "label": "business"})
    rows.append({"id": "notpii", "text": f"{NOT_PII} {_text(rng, 'business', 10)}", "label": "business"})
    lines = [json.dumps(r) for r in rows]
    lines.insert(5, '{"id": "bad1", "text": "unterminated')
    lines.insert(9, '{"id": "bad3", "text": ["a list"], "label": "tech"}')
    data = "\n".join(lines).encode() + b'\n{"id": "bad2", "text": "\xff\xfe", "label": "tech"}\n'
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "train.jsonl").write_bytes(data)
    test = [
        {"id": "t0", "text": base[50]["text"], "label": base[50]["label"]},
        {"id": "t1", "text": base[51]["text"].title(), "label": base[51]["label"]},
        {"id": "t2", "text": " ".join(base[52]["text"].split()[:-1] + ["other"]), "label": base[52]["label"]},
        {"id": "t3", "text": _text(rng, "sports"), "label": "sports"},
        {"id": "t4", "text": _text(rng, "tech"), "label": "tech"},
    ]
    (folder / "data" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    (folder / "tunewise.yaml").write_text(f"""name: planted
task:
  type: classification
  input_field: text
  target_field: label
  labels: [business, sports, tech, weather]
data:
  files: [data/train.jsonl]
  test_file: data/test.jsonl
  seed: 3
model:
  base: {model_dir or 'smollm2-135m-instruct'}
audit:
  max_tokens: 1000
  min_label_count: 10
""")
    return folder
