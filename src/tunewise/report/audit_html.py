"""audit.html: one self-contained page (inline CSS, no scripts, no external files) per audit."""

from __future__ import annotations

import json
from html import escape

from tunewise.core import Record

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;width:100%}td,th{border:1px solid #ddd;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#f4f4f4}.bad{color:#b00020;font-weight:600}.ok{color:#1b7f3b}
.muted{color:#777}code,pre{font:12px ui-monospace,monospace;white-space:pre-wrap;word-break:break-word}
"""
SHOW = 50  # rows listed per check; audit.json holds them all


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _short(text: str | None, n: int = 160) -> str:
    text = "" if text is None else text
    return text if len(text) <= n else text[:n] + "…"


def _items(name: str, check: dict, recs: dict[str, Record]) -> str:
    """The rows behind one check, as a table of the first SHOW."""
    def rec_input(rid: str) -> str:
        return _short(recs[rid].input) if rid in recs else ""

    if name == "exact_duplicates":
        rows = [[it["id"], it["duplicate_of"], rec_input(it["id"])] for it in check["items"]]
        return _table(["id", "duplicate of", "input"], rows[:SHOW])
    if name == "near_duplicates":
        rows = [[p["a"], p["b"], p["similarity"], rec_input(p["a"]), rec_input(p["b"])] for p in check["pairs"]]
        return _table(["id a", "id b", "Jaccard", "input a", "input b"], rows[:SHOW])
    if name == "conflicting_targets":
        rows = [[_short(g["input"]), ", ".join(g["ids"]), json.dumps(g["targets"], ensure_ascii=False)] for g in check["groups"]]
        return _table(["input", "ids", "targets"], rows[:SHOW])
    if name == "pii":
        rows = [[f["id"], f["field"], f["type"], f"{f['start']}–{f['end']}"] for f in check["findings"]]
        return _table(["id", "field", "type", "span"], rows[:SHOW])
    if name == "leakage":
        rows = [[it["test_id"], it["train_id"], it["kind"], it["similarity"]] for it in check.get("items", [])]
        return _table(["test id", "train id", "kind", "similarity"], rows[:SHOW])
    if name == "suspected_mislabels":
        rows = [[it["id"], it["given"], it["suggested"], it["score"], rec_input(it["id"])] for it in check.get("items", [])]
        return _table(["id", "given", "suggested", "score", "input"], rows[:SHOW])
    if name == "class_balance" and "labels" in check:
        rows = [[lab, n, "below minimum" if lab in check["below_min"] else ""] for lab, n in check["labels"].items()]
        return _table(["label", "rows", ""], rows) + f"<p>imbalance ratio (largest / smallest): {check['imbalance_ratio']}</p>"
    if name == "too_long" and check.get("lengths"):
        dist = {k: v for k, v in check["lengths"].items() if k != "histogram"}
        hist = [[f"{h['from']}–{h['to']}", h["rows"]] for h in check["lengths"].get("histogram", [])]
        return (f"<p>tokenizer: {escape(check['tokenizer'])}; {escape(json.dumps(dist))}</p>"
                + _table(["tokens", "rows"], hist) + _ids(check.get("ids", []), recs))
    if "ids" in check:
        return _ids(check["ids"], recs)
    extra = {k: v for k, v in check.items() if k not in ("count",)}
    return f"<pre>{escape(json.dumps(extra, indent=1, ensure_ascii=False)[:4000])}</pre>" if extra else ""


def _ids(ids: list[str], recs: dict[str, Record]) -> str:
    if not ids:
        return ""
    rows = [[i, recs[i].source if i in recs else "", _short(recs[i].input) if i in recs else "",
             _short(recs[i].target, 60) if i in recs else ""] for i in ids[:SHOW]]
    return _table(["id", "source", "input", "target"], rows)


def render_audit(audit: dict, recs: dict[str, Record]) -> str:
    """The whole page as one string."""
    summary = [[name, check["count"], check.get("skipped", "")] for name, check in audit["checks"].items()]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>tunewise audit</title><style>{CSS}</style></head><body>",
        f"<h1>Data audit: {audit['rows']} rows, {len(audit['rejected'])} rejected</h1>",
        (f"<p class='muted'>schemas: {escape(json.dumps(audit['schemas']))}; task: {escape(audit['task'])}; "
         f"test rows: {audit['test_rows']}</p>"),
        *(f"<p class='bad'>hint: {escape(h)}</p>" for h in audit.get("hints", [])),
        "<h2 id='fields'>fields: what each is used for</h2>",
        _table(["file", "field", "rows", "used for"], [[f, name, u["rows"], u["use"] or "ignored"]
                                                     for f, uses in audit.get("fields", {}).items()
                                                     for name, u in uses.items()]),
        "<h2>Summary</h2>",
        "<table><tr><th>check</th><th>count</th><th>note</th></tr>" + "".join(
            f"<tr><td><a href='#{escape(n)}'>{escape(n)}</a></td>"
            f"<td class='{'bad' if c and n != 'review_sample' else 'ok'}'>{c}</td><td>{escape(str(s))}</td></tr>"
            for n, c, s in summary) + "</table>",
        "<h2 id='rejected'>rejected rows</h2>",
        _table(["file", "line", "reason"], [[r["file"], r["line"], r["reason"]] for r in audit["rejected"][:SHOW]]),
    ]
    for name, check in audit["checks"].items():
        parts.append(f"<h2 id='{escape(name)}'>{escape(name)}: {check['count']}</h2>")
        if check.get("skipped"):
            parts.append(f"<p class='muted'>skipped: {escape(check['skipped'])}</p>")
            continue
        parts.append(_items(name, check, recs))
    parts.append(f"<p class='muted'>Lists show the first {SHOW} rows of each check; audit.json holds all.</p></body></html>")
    return "\n".join(parts)
