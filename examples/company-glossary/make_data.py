"""Write documents/*.md and data/questions.jsonl: the internal glossary of a fictional company.

Written for tunewise (CC0-1.0). Every term is an invented word and every definition a random
combination of invented teams, tools, schedules and purposes, so no model can guess an answer:
it can only copy it from the glossary (the rag rung) or make one up in the learned shape (a
fine-tuned rung trained on other terms). Each term is asked about once, so the test split's terms
never occur in training. Run `python make_data.py` to regenerate; the output is deterministic.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ONSETS = ["br", "qu", "v", "dr", "sk", "t", "m", "gl", "pr", "z", "f", "h", "st", "cr", "l", "n", "pl", "wr"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ee"]
CODAS = ["ndle", "sset", "mber", "rrow", "llet", "nk", "ft", "rdle", "sk", "ntle", "pper", "ck", "zzard", "mble"]
THINGS = ["vendor checklist", "budget memo", "badge request", "outage postmortem", "shipping manifest",
          "travel voucher", "floor plan", "hiring scorecard", "access review", "release note",
          "supplier invoice", "laptop loan", "meeting quota", "parking permit", "training credit"]
TEAMS = ["Harbor", "Lantern", "Copperline", "Meadow", "Atlas", "Juniper", "Ridgeway", "Saffron",
         "Basalt", "Kestrel", "Orchard", "Tidewater"]
VERBS = ["signs", "archives", "reviews", "stamps", "forwards", "reconciles", "publishes", "locks"]
WHEN = ["every Tuesday", "at quarter close", "within two days of a release", "before the monthly audit",
        "on the first of each month", "after every site visit", "each Friday afternoon",
        "when a contract renews", "twice a year", "before midnight on payday"]
WHY = ["to release held invoices", "to reserve the rooftop lab", "to unlock the staging servers",
       "to refund conference fees", "to rotate the door codes", "to claim overtime hours",
       "to restock the mail room", "to approve remote days", "to renew software seats",
       "to book the company van", "to retire old laptops", "to open the Vienna office safe"]
WHERE = ["Tessera", "Kiln", "the Ostrich board", "Pallet wiki", "Driftbox", "the Loom tracker", "Quarry"]
DEPARTMENTS = ["finance", "facilities", "engineering", "people", "procurement", "security", "travel", "legal"]


def terms(rng: random.Random, n: int) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        out.add(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS))
    return sorted(out)


def entries(n: int = 160) -> list[dict]:
    rng = random.Random(14)
    out = []
    for term in terms(rng, n):
        definition = (f"a {rng.choice(THINGS)} that the {rng.choice(TEAMS)} team {rng.choice(VERBS)} "
                      f"{rng.choice(WHEN)} {rng.choice(WHY)}, kept in {rng.choice(WHERE)}")
        out.append({"term": term, "definition": definition, "department": rng.choice(DEPARTMENTS)})
    return out


def main() -> None:
    here = Path(__file__).resolve().parent
    rows = entries()
    docs = here / "documents"
    docs.mkdir(exist_ok=True)
    for dept in DEPARTMENTS:
        mine = [e for e in rows if e["department"] == dept]
        body = [f"# {dept.capitalize()} glossary", ""]
        for e in mine:
            body += [f"## {e['term'].capitalize()}", "", f"A {e['term']} is {e['definition']}.", ""]
        (docs / f"{dept}.md").write_text("\n".join(body), encoding="utf-8")
    order = list(range(len(rows)))
    random.Random(3).shuffle(order)
    lines = [json.dumps({"id": f"term-{i:03d}", "question": f"What is a {rows[i]['term']}?",
                         "answer": f"A {rows[i]['term']} is {rows[i]['definition']}.",
                         "entry": f"## {rows[i]['term'].capitalize()}"}) for i in order]
    (here / "data").mkdir(exist_ok=True)
    (here / "data" / "questions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
