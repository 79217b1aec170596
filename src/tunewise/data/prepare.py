"""prepare: apply the config's cleaning policy, split without leakage, and write a versioned dataset.

The output folder is named by a hash of its content, so the same input and config always give the
same folder: ``.tunewise/datasets/<hash>/`` with train/val/test.jsonl, rejects.jsonl, manifest.json
(sources and their hashes, every step with counts, seed, schema) and DATACARD.md. Each step is one
function ``(records, …) -> (kept, dropped, note)``; every dropped row goes to rejects.jsonl with
the reason, so nothing disappears silently.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from tunewise import workspace as ws
from tunewise.config import ProjectConfig
from tunewise.core import ProgressFn, Record, no_progress
from tunewise.data import frozen
from tunewise.data.boilerplate import SHARE, shared_lines
from tunewise.data.dedup import MEASURE, clusters, near_pairs, normalise
from tunewise.data.load import DataError, Reject, content_id, load_files, nearest_label, unusable_hints
from tunewise.data.pii import find_pii, redact
from tunewise.data.review import DROP, export_review, import_review, load_corrections
from tunewise.data.split import by_target, frozen_split, group_stratified_split, no_strata
from tunewise.rungspec import TEXT

Dropped = list[tuple[Record, str]]


# ---------------------------------------------------------------- the steps

def apply_reviews(recs: list[Record], corrections: dict[str, str]) -> tuple[list[Record], Dropped, str]:
    kept, dropped, changed = [], [], 0
    for rec in recs:
        fix = corrections.get(rec.id)
        if fix == DROP:
            dropped.append((rec, "dropped by a reviewer"))
            continue
        if fix is not None and fix != rec.target:
            rec.meta["original_target"], rec.target = rec.target, fix
            changed += 1
        kept.append(rec)
    # A decision whose row is gone (removed, or named by an id this version no longer gives it) is
    # not applied to anything: say how many, never silently.
    stale = len(set(corrections) - {r.id for r in recs})
    return kept, dropped, (f"applied {changed} reviewer corrections of the target and {len(dropped)} removals"
                           + (f"; {stale} recorded decisions name no row of this data" if stale else ""))


def drop_unusable(recs: list[Record], labels: list[str], corpus: bool = False) -> tuple[list[Record], Dropped, str]:
    """``corpus``: a plain-text corpus (task.type text), whose rows are text only: no target is needed,
    and a row that has one is kept with its target unused (the note says how many)."""
    kept, dropped = [], []
    for rec in recs:
        if not rec.input.strip():
            dropped.append((rec, "empty input" if not corpus else "empty text"))
        elif corpus:
            kept.append(rec)
        elif rec.target is None:
            dropped.append((rec, "missing target"))
        elif labels and rec.target not in labels:
            near = nearest_label(rec.target, labels)
            dropped.append((rec, f"label {rec.target!r} is not in task.labels" + (f" (nearest: {near!r})" if near else "")))
        else:
            kept.append(rec)
    if corpus:
        unused = sum(r.target is not None for r in kept)
        return kept, dropped, ("removed rows with an empty text" + (
            f"; {unused} rows have a target, which task.type text neither trains on nor scores (the text is "
            "the input field)" if unused else ""))
    return kept, dropped, "removed rows with an empty input, no target, or a label outside task.labels"


def drop_exact_duplicates(recs: list[Record]) -> tuple[list[Record], Dropped, str]:
    first: dict[tuple, str] = {}
    kept, dropped = [], []
    for rec in recs:
        key = (rec.input, rec.target)
        if key in first:
            dropped.append((rec, f"exact duplicate of row {first[key]}"))
        else:
            first[key] = rec.id
            kept.append(rec)
    return kept, dropped, "kept the first of rows with the same input and target"


def resolve_conflicts(recs: list[Record], policy: str, task_type: str = "classification") -> tuple[list[Record], Dropped, str]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for rec in recs:
        groups[normalise(rec.input)].append(rec)
    bad: dict[str, str] = {}
    for group in groups.values():
        votes = Counter(r.target for r in group).most_common()
        if len(votes) < 2 or policy == "keep":
            continue
        tie = votes[0][1] == votes[1][1]
        for r in group:
            if policy == "drop" or tie:
                bad[r.id] = f"conflicting targets for the same input ({dict(votes)})"
            elif r.target != votes[0][0]:
                bad[r.id] = f"conflicting target; the majority label is {votes[0][0]!r}"
    kept = [r for r in recs if r.id not in bad]
    keep = ("kept rows with the same input and different targets" if task_type == "classification" else
            "kept different answers to one input as alternatives (trained on; all are references in scoring)")
    notes = {"keep": keep,
             "drop": "dropped every row of an input with more than one target",
             "majority": "for inputs with several targets, kept the majority target's rows (all dropped on a tie)"}
    return kept, [(r, bad[r.id]) for r in recs if r.id in bad], notes[policy]


def collapse_near_duplicates(recs: list[Record], threshold: float) -> tuple[list[Record], Dropped, str]:
    pairs = near_pairs([r.input for r in recs], threshold)
    root = clusters(len(recs), [(i, j) for i, j, _ in pairs])
    first: dict[tuple[int, str | None], str] = {}
    kept, dropped = [], []
    for rec, c in zip(recs, root, strict=True):
        key = (c, rec.target)
        if key in first:
            dropped.append((rec, f"near-duplicate of row {first[key]} (Jaccard >= {threshold})"))
        else:
            first[key] = rec.id
            kept.append(rec)
    shared = shared_lines([r.input for r in recs])
    varying = (f", on each input without the {len(shared)} lines shared by at least {SHARE:.0%} of rows "
               f"({sum(len(line.split()) for line in shared)} words: a system prompt or template)" if shared else "")
    return kept, dropped, f"kept one row per near-duplicate cluster ({MEASURE} >= {threshold}{varying}) and target"


def handle_pii(recs: list[Record], policy: str) -> tuple[list[Record], Dropped, str]:
    kept, dropped, touched = [], [], Counter()
    for rec in recs:
        spans = {"input": find_pii(rec.input), "target": find_pii(rec.target or "")}
        types = sorted({s.type for v in spans.values() for s in v})
        if not types:
            kept.append(rec)
            continue
        touched.update(types)
        if policy == "drop":
            dropped.append((rec, f"contains personal data ({', '.join(types)})"))
            continue
        if policy == "redact":
            rec.input = redact(rec.input, spans["input"])
            if rec.target is not None:  # a plain-text row has none, and keeps none
                rec.target = redact(rec.target, spans["target"])
            for msg in rec.meta.get("messages", []):
                msg["content"] = redact(msg["content"])
                for call in msg.get("tool_calls") or []:  # rendered into training text like content
                    fn = call.get("function") or {}
                    args = fn.get("arguments")
                    if args is not None:
                        fn["arguments"] = redact(args if isinstance(args, str) else json.dumps(args, ensure_ascii=False))
            if "rejected" in rec.meta and isinstance(rec.meta["rejected"], str):
                rec.meta["rejected"] = redact(rec.meta["rejected"])
        else:
            rec.meta["pii_warning"] = types
        kept.append(rec)
    verb = {"redact": "replaced with typed placeholders such as [EMAIL]", "drop": "dropped",
            "keep": "kept unchanged with a pii_warning in the row's meta"}[policy]
    return kept, dropped, f"personal data and secrets ({dict(touched) or 'none found'}): rows {verb}"


def handle_too_long(recs: list[Record], max_tokens: int | None, policy: str, tokenizer) -> tuple[list[Record], Dropped, str]:
    if not max_tokens or policy == "keep":
        return recs, [], "no length limit applied"

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenizer else len(text) // 4 + 1

    kept, dropped, cut = [], [], 0
    for rec in recs:
        target = rec.target or ""  # a plain-text row has no target
        if len((rec.input + "\n" + target).encode()) <= max_tokens:  # a token is at least one byte
            kept.append(rec)
            continue
        total = count(rec.input + "\n" + target)
        if total <= max_tokens:
            kept.append(rec)
            continue
        room = max_tokens - count("\n" + target)
        if policy == "truncate" and room > 0:
            if tokenizer:
                ids = tokenizer(rec.input, add_special_tokens=False)["input_ids"][:room]
                rec.input = tokenizer.decode(ids)
            else:
                rec.input = rec.input[: (room - 1) * 4]
            cut += 1
            kept.append(rec)
        else:
            dropped.append((rec, f"too long: {total} tokens > {max_tokens}"))
    return kept, dropped, f"rows over {max_tokens} tokens: {cut} truncated, {len(dropped)} dropped"


def drop_leaks(recs: list[Record], test: list[Record], threshold: float) -> tuple[list[Record], Dropped, str]:
    seen = {normalise(t.input): t.id for t in test}
    bad = {r.id: f"leaks into test row {seen[normalise(r.input)]} (same input)" for r in recs if normalise(r.input) in seen}
    n = len(recs)
    for i, j, sim in near_pairs([r.input for r in recs] + [t.input for t in test], threshold):
        if i < n <= j and recs[i].id not in bad:
            bad[recs[i].id] = f"leaks into test row {test[j - n].id} (Jaccard {sim})"
    kept = [r for r in recs if r.id not in bad]
    return kept, [(r, bad[r.id]) for r in recs if r.id in bad], "removed training rows identical or near-identical to a test row"


# ---------------------------------------------------------------- the whole stage

def source_files(config: ProjectConfig) -> list[str]:
    """Every data file a prepared dataset is built from: data.files, test_file, ood_test, recent_test."""
    d = config.data
    return d.files + [f for f in (d.test_file, d.ood_test, d.recent_test) if f]


def fingerprint(config: ProjectConfig, project: Path, corrections: dict[str, str], epoch: int | None = None) -> str:
    """What a prepared dataset depends on, and nothing else.

    In: the bytes of every source file; how rows are read (task type, input/target fields, labels
    for classification, data.schema, data.id_field); the split (fractions, seed, test_file,
    ood_test, recent_test); the cleaning policy (prepare.*, the near-duplicate threshold, audit.max_tokens and,
    only when that is set, the base model whose tokenizer counts); the reviewers' corrections.
    Out: anything that changes prompts, models or scoring but not the rows (task.instruction,
    task.max_input_tokens, task.json_schema, data.documents, data.annotator_field, train.*, eval.*),
    so editing the instruction keeps the same frozen test split. The split ledger's epoch (``epoch``,
    read from the ledger when None) is in from the first fresh split on, so a dataset made before
    `prepare --resplit` no longer matches.
    """
    epoch = frozen.epoch(project) if epoch is None else epoch
    task, data = config.task, config.data
    parts = {
        "files": {f: ws.sha256_file(Path(project) / f) for f in source_files(config) if (Path(project) / f).is_file()},
        "task": {"type": task.type, "input_field": task.input_field, "target_field": task.target_field,
                 "labels": task.labels if task.type == "classification" else []},
        "data": {"files": data.files, "split": data.split.model_dump(mode="json"), "seed": data.seed,
                 "test_file": data.test_file, "ood_test": data.ood_test, "schema": data.schema_,
                 "id_field": data.id_field, **({"recent_test": data.recent_test} if data.recent_test else {})},
        "prepare": config.prepare.model_dump(mode="json"),
        "audit": {"near": config.audit.near_duplicate_threshold, "near_measure": MEASURE,
                  "max_tokens": config.audit.max_tokens},
        "model": config.model.base if config.audit.max_tokens else None, "corrections": corrections,
        **({"split_epoch": epoch} if epoch else {}),
    }
    return ws.sha256_bytes(json.dumps(parts, sort_keys=True).encode())


def clean(recs: list[Record], config: ProjectConfig, corrections: dict[str, str], tokenizer=None,
          test: list[Record] | None = None, progress: ProgressFn = no_progress) -> tuple[list[Record], list[dict], Dropped]:
    """Run every cleaning step in order; return the kept rows, the step log and the dropped rows."""
    pol, task = config.prepare, config.task
    labels = task.labels if task.type == "classification" else []
    threshold = config.audit.near_duplicate_threshold
    conflicts = pol.conflicts or ("majority" if task.type == "classification" else "keep")
    steps: list[tuple[str, str, object]] = [
        ("reviews", "on" if pol.apply_reviews else "off", lambda r: apply_reviews(r, corrections if pol.apply_reviews else {})),
        ("unusable_rows", "drop", lambda r: drop_unusable(r, labels, task.type == TEXT)),
        ("exact_duplicates", pol.exact_duplicates,
         lambda r: drop_exact_duplicates(r) if pol.exact_duplicates == "drop" else (r, [], "kept exact duplicates")),
        ("conflicting_targets", conflicts, lambda r: resolve_conflicts(r, conflicts, task.type)),
        ("near_duplicates", pol.near_duplicates, lambda r: collapse_near_duplicates(r, threshold)
         if pol.near_duplicates == "collapse" else (r, [], "kept near-duplicates (they still never straddle splits)")),
        ("pii", pol.pii, lambda r: handle_pii(r, pol.pii)),
        ("too_long", pol.too_long, lambda r: handle_too_long(r, config.audit.max_tokens, pol.too_long, tokenizer)),
    ]
    if test:
        steps.append(("leakage", "drop", lambda r: drop_leaks(r, test, threshold)))
    log, dropped = [], []
    title = f"prepare ({len(recs):,} rows)"
    advance = progress(title, len(steps))
    for name, policy, step in steps:
        before = len(recs)
        advance(0, description=f"{title}: {name}")  # the bar names the step it waits on
        recs, lost, note = step(recs)  # type: ignore[operator]
        advance(1, description=title)
        dropped += lost
        log.append({"step": name, "policy": policy, "rows_in": before, "rows_out": len(recs), "dropped": len(lost), "note": note})
    return recs, log, dropped


def split(recs: list[Record], config: ProjectConfig, has_test: bool,
          known: dict[str, str] | None = None) -> tuple[dict[str, list[Record]], Dropped]:
    """Stratified by label (classification only), grouped so near-duplicate clusters stay in one part.

    Free-text targets (generation, extraction) are not strata: each would be a stratum of one row.
    A DataError with the counts is raised when a part whose fraction is above zero would be empty.
    ``known`` (row id → part, from the split ledger) keeps those rows where they were and splits
    only the others (``split.frozen_split``); the rows it had to leave out come back with the reason.
    """
    fr = config.data.split.model_dump()
    if has_test:  # the test split is the given file: share its fraction between train and val
        fr = {"train": fr["train"] / (fr["train"] + fr["val"]), "val": fr["val"] / (fr["train"] + fr["val"])}
    pairs = near_pairs([r.input for r in recs], config.audit.near_duplicate_threshold)
    norm_first: dict[str, int] = {}
    links = [(i, j) for i, j, _ in pairs]
    for i, rec in enumerate(recs):  # identical inputs are one cluster even when too short to shingle
        links.append((norm_first.setdefault(normalise(rec.input), i), i))
    groups = clusters(len(recs), links)
    key = by_target if config.task.type == "classification" else no_strata
    try:
        if known is None:
            return group_stratified_split(recs, groups, fr, config.data.seed, key), []
        known = {i: part for i, part in known.items() if part in fr}
        return frozen_split(recs, groups, links, fr, config.data.seed, known, key)
    except DataError as e:
        raise DataError(f"prepare: {e} (data.split in tunewise.yaml)") from None


def content_hash(parts: dict[str, list[Record]]) -> str:
    h = hashlib.sha256()
    for name in sorted(parts):
        for rec in parts[name]:
            h.update(json.dumps([name, rec.to_json()], sort_keys=True, ensure_ascii=False).encode())
            h.update(b"\n")
    return h.hexdigest()


def _load_recent(config: ProjectConfig, project: Path, tokenizer, rejects: list[Reject],
                 dataset: list[Record]) -> list[Record]:
    """Labelled production rows (data.recent_test), cleaned like a given test file, tagged with their origin.

    A recent row repeating a row of the dataset is dropped (it is not fresh evidence); the dataset's own
    splits are never touched, so the frozen test split stays the same."""
    if not config.data.recent_test:
        return []
    task = config.task
    loaded = load_files([config.data.recent_test], project, task.input_field, task.target_field, None,
                        config.data.id_field, tags=config.data.sharegpt.model_dump())
    keep_near = config.model_copy(update={"prepare": config.prepare.model_copy(update={"near_duplicates": "keep"})})
    recent, _, lost = clean(loaded.records, keep_near, {}, tokenizer)
    recent, seen, _ = drop_leaks(recent, dataset, config.audit.near_duplicate_threshold)
    lost += [(r, why.replace("leaks into test row", "repeats dataset row")) for r, why in seen]
    rejects += loaded.rejects + [_reject(r, f"recent test file: {why}") for r, why in lost]
    for rec in recent:
        rec.meta["split_origin"] = "recent production requests"
    return recent


def _reject(rec: Record, reason: str) -> Reject:
    file, _, line = rec.source.rpartition(":")
    return Reject(file, int(line) if line.isdigit() else 0, f"row {rec.id}: {reason}", rec.input[:500])


def check_sources(config: ProjectConfig, project: Path) -> None:
    """Fail before any work when a data file is missing, naming the key that points at it."""
    keys = [(f"data.files[{i}]", f) for i, f in enumerate(config.data.files)]
    keys += [(k, getattr(config.data, k.split(".")[1])) for k in ("data.test_file", "data.ood_test")]
    for key, name in keys:
        if name and not (Path(project) / name).is_file():
            raise DataError(f"{Path(project) / name}: no such data file ({key} in tunewise.yaml)")


def held_out(config: ProjectConfig, project: Path, key: str, tokenizer) -> tuple[list[Record], list[Reject], list[str]]:
    """A given test or OOD file, cleaned like the data (reviews aside): its rejects say why, by key."""
    name = getattr(config.data, key.split(".")[1])
    task, data = config.task, config.data
    loaded = load_files([name], project, task.input_field, task.target_field, data.schema_, data.id_field,
                        task.type == "extraction", data.sharegpt.model_dump())
    hints = unusable_hints(loaded, task.input_field, task.target_field, task.labels, task_type=task.type)
    keep_near = config.model_copy(update={"prepare": config.prepare.model_copy(update={"near_duplicates": "keep"})})
    recs, steps, dropped = clean(loaded.records, keep_near, {}, tokenizer)
    rejects = loaded.rejects + [_reject(r, f"{key}: {why}") for r, why in dropped]
    if not recs:
        _refuse(project, rejects, f"{name} ({key})", _why_nothing_left(
            len(loaded.records) + len(loaded.rejects), len(loaded.rejects), steps, dropped, hints))
    return sorted(recs, key=lambda r: r.id), rejects, hints


def prepare_project(config: ProjectConfig, project: Path, tokenizer=None, origin: str = "tunewise prepare",
                    progress: ProgressFn = no_progress, resplit: bool = False) -> tuple[Path, dict]:
    """Load, clean, split and write the dataset; return its folder and manifest.

    ``origin`` says what asked for it (the manifest and data card record it): `tunewise prepare`,
    or a command that found no prepared dataset matching its config. Rows split before keep their
    part (the split ledger, ``data.frozen``) unless ``resplit``.
    """
    project = Path(project)
    task, data = config.task, config.data
    check_sources(config, project)
    if config.audit.max_tokens and config.prepare.too_long != "keep" and tokenizer is None:
        from tunewise.data.audit import _tokenizer

        tokenizer, warning = _tokenizer(config, project, progress)
        if warning:
            raise DataError(f"prepare: audit.max_tokens is set but {warning.split(';')[0]}")
    loaded = load_files(data.files, project, task.input_field, task.target_field, data.schema_, data.id_field,
                        task.type == "extraction", data.sharegpt.model_dump())
    hints = unusable_hints(loaded, task.input_field, task.target_field, task.labels, task_type=task.type)
    content = {r.id: content_id(r.input, r.target) for r in loaded.records}  # before cleaning rewrites rows
    n_rows, n_rejected = len(loaded.records) + len(loaded.rejects), len(loaded.rejects)
    test = ood = None
    if data.test_file:
        test, test_rejects, test_hints = held_out(config, project, "data.test_file", tokenizer)
        loaded.rejects += test_rejects
        hints += test_hints
    if data.ood_test:
        ood, ood_rejects, ood_hints = held_out(config, project, "data.ood_test", tokenizer)
        loaded.rejects += ood_rejects
        hints += ood_hints
    corrections = load_corrections(project)
    recs, steps, dropped = clean(loaded.records, config, corrections, tokenizer, test, progress)
    rejects = loaded.rejects + [_reject(r, why) for r, why in dropped]
    if not recs:
        _refuse(project, rejects, ", ".join(data.files), _why_nothing_left(n_rows, n_rejected, steps, dropped, hints))
    # the loading hints already say why rows lack targets; the notes say what the load left out
    hints = (hints or _dropped_hints(n_rows, steps, dropped)) + loaded.notes
    advance = progress("prepare: splitting", 1)
    parts, moves, record_split = _split_frozen(recs, config, project, test is not None, resplit, content, rejects)
    advance(1)
    if test is not None:
        parts["test"] = test
    if ood is not None:
        parts["ood"] = ood
    recent = _load_recent(config, project, tokenizer, rejects, [r for rows in parts.values() for r in rows])
    if recent:
        parts["recent_test"] = sorted(recent, key=lambda r: r.id)
    digest = content_hash(parts)
    manifest = _manifest(config, project, loaded.schemas, steps, parts, rejects, digest, corrections, moves["epoch"])
    folder = ws.workspace(project) / "datasets" / digest[:16]
    manifest["frozen_split"] = _first_record(folder, moves)
    manifest["hints"] = hints
    manifest["fields"] = loaded.uses
    manifest["prepared_by"] = origin
    with ws.atomic_dir(folder) as tmp:
        for name, rows in parts.items():
            ws.write_jsonl(tmp / f"{name}.jsonl", (r.to_json() for r in rows))
        ws.write_jsonl(tmp / "rejects.jsonl", (r.to_json() for r in rejects))
        ws.write_json(tmp / "manifest.json", manifest)
        ws.write_text(tmp / "DATACARD.md", datacard(manifest))
    record_split()  # only once the dataset is written
    return folder, manifest


def _split_frozen(recs: list[Record], config: ProjectConfig, project: Path, has_test: bool, resplit: bool,
                  content: dict[str, str], rejects: list[Reject]) -> tuple[dict[str, list[Record]], dict, Callable]:
    """The split; how it compares with the ledger's (rows kept, new, moved per part; the epoch); and
    the call that records it in the ledger. Rows left out so that no row changes part go to ``rejects``."""
    ledger, say = frozen.read_ledger(project), None
    if ledger is None:  # the first prepare since the ledger exists: say what it started from
        ledger = frozen.ledger_from_dataset(project, config)
        say = ledger and ledger["why"]
    fresh = frozen.fresh_reason(ledger, config, resplit)
    known = {} if fresh else frozen.known_parts(ledger, recs, content)
    parts, left_out = split(recs, config, has_test, None if fresh else known)
    rejects += [_reject(r, why) for r, why in left_out]
    moves = {**frozen.movement(parts, known, None if fresh else ledger, content, len(left_out)),
             "epoch": frozen.next_epoch(ledger, fresh), "fresh": fresh, "resplit": bool(fresh and ledger),
             **({"note": say} if say else {})}
    split_parts = dict(parts)  # the caller adds the given test, ood and recent files, which are not split
    return parts, moves, lambda: frozen.write_ledger(project, ledger, fresh, split_parts, content, config)


def _first_record(folder: Path, moves: dict) -> dict:
    """The same dataset prepared again (same epoch) keeps the record of how its split compared with the
    earlier ones when it was first made (every row is 'kept' the second time), so its files stay identical."""
    try:
        first = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["frozen_split"]
    except (OSError, ValueError, KeyError, TypeError):
        return moves
    return first if isinstance(first, dict) and first.get("epoch") == moves["epoch"] else moves


def _refuse(project: Path, rejects: list[Reject], what: str, why: str) -> None:
    """No dataset folder is written, but the rejects always are: they say what went wrong."""
    where = ws.write_jsonl(ws.new_dir(project, "rejects") / "rejects.jsonl", (r.to_json() for r in rejects))
    raise DataError(f"no usable rows left in {what}: {why}; rejects: {where}")


def _why_nothing_left(n_rows: int, n_rejected: int, steps: list[dict], dropped: Dropped, hints: list[str]) -> str:
    """What removed every row: the rows rejected while loading, the cleaning steps that dropped rows
    with their commonest reasons, then the loading hints (wrong fields, malformed rows)."""
    by_step = ", ".join(f"{s['step']} {s['dropped']}" for s in steps if s["dropped"])
    line = f"{n_rows} rows read, {n_rejected} rejected while loading, {len(dropped)} dropped by cleaning"
    line += f" ({by_step})" if by_step else ""
    reasons = Counter(why for _, why in dropped).most_common(3)
    line += ("; commonest: " + ", ".join(f"{why} ({n})" for why, n in reasons)) if reasons else ""
    return " | ".join([line, *hints])


def _dropped_hints(n_rows: int, steps: list[dict], dropped: Dropped) -> list[str]:
    """A hint when the unusable-rows step dropped most rows (a label spelled unlike task.labels, most
    often). ``dropped`` holds each step's rows in step order."""
    start = 0
    for s in steps:
        if s["step"] == "unusable_rows":
            unusable = [why for _, why in dropped[start:start + s["dropped"]]]
            break
        start += s["dropped"]
    else:
        return []
    if len(unusable) * 2 <= n_rows:
        return []
    common = ", ".join(f"{why} ({n})" for why, n in Counter(unusable).most_common(3))
    return [f"{len(unusable)} of {n_rows} rows dropped as unusable: {common}"]


