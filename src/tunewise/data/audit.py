"""The data audit: every check runs before any training and names the exact rows.

``run_audit`` takes loaded records and returns the audit as a plain dict (what audit.json holds);
``audit_project`` loads a project's files, runs it and writes audit.json (and audit.html with the
renderer its caller passes: data never imports report). Each check
is one function returning ``{"count": int, …}`` where count is defined in its docstring.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tunewise.core import ProgressFn, Record, no_progress
from tunewise.data.audit_checks import CHECK_NAMES
from tunewise.data.audit_reuse import audit_fingerprint
from tunewise.data.boilerplate import SHARE, boilerplate_finding, shared_lines
from tunewise.data.dedup import method, near_pairs, normalise
from tunewise.data.load import DataError, Loaded, Reject, load_files, nearest_label, unusable_hints
from tunewise.data.pii import PII_TYPES, find_pii
from tunewise.rungspec import TEXT

GENERATIVE_SCHEMAS = ("chat", "sharegpt", "preference", "kto", "alpaca", "prompt_completion", "text")


class AuditGateFailed(DataError):
    """``--fail-on`` named a check that found problems."""


@dataclass
class AuditSettings:
    near_threshold: float = 0.8
    max_tokens: int | None = None
    min_label_count: int = 10
    review_sample: int = 50
    mislabels: bool = True
    mislabel_max_rows: int | None = 2000
    seed: int = 0
    task_type: str | None = None  # None: guessed from the targets
    labels: list[str] = field(default_factory=list)
    annotator_field: str | None = None


# ---------------------------------------------------------------- the checks

def exact_duplicates(records: list[Record]) -> dict:
    """count: rows whose input and target repeat an earlier row."""
    first: dict[tuple, str] = {}
    items = []
    for rec in records:
        key = (rec.input, rec.target)
        if key in first:
            items.append({"id": rec.id, "duplicate_of": first[key]})
        else:
            first[key] = rec.id
    return {"count": len(items), "items": items}


def near_duplicates(records: list[Record], threshold: float) -> dict:
    """count: pairs of rows whose inputs differ (after normalising) but have Jaccard >= threshold."""
    pairs = near_pairs([r.input for r in records], threshold)
    items = [{"a": records[i].id, "b": records[j].id, "similarity": s} for i, j, s in pairs
             if normalise(records[i].input) != normalise(records[j].input)]
    shared = shared_lines([r.input for r in records])
    return {"count": len(items), "threshold": threshold, "method": method(threshold),
            "compared_on": (f"each input without the {len(shared)} lines shared by at least {SHARE:.0%} of rows "
                            "(see shared_boilerplate)" if shared else "each whole input"),
            "pairs": items}


def shared_boilerplate(records: list[Record]) -> dict:
    """count: lines (a system prompt, a template) shared by many rows, compared out of near-duplicates."""
    tools = [json.dumps(r.meta["tools"], sort_keys=True) if r.meta.get("tools") else None for r in records]
    return boilerplate_finding([r.input for r in records], tools)


def conflicting_targets(records: list[Record]) -> dict:
    """count: groups of rows with the same normalised input but more than one distinct target."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for rec in records:
        if rec.target is not None:
            groups[normalise(rec.input)].append(rec)
    items = []
    for recs in groups.values():
        targets = Counter(r.target.strip() for r in recs)
        if len(targets) > 1:
            items.append({"input": recs[0].input[:200], "ids": [r.id for r in recs], "targets": dict(targets)})
    return {"count": len(items), "rows": sum(len(g["ids"]) for g in items), "groups": items}


def alternatives(records: list[Record]) -> dict:
    """Generation: inputs with several different answers are alternatives, not conflicts."""
    found = conflicting_targets(records)
    return {"count": 0, "alternatives": found["count"], "rows": found["rows"], "groups": found["groups"],
            "skipped": (f"not classification: {found['count']} inputs have several different answers, kept as "
                        "alternatives (trained on; all are references in scoring)")}


