"""Write data/chats.jsonl: support chats for a fictional shop, in OpenAI chat format.

Written for tunewise (CC0-1.0): templated from the policy table below, so every answer is
checkable, and a base model cannot know the shop's policies without fine-tuning, few-shot
examples or retrieval. Run `python make_data.py` to regenerate; the output is deterministic.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SHIPPING = {"Spain": 3, "France": 2, "Germany": 2, "Italy": 4, "Norway": 5, "Poland": 4, "Ireland": 3,
            "Portugal": 4, "Austria": 3, "Sweden": 5, "Denmark": 3, "Greece": 6}
RETURNS = {"boots": 60, "jackets": 30, "tents": 14, "backpacks": 30, "socks": 7, "gloves": 14,
           "sleeping bags": 14, "hats": 30}
WARRANTY = {"boots": 2, "jackets": 2, "tents": 5, "backpacks": 10, "sleeping bags": 3, "stoves": 1}
SIGN = "— Northwind Support"

ASK_SHIP = ["How long does shipping to {x} take?", "When will my order arrive in {x}?",
            "I live in {x}. How many days is delivery?", "What is the delivery time for {x}?"]
ASK_RET = ["Can I still return {x} I bought three weeks ago?", "What is the return window for {x}?",
           "How many days do I have to send back {x}?", "Do you take back {x}?"]
ASK_WAR = ["Is there a warranty on {x}?", "How long is the guarantee for {x}?",
           "My {x} broke. Are they covered by warranty?"]


def rows() -> list[dict]:
    rng = random.Random(7)
    out = []
    for country, days in SHIPPING.items():
        for q in ASK_SHIP:
            out.append((q.format(x=country), f"Standard shipping to {country} takes {days} business days. {SIGN}"))
    for item, days in RETURNS.items():
        for q in ASK_RET:
            out.append((q.format(x=item), f"You can return {item} within {days} days of delivery, unused. {SIGN}"))
    for item, years in WARRANTY.items():
        for q in ASK_WAR:
            out.append((q.format(x=item), f"Our {item} carry a {years}-year warranty against manufacturing faults. {SIGN}"))
    rng.shuffle(out)
    system = "You are the customer support assistant of Northwind Outfitters, an outdoor gear shop."
    return [
        {"id": f"chat-{i:03d}", "messages": [
            {"role": "system", "content": system}, {"role": "user", "content": q}, {"role": "assistant", "content": a},
        ]}
        for i, (q, a) in enumerate(out)
    ]


if __name__ == "__main__":
    path = Path(__file__).parent / "data" / "chats.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows()), encoding="utf-8")
    print(f"wrote {path}")