def _manifest(config, project, schemas, steps, parts, rejects, digest, corrections, epoch) -> dict:
    # Labels are a distribution only for classification; free-text answers are summarised by length.
    labels = ({n: dict(sorted(Counter(r.target for r in rows).items())) for n, rows in parts.items()}
              if config.task.type == "classification" else {})
    return {
        "hash": digest,
        "fingerprint": fingerprint(config, project, corrections, epoch),
        "sources": {f: ws.sha256_file(Path(project) / f) for f in source_files(config)},
        "schema": {f: schemas.get(str(Path(project) / f)) for f in config.data.files},
        "task": config.task.type, "seed": config.data.seed, "split": config.data.split.model_dump(),
        "test_file": config.data.test_file, "ood_test": config.data.ood_test, "recent_test": config.data.recent_test,
        "policy": config.prepare.model_dump(mode="json"),
        "near_duplicate_threshold": config.audit.near_duplicate_threshold, "near_duplicate_measure": MEASURE,
        "max_tokens": config.audit.max_tokens,
        "steps": steps, "reviews_applied": len(corrections) if config.prepare.apply_reviews else 0,
        "counts": {**{n: len(rows) for n, rows in parts.items()}, "rejected": len(rejects)},
        "labels": labels,
        "answer_words": {} if labels or config.task.type == TEXT else {n: _length_stats(rows) for n, rows in parts.items()},
        **({"document_words": {n: _length_stats(rows, "input", "documents") for n, rows in parts.items()}}
           if config.task.type == TEXT else {}),
    }