def empty_inputs(records: list[Record]) -> dict:
    """count: rows whose input is empty or only whitespace."""
    ids = [r.id for r in records if not r.input.strip()]
    return {"count": len(ids), "ids": ids}


def missing_targets(records: list[Record]) -> dict:
    """count: rows with no target (absent, null or blank)."""
    ids = [r.id for r in records if r.target is None or not r.target.strip()]
    return {"count": len(ids), "ids": ids}


LENGTH_SAMPLE = 5000  # rows tokenized for the length distribution of a large dataset


def token_lengths(records: list[Record], tokenizer=None, max_tokens: int | None = None,
                  seed: int = 0) -> tuple[dict[int, int], str, int]:
    """Tokens of input + target for the rows that matter: {row index: tokens}, source, rows sampled.

    Tokenizing every row of a large dataset costs more than every other check together, so the
    base model's tokenizer sees (a) a seeded sample for the distribution and (b) every row that
    could exceed ``max_tokens`` — a token covers at least one UTF-8 byte, so a row of at most
    max_tokens bytes cannot. The too_long count stays exact.
    """
    texts = [r.input + "\n" + (r.target or "") for r in records]
    if tokenizer is None:
        # Without a base model there is no tokenizer to ask; ~4 characters per token is the
        # usual rule for English BPE vocabularies, and the audit says it is an estimate.
        return {i: len(t) // 4 + 1 for i, t in enumerate(texts)}, "estimate: characters / 4 (no base model given)", len(texts)
    sample = list(range(len(texts)))
    if len(sample) > LENGTH_SAMPLE:
        sample = sorted(random.Random(f"{seed}:lengths").sample(sample, LENGTH_SAMPLE))
    wanted = set(sample)
    if max_tokens:
        wanted.update(i for i, t in enumerate(texts) if len(t) > max_tokens // 4 and len(t.encode()) > max_tokens)
    order = sorted(wanted)
    ids = tokenizer([texts[i] for i in order], add_special_tokens=False)["input_ids"] if order else []
    lengths = dict(zip(order, (len(x) for x in ids), strict=True))
    return lengths, getattr(tokenizer, "name_or_path", "base model tokenizer"), len(sample)


def too_long(records: list[Record], max_tokens: int | None, tokenizer=None, seed: int = 0) -> dict:
    """count: rows whose input + target exceed max_tokens (0 when no limit is set)."""
    measured, source, sampled = token_lengths(records, tokenizer, max_tokens, seed)
    ids = [records[i].id for i, n in sorted(measured.items()) if max_tokens and n > max_tokens]
    lengths = np.array([measured[i] for i in sorted(measured)])
    if tokenizer is not None and sampled < len(records):  # the distribution comes from the sample only
        sample = sorted(random.Random(f"{seed}:lengths").sample(range(len(records)), LENGTH_SAMPLE))
        lengths = np.array([measured[i] for i in sample])
    dist = {}
    if len(lengths):
        dist = {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 1),
                **{f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 99)}, "max": int(lengths.max()),
                "rows_measured": len(lengths)}
        edges = sorted({0, *(int(e) for e in np.percentile(lengths, [25, 50, 75, 90, 99])), int(lengths.max()) + 1})
        hist, _ = np.histogram(lengths, bins=edges)
        dist["histogram"] = [{"from": int(a), "to": int(b), "rows": int(h)}
                             for a, b, h in zip(edges, edges[1:], hist, strict=False)]
    return {"count": len(ids), "max_tokens": max_tokens, "tokenizer": source, "lengths": dist, "ids": ids}


