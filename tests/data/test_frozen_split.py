"""A test split that stays frozen across data versions: appending, inserting and reordering rows never
moves an earlier test row out of test or a trained row into it; review decisions follow their row."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.config import load_config
from tunewise.core import Record
from tunewise.data.frozen import read_ledger
from tunewise.data.load import DataError
from tunewise.data.prepare import _project_records, find_prepared, import_project_review, prepare_project, read_part
from tunewise.data.split import frozen_split, stratified_split

CONFIG = """name: t
task: {{type: classification, input_field: text, target_field: label, labels: [a, b, c]}}
data:
  files: [data/rows.jsonl]
  split: {{train: 0.6, val: 0.2, test: 0.2}}
  seed: {seed}
model: {{base: nowhere/model}}
"""
VOCAB = [f"w{i}x" for i in range(3000)]


def _rows(rng: random.Random, n: int, tag: str) -> list[dict]:
    """Rows of ten random words from a large vocabulary: never near-duplicates of each other."""
    return [{"id": f"{tag}{i}", "text": " ".join(rng.sample(VOCAB, 10)), "label": rng.choice("aabc")}
            for i in range(n)]


def _write(project: Path, rows: list[dict], with_ids: bool, seed: int = 1) -> None:
    (project / "data").mkdir(parents=True, exist_ok=True)
    (project / "tunewise.yaml").write_text(CONFIG.format(seed=seed))
    lines = [json.dumps(r if with_ids else {k: v for k, v in r.items() if k != "id"}) for r in rows]
    (project / "data" / "rows.jsonl").write_text("\n".join(lines) + "\n")


def _parts(project: Path, **kw) -> tuple[dict[str, set[str]], dict]:
    """Each part as the set of row texts (an identity that does not depend on how ids are made)."""
    folder, manifest = prepare_project(load_config(project), project, **kw)
    return {n: {r.input for r in read_part(folder, n)} for n in ("train", "val", "test")}, manifest


SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(seed=st.integers(0, 50), n=st.integers(20, 60), top=st.integers(1, 8), appended=st.integers(0, 30),
       with_ids=st.booleans())
def test_append_insert_and_reorder_never_move_a_row(tmp_path_factory, seed, n, top, appended, with_ids):
    project = tmp_path_factory.mktemp("p")
    rng = random.Random(seed)
    old = _rows(rng, n, "old")
    _write(project, old, with_ids, seed)
    before, _ = _parts(project)
    new = _rows(rng, top + appended, "new")
    shuffled = list(old)
    rng.shuffle(shuffled)
    _write(project, new[:top] + shuffled + new[top:], with_ids, seed)  # lines inserted at the top, reordered, appended
    after, manifest = _parts(project)
    assert before["test"] <= after["test"]
    assert not (before["train"] | before["val"]) & after["test"]
    assert before["train"] <= after["train"] and before["val"] <= after["val"]
    moves = manifest["frozen_split"]["parts"]
    assert moves["test"] == {"kept": len(before["test"]), "new": len(after["test"] - before["test"]), "moved": 0,
                             "absent": 0}
    total = n + top + appended
    for name, share in (("train", 0.6), ("val", 0.2), ("test", 0.2)):  # new rows fill the parts toward the fractions
        assert abs(len(after[name]) - share * total) <= max(2, abs(len(before[name]) - share * n) + 1)


def test_appending_per_label_keeps_the_test_split_and_its_fractions(tmp_path):
    rng = random.Random(7)
    old = _rows(rng, 300, "old")
    _write(tmp_path, old, with_ids=False)
    before, first = _parts(tmp_path)
    assert first["frozen_split"]["fresh"] == "the first split of this project"
    added = [{"text": " ".join(rng.sample(VOCAB, 10)), "label": lab} for lab in "abc" for _ in range(20)]
    _write(tmp_path, old + added, with_ids=False)
    after, manifest = _parts(tmp_path)
    assert before["test"] <= after["test"] and not before["train"] & after["test"]
    assert manifest["frozen_split"]["parts"]["test"]["new"] == len(after["test"]) - len(before["test"]) == 12
    test_labels = Counter(r.target for r in read_part(find_prepared(load_config(tmp_path), tmp_path), "test"))
    assert sum(test_labels.values()) == 72 and min(test_labels.values()) > 0


def test_removed_rows_are_counted_and_a_row_trained_on_never_comes_back_as_test(tmp_path):
    rng = random.Random(3)
    rows = _rows(rng, 40, "r")
    _write(tmp_path, rows, with_ids=True)
    before, _ = _parts(tmp_path)
    trained = sorted(before["train"])[:5]
    _write(tmp_path, [r for r in rows if r["text"] not in trained], with_ids=True)
    _, manifest = _parts(tmp_path)
    assert manifest["frozen_split"]["parts"]["train"]["absent"] == 5
    _write(tmp_path, rows + _rows(rng, 40, "more"), with_ids=True)  # back again, among many new rows
    after, _ = _parts(tmp_path)
    assert set(trained) <= after["train"]


def test_renaming_the_data_file_keeps_the_split(tmp_path):
    rows = _rows(random.Random(5), 40, "r")
    _write(tmp_path, rows, with_ids=False)
    before, _ = _parts(tmp_path)
    (tmp_path / "data" / "rows.jsonl").rename(tmp_path / "data" / "renamed.jsonl")
    (tmp_path / "tunewise.yaml").write_text(CONFIG.format(seed=1).replace("rows.jsonl", "renamed.jsonl"))
    after, manifest = _parts(tmp_path)
    assert after == before and manifest["frozen_split"]["parts"]["test"]["new"] == 0


def test_resplit_and_a_new_seed_split_afresh_and_say_comparisons_are_void(tmp_path):
    rng = random.Random(2)
    rows = _rows(rng, 60, "r")
    _write(tmp_path, rows, with_ids=True)
    _parts(tmp_path)
    old_folder = find_prepared(load_config(tmp_path), tmp_path)
    _write(tmp_path, rows + _rows(rng, 60, "more"), with_ids=True)
    _, kept = _parts(tmp_path)
    assert kept["frozen_split"]["epoch"] == 0 and not kept["frozen_split"]["resplit"]
    result = CliRunner().invoke(app, ["prepare", str(tmp_path), "--resplit"])
    assert result.exit_code == 0, result.output
    assert "fresh split, epoch 1" in result.output and "comparisons with reports on an earlier split are void" in result.output
    manifest = json.loads((find_prepared(load_config(tmp_path), tmp_path) / "manifest.json").read_text())
    assert manifest["frozen_split"]["resplit"] and read_ledger(tmp_path)["epoch"] == 1
    _write(tmp_path, rows, with_ids=True)  # the first version's data again: its dataset is of an earlier epoch
    assert find_prepared(load_config(tmp_path), tmp_path) != old_folder
    _write(tmp_path, rows, with_ids=True, seed=2)
    _, reseeded = _parts(tmp_path)
    assert reseeded["frozen_split"]["fresh"] == "data.seed changed (1 → 2)" and reseeded["frozen_split"]["epoch"] == 2


def test_prepare_prints_kept_new_moved(tmp_path):
    _write(tmp_path, _rows(random.Random(1), 30, "r"), with_ids=True)
    runner = CliRunner()
    assert runner.invoke(app, ["prepare", str(tmp_path)]).exit_code == 0
    _write(tmp_path, _rows(random.Random(1), 30, "r") + _rows(random.Random(9), 10, "n"), with_ids=True)
    result = runner.invoke(app, ["prepare", str(tmp_path)])
    assert result.exit_code == 0 and "test: 6 kept, 2 new, 0 moved" in result.output


def test_a_damaged_ledger_is_a_one_line_error(tmp_path):
    _write(tmp_path, _rows(random.Random(1), 30, "r"), with_ids=True)
    (tmp_path / ".tunewise").mkdir()
    (tmp_path / ".tunewise" / "split-ledger.json").write_text("{not json")
    result = CliRunner().invoke(app, ["prepare", str(tmp_path)])
    assert result.exit_code != 0 and "split-ledger.json: not a readable split ledger" in result.output
    assert "Traceback" not in result.output


# ---------------------------------------------------------------- review decisions follow their row

def test_a_decision_survives_a_line_inserted_above_its_row(tmp_path):
    rows = _rows(random.Random(4), 30, "r")
    _write(tmp_path, rows, with_ids=False)
    records = {r.input: r for r in _project_records(load_config(tmp_path), tmp_path)}
    reviewed = records[rows[10]["text"]]
    csv = tmp_path / "review.csv"
    csv.write_text(f"id,corrected_target\n{reviewed.id},c\n")
    import_project_review(tmp_path, csv, None)
    _write(tmp_path, [{"text": "a brand new first line", "label": "a"}, *rows], with_ids=False)
    folder, manifest = prepare_project(load_config(tmp_path), tmp_path)
    everything = [r for n in ("train", "val", "test") for r in read_part(folder, n)]
    fixed = next(r for r in everything if r.input == rows[10]["text"])
    assert fixed.target == "c" and fixed.meta["original_target"] == rows[10]["label"]
    assert sum("original_target" in r.meta for r in everything) == 1
    assert "name no row" not in manifest["steps"][0]["note"]


def test_a_decision_whose_row_is_gone_is_counted_not_silently_ignored(tmp_path):
    rows = _rows(random.Random(4), 30, "r")
    _write(tmp_path, rows, with_ids=True)
    (tmp_path / "review.csv").write_text("id,corrected_target\nr3,c\n")
    import_project_review(tmp_path, tmp_path / "review.csv", None)
    _write(tmp_path, [r for r in rows if r["id"] != "r3"], with_ids=True)
    _, manifest = prepare_project(load_config(tmp_path), tmp_path)
    assert "1 recorded decisions name no row of this data" in manifest["steps"][0]["note"]


def test_ui_decisions_are_keyed_by_row_identity(tmp_path):
    from tunewise.ui import decisions as dec

    rows = _rows(random.Random(6), 30, "r")
    _write(tmp_path, rows, with_ids=False)
    target = next(r for r in _project_records(load_config(tmp_path), tmp_path) if r.input == rows[5]["text"])
    dec.save_decision(tmp_path, {"id": target.id, "input": target.input, "target": target.target}, "drop", "DROP")
    _write(tmp_path, [*reversed(rows), {"text": "another line on top", "label": "b"}], with_ids=False)
    folder, _ = prepare_project(load_config(tmp_path), tmp_path)
    kept = {r.input for n in ("train", "val", "test") for r in read_part(folder, n)}
    assert rows[5]["text"] not in kept and len(kept) == 30


# ---------------------------------------------------------------- frozen_split alone (fast, many cases)

def _recs(n: int, tag: str, rng: random.Random) -> list[Record]:
    return [Record(f"{tag}{i}", f"text {tag}{i}", rng.choice("abc")) for i in range(n)]


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(10, 200), extra=st.integers(0, 200),
       test=st.sampled_from([0.1, 0.2, 0.3]))
def test_frozen_split_keeps_every_row_and_fills_toward_the_fractions(seed, n, extra, test):
    rng = random.Random(seed)
    fr = {"train": 1 - test - 0.1, "val": 0.1, "test": test}
    old = _recs(n, "o", rng)
    first = stratified_split(old, fr, seed)
    known = {r.id: name for name, rows in first.items() for r in rows}
    recs = old + _recs(extra, "n", rng)
    rng.shuffle(recs)
    parts, dropped = frozen_split(recs, list(range(len(recs))), [], fr, seed, known)
    assert not dropped and sum(map(len, parts.values())) == len(recs)
    for name, rows in parts.items():
        assert {r.id for r in first[name]} <= {r.id for r in rows}
        # within one row of the nearest the kept rows allow
        best = max(len(first[name]), round(fr[name] * len(recs)))
        assert len(rows) <= best + 1


def test_a_new_row_joining_rows_of_two_parts_is_left_out_and_an_edited_leak_loses_its_training_row():
    old = [Record("t", "x t", "a"), Record("r", "x r", "a"), Record("v", "x v", "a")]
    known = {"t": "test", "r": "train", "v": "val"}
    bridge = Record("n", "x n", "a")
    recs = [*old, bridge, Record("m", "x m", "a")]
    groups = [0, 0, 2, 0, 2]  # the new row n is a near-duplicate of both t and r; m of v
    fr = {"train": 0.6, "val": 0.2, "test": 0.2}
    parts, dropped = frozen_split(recs, groups, [(0, 3), (1, 3), (2, 4)], fr, 1, known)
    assert [(r.id, why.split(":")[0]) for r, why in dropped] == [("n", "near-duplicate of rows already in test and train")]
    assert {k: [r.id for r in v] for k, v in parts.items()} == {"train": ["r"], "val": ["m", "v"], "test": ["t"]}
    # an edited row with an id field (or a lower threshold) now links a test row to a training row
    parts, dropped = frozen_split([*old, Record("r2", "y", "a")], [0, 0, 2, 3], [(0, 1)], fr, 1, {**known, "r2": "train"})
    assert [(r.id, why) for r, why in dropped] == [("r", "near-duplicate of test row t, which stays in test")]
    assert [r.id for r in parts["test"]] == ["t"]


def test_a_frozen_part_left_empty_is_a_clear_error():
    with pytest.raises(DataError, match="test split would be empty.*--resplit"):
        frozen_split([Record("a", "x", "a")], [0], [], {"train": 0.8, "val": 0.0, "test": 0.2}, 1, {"a": "train"})


def test_a_command_that_prepares_on_its_own_says_what_the_test_split_kept(tmp_path):
    from tunewise.data.resolve import resolve_splits

    rows = _rows(random.Random(8), 30, "r")
    _write(tmp_path, rows, with_ids=True)
    _parts(tmp_path)
    _write(tmp_path, rows + _rows(random.Random(9), 10, "n"), with_ids=True)
    said: list[str] = []
    splits = resolve_splits(load_config(tmp_path), tmp_path, "tunewise ladder", say=said.append)
    assert said[0].endswith("; test: 6 kept, 2 new, 0 moved") and splits.note == said[0]


def test_without_a_ledger_the_newest_dataset_stands_in_and_a_new_fraction_splits_afresh(tmp_path):
    rows = _rows(random.Random(10), 40, "r")
    _write(tmp_path, rows, with_ids=False)
    before, _ = _parts(tmp_path)
    (tmp_path / ".tunewise" / "split-ledger.json").unlink()  # as after upgrading from a version without one
    _write(tmp_path, [{"text": "a line on top", "label": "a"}, *rows], with_ids=False)
    after, manifest = _parts(tmp_path)
    assert before["test"] <= after["test"] and not before["train"] & after["test"]
    assert manifest["frozen_split"]["note"].startswith("no split ledger yet: started it from dataset")
    (tmp_path / "tunewise.yaml").write_text(CONFIG.format(seed=1).replace("test: 0.2", "test: 0.3")
                                            .replace("train: 0.6", "train: 0.5"))
    result = CliRunner().invoke(app, ["prepare", str(tmp_path)])
    assert result.exit_code == 0 and "fresh split, epoch 1: data.split changed (train 0.6/val 0.2/test 0.2 → " \
        "train 0.5/val 0.2/test 0.3); comparisons with reports on an earlier split are void" in result.output


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(10, 120), extra=st.integers(0, 120), n_groups=st.integers(5, 60))
def test_new_near_duplicates_join_their_group_and_no_group_straddles_parts(seed, n, extra, n_groups):
    from tunewise.data.split import group_stratified_split

    rng = random.Random(seed)
    fr = {"train": 0.7, "val": 0.1, "test": 0.2}
    old, new = _recs(n, "o", rng), _recs(extra, "n", rng)
    group_of = {r.id: rng.randrange(n_groups) for r in old + new}
    first = group_stratified_split(old, [group_of[r.id] for r in old], fr, seed)
    known = {r.id: name for name, rows in first.items() for r in rows}
    recs = old + new
    rng.shuffle(recs)
    parts, dropped = frozen_split(recs, [group_of[r.id] for r in recs], [], fr, seed, known)
    where = {r.id: name for name, rows in parts.items() for r in rows}
    assert not dropped and all(where[i] == part for i, part in known.items())
    for g in set(group_of.values()):
        assert len({where[i] for i, gg in group_of.items() if gg == g}) <= 1