def _length_stats(rows: list[Record], field: str = "target", what: str = "answers") -> dict:
    """Words per answer, or per document with ``field`` input (characters for scripts written without
    spaces are counted as words)."""
    from tunewise.tokens import words

    sizes = sorted(len(words(getattr(r, field))) for r in rows if getattr(r, field) is not None)
    if not sizes:
        return {what: 0}
    return {what: len(sizes), "min": sizes[0], "median": sizes[len(sizes) // 2],
            "p90": sizes[min(len(sizes) - 1, int(len(sizes) * 0.9))], "max": sizes[-1]}


def datacard(m: dict) -> str:
    """DATACARD.md: each preprocessing step in words, with its counts."""
    lines = [f"# Data card: dataset {m['hash'][:16]}", "",
             f"Task: {m['task']}. Seed {m['seed']}. Content hash (sha256): `{m['hash']}`.", ""]
    if m.get("prepared_by", "tunewise prepare") != "tunewise prepare":
        lines += [f"Prepared automatically by {m['prepared_by']}.", ""]
    lines += ["## Sources", ""]
    lines += [f"- `{f}` (sha256 `{h[:16]}…`, schema {m['schema'].get(f, 'see manifest')})" for f, h in m["sources"].items()]
    lines += ["", "## Preprocessing, in order", ""]
    for i, s in enumerate(m["steps"], start=1):
        lines.append(f"{i}. **{s['step']}** (policy `{s['policy']}`): {s['note']}. "
                     f"{s['rows_in']} rows in, {s['rows_out']} out, {s['dropped']} dropped.")
    split = ("the given test file is the test split; the rest is split into train/val"
             if m["test_file"] else f"train/val/test fractions {m['split']}")
    if m.get("ood_test"):
        split += f"; `{m['ood_test']}` is the out-of-distribution test set (ood), cleaned like the test split"
    strata = "Stratified by label" if m["task"] == "classification" else "Shuffled with the seed (targets are free text)"
    lines += ["", "## Split", "",
              (f"{strata}, grouped so that rows with identical or near-identical inputs "
               f"({m.get('near_duplicate_measure', 'Jaccard')} >= {m['near_duplicate_threshold']}) never straddle "
               f"splits; {split}."), ""]
    lines += [f"- {n}: {c} rows" for n, c in m["counts"].items() if n != "rejected"]
    if m.get("frozen_split"):
        lines += ["", "Against the project's earlier splits (the split ledger, `.tunewise/split-ledger.json`):", ""]
        lines += [f"- {line}" for line in frozen.summary_lines(m["frozen_split"])]
    if m.get("recent_test"):
        lines += ["", f"- recent_test is a separate test split of labelled production requests from "
                  f"`{m['recent_test']}` (exported by `tunewise monitor --export-review`, labelled by a reviewer); "
                  "rows repeating a row of the dataset were left out of it. The frozen test split is unchanged."]
    lines += ["", f"Every removed or malformed row ({m['counts']['rejected']}) is listed with its reason in rejects.jsonl.", ""]
    if m["labels"]:
        lines += ["## Labels per split", ""] + [f"- {n}: {json.dumps(v, ensure_ascii=False)}" for n, v in m["labels"].items()]
    elif m.get("document_words"):  # a plain-text corpus: no answers, documents
        lines += ["## Document length per split (words)", ""] + [
            f"- {n}: {json.dumps(v)}" for n, v in m["document_words"].items()]
    else:
        lines += ["## Answer length per split (words)", ""] + [
            f"- {n}: {json.dumps(v)}" for n, v in m.get("answer_words", {}).items()]
    if m.get("fields"):
        lines += ["", "## Fields", "", "| file | field | rows | used for |", "|---|---|---|---|"]
        lines += [f"| `{f}` | `{name}` | {u['rows']} | {u['use'] or 'ignored'} |"
                  for f, uses in m["fields"].items() for name, u in uses.items()]
    if m.get("hints"):
        lines += ["", "## Notes and hints", ""] + [f"- {h}" for h in m["hints"]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- for the ladder and the CLI

def find_prepared(config: ProjectConfig, project: Path) -> Path | None:
    """The newest dataset folder prepared for this config and data (same fingerprint), or None."""
    root = ws.workspace(project) / "datasets"
    if not root.exists():
        return None
    want = fingerprint(config, project, load_corrections(project))
    for manifest_path in sorted(root.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if manifest.get("fingerprint") == want:
            return manifest_path.parent
    return None


def read_part(folder: Path, name: str) -> list[Record]:
    """One part of a prepared dataset (train, val, test or ood); an absent part is empty."""
    path = Path(folder) / f"{name}.jsonl"
    if not path.exists():
        return []
    return [Record.from_json(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]


def read_rejects(folder: Path) -> list[Reject]:
    path = Path(folder) / "rejects.jsonl"
    return [Reject(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]


def load_prepared(config: ProjectConfig, project: Path):
    """(train, val, test, rejects, hash, folder) of the dataset prepared for this config and data, or None."""
    folder = find_prepared(config, project)
    if folder is None:
        return None
    manifest = json.loads((folder / "manifest.json").read_text())
    parts = [read_part(folder, n) for n in ("train", "val", "test")]
    return (*parts, read_rejects(folder), manifest["hash"], folder)


def _project_records(config: ProjectConfig, project: Path) -> list[Record]:
    task, data = config.task, config.data
    return load_files(data.files, project, task.input_field, task.target_field, data.schema_, data.id_field,
                      task.type == "extraction", data.sharegpt.model_dump()).records


def export_project_review(project: Path, output: Path | None, overrides: list[str] | None,
                          progress: ProgressFn = no_progress, render_html=None) -> tuple[Path, int, Path, bool]:
    """Write the review CSV from the newest audit of this data and config, auditing only when none
    matches; return (csv, rows written, the audit.json used, whether it was reused). ``render_html``:
    as for ``audit_project``, the page written beside an audit made here."""
    from tunewise.config import load_config
    from tunewise.data.audit import audit_project
    from tunewise.data.audit_reuse import audit_fingerprint, latest_matching_audit

    config = load_config(project, overrides)
    found = latest_matching_audit(project, audit_fingerprint(project, config))
    if found:
        audit_file, audit = found
    else:
        audit, audit_file, _ = audit_project(project, overrides=overrides, progress=progress, render_html=render_html)
    path = Path(output or ws.workspace(project) / "reviews" / "review.csv")
    return path, export_review(audit, _project_records(config, project), path), audit_file, found is not None


def import_project_review(project: Path, file: Path, overrides: list[str] | None) -> tuple[int, Path]:
    from tunewise.config import load_config

    config = load_config(project, overrides)
    labels = config.task.labels if config.task.type == "classification" else None
    return import_review(project, file, {r.id for r in _project_records(config, project)}, labels)