def class_balance(records: list[Record], labels: list[str], min_count: int) -> dict:
    """count: labels (configured or seen) with fewer than min_count rows."""
    counts = Counter(r.target for r in records if r.target is not None)
    per_label = {lab: counts.get(lab, 0) for lab in labels} | dict(sorted(counts.items()))
    below = sorted(lab for lab, n in per_label.items() if n < min_count)
    nonzero = [n for n in per_label.values() if n]
    ratio = round(max(nonzero) / min(nonzero), 2) if nonzero else None
    unknown = sorted(set(counts) - set(labels)) if labels else []
    return {"count": len(below), "labels": per_label, "imbalance_ratio": ratio, "min_count": min_count,
            "below_min": below, "not_in_task_labels": unknown}


def unknown_labels(records: list[Record], labels: list[str]) -> dict:
    """count: rows whose label is not one of task.labels (prepare drops them); per unknown label its
    rows, where the first ones are (file:line) and the nearest known label."""
    if not labels:
        return {"count": 0, "labels": {}, "skipped": "no task.labels given"}
    known, found = set(labels), defaultdict(list)
    for rec in records:
        if rec.target is not None and rec.target not in known:
            found[rec.target].append(rec)
    items = {lab: {"rows": len(recs), "nearest": nearest_label(lab, labels), "examples": [r.source for r in recs[:5]],
                   "ids": [r.id for r in recs]}
             for lab, recs in sorted(found.items(), key=lambda kv: (-len(kv[1]), kv[0]))}
    return {"count": sum(len(v) for v in found.values()), "labels": items, "known": list(labels)}


def pii(records: list[Record]) -> dict:
    """count: rows containing any personal data or secret; by_type: rows containing each type."""
    by_type: Counter[str] = Counter()
    findings = []
    rows = 0
    for rec in records:
        types = set()
        for name, text in (("input", rec.input), ("target", rec.target or "")):
            for sp in find_pii(text):
                types.add(sp.type)
                findings.append({"id": rec.id, "field": name, "type": sp.type, "start": sp.start, "end": sp.end})
        by_type.update(types)
        rows += bool(types)
    return {"count": rows, "by_type": {t: by_type.get(t, 0) for t in PII_TYPES}, "findings": findings}


def leakage(train: list[Record], test: list[Record] | None, threshold: float) -> dict:
    """count: test rows whose input is identical (exact) or near-identical (near) to a train row."""
    if not test:
        return {"count": 0, "exact": 0, "near": 0, "items": [], "skipped": "no test file given"}
    seen = {}
    for rec in train:
        seen.setdefault(normalise(rec.input), rec.id)
    items, leaked = [], set()
    for rec in test:
        if normalise(rec.input) in seen:
            items.append({"test_id": rec.id, "train_id": seen[normalise(rec.input)], "kind": "exact", "similarity": 1.0})
            leaked.add(rec.id)
    n_train = len(train)
    for i, j, sim in near_pairs([r.input for r in train] + [r.input for r in test], threshold):
        if i < n_train <= j and test[j - n_train].id not in leaked:
            items.append({"test_id": test[j - n_train].id, "train_id": train[i].id, "kind": "near", "similarity": sim})
            leaked.add(test[j - n_train].id)
    exact = sum(it["kind"] == "exact" for it in items)
    return {"count": len(leaked), "exact": exact, "near": len(leaked) - exact, "items": items}


