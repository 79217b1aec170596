"""What each page shows, read from a project's ``.tunewise`` folder. Folders are only ever looked up
by a name taken from a listing of their parent (``child``), never joined from request text."""

from __future__ import annotations

import json
from pathlib import Path

from tunewise import workspace as ws

KINDS = ("datasets", "audits", "reports", "runs", "monitor")


def listing(project: Path, kind: str) -> list[str]:
    """Folder names under ``.tunewise/<kind>``, newest first (names are timestamps or hashes)."""
    root = ws.workspace(project) / kind
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return [p.name for p in sorted(dirs, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)]


def child(project: Path, kind: str, name: str) -> Path | None:
    """The folder ``name`` under ``.tunewise/<kind>`` if the listing holds it, else None."""
    if kind not in KINDS or name not in listing(project, kind):
        return None
    return ws.workspace(project) / kind / name


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def project_summary(project: Path) -> dict:
    """Config text and every dataset, audit, ladder, run and monitor result, newest first."""
    config_file = project / "tunewise.yaml"
    datasets = []
    for name in listing(project, "datasets"):
        m = read_json(ws.workspace(project) / "datasets" / name / "manifest.json") or {}
        counts = {k: v for k, v in (m.get("counts") or m.get("splits") or {}).items()} if isinstance(
            m.get("counts") or m.get("splits"), dict) else {}
        datasets.append({"name": name, "hash": m.get("content_hash", m.get("hash", name)), "counts": counts,
                         "created": m.get("created", ""), "reviews": m.get("reviews_applied", 0)})
    audits = []
    for name in listing(project, "audits"):
        a = read_json(ws.workspace(project) / "audits" / name / "audit.json") or {}
        checks = a.get("checks", {})
        audits.append({"name": name, "rows": a.get("rows", a.get("n_rows", "")),
                       "flagged": {k: v.get("count") for k, v in checks.items()
                                   if isinstance(v, dict) and v.get("count")}})
    ladders = []
    for name in listing(project, "reports"):
        lj = read_json(ws.workspace(project) / "reports" / name / "ladder.json")
        if lj is None:
            continue
        ladders.append({"name": name, "status": lj.get("status", ""),
                        "rungs": [r.get("rung", r.get("name", "?")) for r in lj.get("rungs", [])],
                        "html": (ws.workspace(project) / "reports" / name / "report.html").exists()})
    runs = []
    for name in listing(project, "runs"):
        manifest = read_json(ws.workspace(project) / "runs" / name / "rung.json") or {}
        folder = ws.workspace(project) / "runs" / name
        runs.append({"name": name, "rung": manifest.get("rung", ""), "saved": bool(manifest),
                     "exported": (folder / "export" / "export.json").exists(),
                     "curves": sparkline(read_json(folder / "curves.json"))})
    monitors = [n for n in listing(project, "monitor")
                if (ws.workspace(project) / "monitor" / n / "monitor.html").exists()]
    from tunewise import locate

    found = locate.find_ladder(project)
    in_use = next((lad for lad in ladders if found and lad["name"] == found.name), None)
    return {"config": config_file.read_text(encoding="utf-8") if config_file.exists() else "",
            "datasets": datasets, "audits": audits, "ladders": ladders, "runs": runs, "monitors": monitors,
            "in_use": in_use, "in_use_line": found.line() if found else None}


def sparkline(curves: dict | None, width: int = 160, height: int = 40) -> dict | None:
    """SVG polyline points for a run's train and val loss (curves.json), on one shared scale."""
    if not curves or not isinstance(curves.get("train"), list):
        return None
    series = {k: [(p["step"], p["loss"]) for p in curves.get(k) or [] if isinstance(p, dict) and "loss" in p]
              for k in ("train", "val")}
    points = [pt for s in series.values() for pt in s]
    if not points:
        return None
    (x0, x1), (y0, y1) = [(min(v), max(v)) for v in zip(*points)]

    def xy(step, loss) -> str:
        x = 2 + (width - 4) * ((step - x0) / (x1 - x0) if x1 > x0 else 0.5)
        y = 2 + (height - 4) * ((y1 - loss) / (y1 - y0) if y1 > y0 else 0.5)
        return f"{x:.1f},{y:.1f}"

    out = {k: " ".join(xy(*pt) for pt in s) for k, s in series.items()}
    last = {k: s[-1][1] for k, s in series.items() if s}
    return {**out, "width": width, "height": height,
            "title": "; ".join(f"{k} loss {v:.3f} at the end" for k, v in last.items())}