def chat_checks(records: list[Record], rejects: list[Reject], tokenizer=None) -> dict[str, dict]:
    """Template round-trip, assistant-turn and end-of-turn coverage, empty assistant replies.

    End-of-turn coverage looks for the token the template itself closes an answer with (found the way
    training finds it), which is not the EOS for every model."""
    from tunewise.core import chat_text

    convs = [(r.id, r.meta.get("messages") or _as_messages(r)) for r in records]

    def text_of(m: dict) -> str:  # a tool-call turn has no content, only its calls
        return (m.get("content") if isinstance(m.get("content"), str) else chat_text(m) or "").strip()

    empty = [rid for rid, msgs in convs
             if any(m["role"] == "assistant" and not text_of(m) and not m.get("tool_calls") for m in msgs)]
    no_assistant = sum("no assistant turn" in rj.reason for rj in rejects)
    out = {
        "empty_assistant_replies": {"count": len(empty), "ids": empty},
        "assistant_coverage": {"count": no_assistant, "coverage": round(len(convs) / max(len(convs) + no_assistant, 1), 4),
                               "note": "count: rows rejected for having no assistant turn"},
    }
    template = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    if not template:
        reason = "no base model tokenizer with a chat template"
        out["template_round_trip"] = {"count": 0, "ids": [], "skipped": reason}
        out["eos_coverage"] = {"count": 0, "ids": [], "skipped": reason}
        return out
    from tunewise.config import TaskConfig
    from tunewise.models.chat import PromptBuilder, TemplateError

    builder = PromptBuilder(TaskConfig(type="generation"), tokenizer)
    try:
        eos = builder.end_of_answer
    except TemplateError as e:
        eos = ""
        out["template_error"] = {"count": len(convs), "ids": [], "note": str(e)}
    lost, no_eos = [], []
    for rid, msgs in convs:
        try:
            text = builder.render(msgs, generation=False)
        except TemplateError:
            lost.append(rid)
            continue
        pos = 0
        for m in msgs:  # every turn's text must appear, in order
            found = text.find(text_of(m), pos)
            if found < 0:
                lost.append(rid)
                break
            pos = found + len(text_of(m))
        last = text_of([m for m in msgs if m["role"] == "assistant"][-1])
        end = text.rfind(last) + len(last) if last else -1
        if not eos or end < 0 or eos not in text[end:]:
            no_eos.append(rid)
    out["template_round_trip"] = {"count": len(lost), "ids": lost}
    out["eos_coverage"] = {"count": len(no_eos), "ids": no_eos, "eos_token": eos,
                           "coverage": round(1 - len(no_eos) / max(len(convs), 1), 4)}
    return out


def _as_messages(rec: Record) -> list[dict]:
    return [{"role": "user", "content": rec.input}, {"role": "assistant", "content": rec.target or ""}]


def review_sample(records: list[Record], n: int, seed: int, by_label: bool) -> dict:
    """count: rows in the sample, taken round-robin across labels so rare labels are read too."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for rec in sorted(records, key=lambda r: r.id):
        groups[str(rec.target) if by_label else ""].append(rec)
    for name, group in groups.items():
        random.Random(f"{seed}:review:{name}").shuffle(group)
    picked: list[str] = []
    order = sorted(groups)
    while len(picked) < min(n, len(records)):
        for name in order:
            if groups[name] and len(picked) < n:
                picked.append(groups[name].pop().id)
    return {"count": len(picked), "ids": picked}


# ---------------------------------------------------------------- the whole audit

def looks_like_labels(records: list[Record]) -> bool:
    """Without a task type: short targets drawn from a small set are class labels."""
    targets = [r.target for r in records if r.target is not None]
    distinct = set(targets)
    return bool(targets) and len(distinct) <= max(2, min(50, len(targets) // 5)) and all(len(t) <= 50 for t in distinct)


def run_audit(loaded: Loaded, settings: AuditSettings, test: list[Record] | None = None, tokenizer=None,
              embed=None, progress: ProgressFn = no_progress) -> dict:
    """Run every check; return the audit as audit.json holds it (with seconds per check)."""
    recs = loaded.records
    schemas = sorted(set(loaded.schemas.values()))
    is_class = settings.task_type == "classification" or (settings.task_type is None and looks_like_labels(recs))
    not_class = {"count": 0, "items": [], "skipped": "not classification data"}
    corpus = settings.task_type == TEXT  # a plain-text corpus: no targets, no turns, nothing to answer
    no_answers = {"count": 0, "items": [], "skipped": "a plain-text corpus (task.type text) has no targets"}
    plan: list[tuple[str, Callable[[], dict]]] = [
        ("exact_duplicates", lambda: exact_duplicates(recs)),
        ("shared_boilerplate", lambda: shared_boilerplate(recs)),
        ("near_duplicates", lambda: near_duplicates(recs, settings.near_threshold)),
        ("conflicting_targets", lambda: no_answers if corpus else conflicting_targets(recs) if is_class
         else alternatives(recs)),
        ("empty_inputs", lambda: empty_inputs(recs)),
        ("missing_targets", lambda: no_answers if corpus else missing_targets(recs)),
        ("too_long", lambda: too_long(recs, settings.max_tokens, tokenizer, settings.seed)),
        ("pii", lambda: pii(recs)),
        ("leakage", lambda: leakage(recs, test, settings.near_threshold)),
        ("class_balance", lambda: class_balance(recs, settings.labels, settings.min_label_count) if is_class else not_class),
        ("unknown_labels", lambda: unknown_labels(recs, settings.labels) if is_class else not_class),
        ("suspected_mislabels", lambda: _mislabels(recs, settings, embed, progress) if is_class else not_class),
    ]
    if not corpus and (not is_class or set(schemas) & set(GENERATIVE_SCHEMAS)):
        plan.append(("chat", lambda: chat_checks(recs, loaded.rejects, tokenizer)))
    if settings.annotator_field:
        from tunewise.data.review import annotator_agreement

        plan.append(("annotator_agreement", lambda: annotator_agreement(recs, settings.annotator_field)))
    plan.append(("review_sample", lambda: review_sample(recs, settings.review_sample, settings.seed, is_class)))
    checks: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    title = f"audit ({len(recs):,} rows)"
    advance = progress(title, len(plan))
    for name, run in plan:
        advance(0, description=f"{title}: {name}")  # the bar names the check it waits on
        start = time.perf_counter()
        result = run()
        seconds[name] = round(time.perf_counter() - start, 3)
        advance(1, description=title)
        checks.update(result if name == "chat" else {name: result})
    labels = settings.labels if is_class else []
    usable = sum(bool(r.input.strip()) and (corpus or r.target is not None and (not labels or r.target in labels))
                 for r in recs)
    return {
        "rows": len(recs),
        "usable_rows": usable,
        "schemas": loaded.schemas,
        "fields": loaded.uses,
        "task": "classification" if is_class else (settings.task_type or "generation"),
        "rejected": [{"file": r.file, "line": r.line, "reason": r.reason} for r in loaded.rejects],
        "test_rows": len(test) if test else 0,
        "checks": checks,
        "seconds": seconds,
    }


def audit_hints(audit: dict, loaded: Loaded, input_field: str, target_field: str, labels: list[str],
                keys: tuple[str, str]) -> list[str]:
    """One line each for what made most rows unusable: wrong fields or malformed rows per file,
    labels outside task.labels; and, when nothing at all is usable, what the rows lacked."""
    hints = unusable_hints(loaded, input_field, target_field, labels, keys, audit.get("task")) + loaded.notes
    unknown = audit["checks"].get("unknown_labels", {})
    if unknown.get("count", 0) * 2 > audit["rows"]:
        shown = [f"'{lab}' ({v['rows']} rows{', nearest ' + repr(v['nearest']) if v['nearest'] else ''})"
                 for lab, v in list(unknown["labels"].items())[:3]]
        hints.append(f"{unknown['count']} of {audit['rows']} rows have a label outside task.labels "
                     f"({', '.join(labels)}): {', '.join(shown)}{', …' if len(unknown['labels']) > 3 else ''}")
    if audit["usable_rows"] == 0 and not hints:
        c = audit["checks"]
        hints.append(f"no usable rows: {len(loaded.rejects)} rejected, {c['empty_inputs']['count']} with an empty input, "
                     f"{c['missing_targets']['count']} without a target, {unknown.get('count', 0)} with an unknown label")
    return hints


def _mislabels(recs: list[Record], settings: AuditSettings, embed, progress: ProgressFn = no_progress) -> dict:
    if not settings.mislabels:
        return {"count": 0, "items": [], "skipped": "turned off (audit.mislabels: false)"}
    from tunewise.data.mislabels import suspected_mislabels
    from tunewise.data.split import subsample

    rows = [r for r in recs if r.target is not None and r.input.strip()]
    # Embedding is the audit's one expensive step on CPU; a stratified subset bounds it.
    rows = subsample(rows, settings.mislabel_max_rows, settings.seed)
    result = suspected_mislabels([r.id for r in rows], [r.input for r in rows], [r.target for r in rows],
                                 embed, seed=settings.seed, progress=progress)
    return {**result, "rows_checked": len(rows)}


def gate(audit: dict, fail_on: list[str]) -> None:
    """Raise AuditGateFailed naming every --fail-on check whose count is above zero."""
    check_fail_on(fail_on)
    not_run = [c for c in fail_on if c not in audit["checks"] and c != "rejected"]
    if not_run:
        raise DataError(f"--fail-on: check(s) {', '.join(not_run)} did not run on this data "
                        f"(ran: {', '.join(audit['checks'])}, rejected)")
    counts = {c: len(audit["rejected"]) if c == "rejected" else audit["checks"][c]["count"] for c in fail_on}
    failed = {c: n for c, n in counts.items() if n}
    if failed:
        raise AuditGateFailed("audit gate failed: " + ", ".join(f"{c}={n}" for c, n in failed.items()))


def check_fail_on(fail_on: list[str]) -> None:
    """Refuse an unknown --fail-on name before any work (a ConfigError: a usage error, exit 2)."""
    from tunewise.config import ConfigError

    unknown = [c for c in fail_on if c not in CHECK_NAMES and c != "rejected"]
    if unknown:
        raise ConfigError(f"--fail-on: unknown check(s) {', '.join(unknown)} "
                          f"(known: {', '.join(CHECK_NAMES)}, rejected)")


# ---------------------------------------------------------------- a project's audit on disk

def audit_project(project: Path, data: list[str] | None = None, test_file: str | None = None,
                  input_field: str | None = None, target_field: str | None = None, max_tokens: int | None = None,
                  json_path: Path | None = None, html_path: Path | None = None, overrides: list[str] | None = None,
                  embed=None, progress: ProgressFn = no_progress,
                  render_html: Callable[[dict, dict[str, Record]], str] | None = None) -> tuple[dict, Path, Path | None]:
    """Load the project's data (or the given files), audit it, write audit.json and, given
    ``render_html`` (the report's renderer, passed by the command that writes the page), audit.html.

    Returns (audit, audit.json path, audit.html path or None when no renderer was given).
    """
    from tunewise import workspace as ws
    from tunewise.config import config_path, load_config

    project = Path(project)
    config = load_config(project, overrides) if config_path(project).exists() else None
    settings, schema, id_field, tags, test_flag = AuditSettings(), None, "id", None, test_file
    input_flag, target_flag = input_field, target_field
    files = data or (config.data.files if config else None)
    if not files:
        raise DataError(f"{project}: no data to audit (no tunewise.yaml there; pass --data FILE)")
    if config:
        a = config.audit
        settings = AuditSettings(a.near_duplicate_threshold, a.max_tokens, a.min_label_count, a.review_sample,
                                 a.mislabels, a.mislabel_max_rows, a.seed, config.task.type,
                                 list(config.task.labels), config.data.annotator_field)
        schema, id_field, tags = config.data.schema_, config.data.id_field, config.data.sharegpt.model_dump()
        input_field = input_field or config.task.input_field
        target_field = target_field or config.task.target_field
        test_file = test_file or config.data.test_file
    settings.max_tokens = max_tokens or settings.max_tokens
    input_field, target_field = input_field or "input", target_field or "target"
    # Files named on the command line are relative to where the user is; the config's to the project.
    base = Path(".") if data else project
    test_base = Path(".") if test_flag else project
    json_targets = settings.task_type == "extraction"
    loaded = load_files(list(files), base, input_field, target_field, schema, id_field, json_targets, tags)
    test = (load_files([test_file], test_base, input_field, target_field, schema, id_field, json_targets, tags).records
            if test_file else None)
    tokenizer, warning = _tokenizer(config, project, progress) if config else (None, None)
    audit = run_audit(loaded, settings, test, tokenizer, embed, progress)
    keys = tuple(f"--{k.replace('_', '-')}" if flag or not config else f"task.{k}"
                 for k, flag in (("input_field", input_flag), ("target_field", target_flag)))
    audit["hints"] = audit_hints(audit, loaded, input_field, target_field,
                                 settings.labels if audit["task"] == "classification" else [], keys)
    if warning:
        audit["warnings"] = [warning]
    audit["files"] = {str(f): ws.sha256_file(base / f) for f in files}
    audit["fingerprint"] = audit_fingerprint(project, config, data, test_flag, input_flag, target_flag, max_tokens)
    out_dir = ws.new_dir(project, "audits") if not (json_path and html_path) else None
    json_path = Path(json_path or out_dir / "audit.json")
    html_path = Path(html_path or out_dir / "audit.html")
    ws.write_json(json_path, audit)
    ws.write_jsonl(json_path.parent / "rejects.jsonl", (r.to_json() for r in loaded.rejects))
    if render_html is None:
        return audit, json_path, None
    ws.write_text(html_path, render_html(audit, {r.id: r for r in loaded.records}))
    return audit, json_path, html_path


def _tokenizer(config, project: Path, progress: ProgressFn = no_progress):
    """(the base model's tokenizer, None), or (None, why) when the model cannot be loaded: the audit
    must still run before a model is set up; token lengths then are estimates and say so."""
    from tunewise.assets import AssetMissing
    from tunewise.models.load import ModelError, load_tokenizer, resolve

    try:
        return load_tokenizer(resolve(config.model.base, project, progress)), None
    except (ModelError, AssetMissing, OSError, ValueError) as e:
        return None, f"base model tokenizer unavailable ({str(e).splitlines()[0]}); token lengths are estimates"


def summary_rows(audit: dict) -> list[tuple[str, str, str]]:
    """(check, count, detail) lines for the terminal summary."""
    rows = [("rows", str(audit["rows"]), ", ".join(sorted(set(audit["schemas"].values()))) + " schema"),
            ("rejected", str(len(audit["rejected"])), "malformed rows (see rejects.jsonl)")]
    for name, check in audit["checks"].items():
        detail = check.get("skipped", "")
        if name == "pii":
            detail = ", ".join(f"{t} {n}" for t, n in check["by_type"].items() if n)
        elif name == "class_balance" and "labels" in check:
            detail = f"imbalance ratio {check['imbalance_ratio']}; below {check['min_count']}: {check['below_min']}"
        elif name == "leakage" and "skipped" not in check:
            detail = f"exact {check['exact']}, near {check['near']}"
        elif name == "too_long" and check.get("lengths"):
            detail = f"p50 {check['lengths']['p50']}, max {check['lengths']['max']} tokens ({check['tokenizer']})"
        elif name == "unknown_labels" and check.get("labels"):
            detail = ", ".join(f"{lab!r} {v['rows']}" + (f" (-> {v['nearest']!r})" if v["nearest"] else "")
                               for lab, v in list(check["labels"].items())[:4])
        elif name == "shared_boilerplate" and check.get("note"):
            detail = check["note"]
        elif name == "annotator_agreement" and "kappa" in check:
            detail = f"{check['method']} kappa {check['kappa']}"
        rows.append((name, str(check["count"]), detail))
    return rows