def latest_audit(project: Path) -> tuple[str, dict] | None:
    for name in listing(project, "audits"):
        audit = read_json(ws.workspace(project) / "audits" / name / "audit.json")
        if audit and "checks" in audit:
            return name, audit
    return None


def reasons(audit: dict) -> dict[str, list[str]]:
    """Row id -> why each check flagged it, in words (the audit's own figures)."""
    checks, out = audit["checks"], {}

    def add(rid: str, text: str) -> None:
        out.setdefault(rid, []).append(text)

    for it in checks.get("exact_duplicates", {}).get("items", []):
        add(it["id"], f"exact duplicate of {it.get('duplicate_of', '?')}")
    for p in checks.get("near_duplicates", {}).get("pairs", []):
        add(p["b"], f"near-duplicate of {p['a']} (similarity {p.get('similarity', '?')})")
    for g in checks.get("conflicting_targets", {}).get("groups", []):
        for rid in g["ids"]:
            add(rid, f"same input as {', '.join(i for i in g['ids'] if i != rid)} with another target")
    for f in checks.get("pii", {}).get("findings", []):
        add(f["id"], f"personal data: {f.get('type', '?')} in {f.get('field', 'input')}")
    for label, found in checks.get("unknown_labels", {}).get("labels", {}).items():
        for rid in found["ids"]:
            add(rid, f"label {label!r} is not in task.labels (nearest: {found.get('nearest') or 'none'})")
    for it in checks.get("suspected_mislabels", {}).get("items", []):
        add(it["id"], f"a classifier trained on the other rows gives {it['given']!r} "
                      f"{100 * it.get('given_prob', 0):.1f}% and {it['suggested']!r} {100 * it.get('score', 0):.1f}%")
    for name in ("empty_inputs", "missing_targets", "too_long", "empty_assistant_replies"):
        for rid in checks.get(name, {}).get("ids", []):
            add(rid, name.replace("_", " "))
    for rid in checks.get("review_sample", {}).get("ids", []):
        add(rid, "in the random review sample")
    return out


def flagged_records(project: Path, audit: dict) -> list[dict]:
    """Each flagged row of the audit joined with the project's data: id, source (file:line), flags,
    input (personal data redacted), target, suggested label — in the order of the data files."""
    from tunewise.config import load_config
    from tunewise.data.pii import find_pii, redact
    from tunewise.data.prepare import _project_records
    from tunewise.data.review import flagged_rows

    flagged, why = flagged_rows(audit), reasons(audit)
    rows = []
    for rec in _project_records(load_config(project), project):
        if rec.id in flagged:
            f = flagged[rec.id]
            text = rec.input if isinstance(rec.input, str) else json.dumps(rec.input)
            spans = find_pii(text)
            source = rec.source.removeprefix(f"{Path(project).resolve()}/").removeprefix(f"{project}/")
            rows.append({"id": rec.id, "source": source, "flags": f["flags"], "why": why.get(rec.id, []), "input": text,
                         "shown": redact(text, spans) if spans else text, "pii": bool(spans),
                         "target": rec.target or "", "suggested_target": f["suggested"]})
    # The queue's order: rows with a suggested label first, then rows a check flagged, then the
    # random review sample; within each, the order of the data files.
    return sorted(rows, key=lambda r: (0 if r["suggested_target"] else 1 if r["flags"] != ["review_sample"] else 2))


def filter_rows(rows: list[dict], check: str, label: str, file: str, q: str) -> list[dict]:
    q = q.lower()
    return [r for r in rows
            if (not check or check in r["flags"]) and (not label or r["target"] == label)
            and (not file or r["source"].rsplit(":", 1)[0] == file) and (not q or q in r["shown"].lower())]
