"""resolve_splits: every command gets the prepared dataset, prepares one when none matches (and says
so), honours data.test_file and data.ood_test, and refuses an empty test split before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from planted_data import build
from typer.testing import CliRunner

from tunewise.config import load_config
from tunewise.data.load import DataError
from tunewise.data.prepare import prepare_project
from tunewise.data.resolve import resolve_splits


@pytest.fixture
def project(tmp_path, tiny_model_dir):
    return build(tmp_path / "p", tiny_model_dir)


def cli(*args: str):
    from tunewise.cli import app

    return CliRunner().invoke(app, list(args))


def small_project(folder: Path, rows: list[dict], task: str, extra: str = "") -> Path:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "tunewise.yaml").write_text(f"task: {task}\ndata:\n  files: [data/rows.jsonl]\n{extra}"
                                          "model: {base: smollm2-135m-instruct}\n")
    return folder


def test_no_matching_dataset_is_prepared_said_and_recorded(project):
    said: list[str] = []
    splits = resolve_splits(load_config(project), project, "tunewise ladder", say=said.append)
    assert len(said) == 1 and said[0].startswith("no prepared dataset matches this config; prepared ")
    assert splits.auto_prepared and splits.note == said[0] and str(splits.dataset_dir) in said[0]
    assert said[0].endswith("; fresh split, epoch 0: the first split of this project")
    assert splits.record()["frozen_split"]["epoch"] == 0
    manifest = json.loads((splits.dataset_dir / "manifest.json").read_text())
    assert "tunewise ladder" in manifest["prepared_by"] == splits.record()["prepared_by"]
    assert "Prepared automatically by `tunewise ladder`" in (splits.dataset_dir / "DATACARD.md").read_text()
    # The raw-data fallback skipped all of this: the given test file, redaction, dedup, leak removal.
    assert {r.id for r in splits.test} == {"t0", "t1", "t2", "t3", "t4"}
    texts = " ".join(r.input for r in splits.train + splits.val)
    assert "jane.doe@example.org" not in texts and "[EMAIL]" in texts
    assert not {r.id for r in splits.train + splits.val} & {"dup0", "dup1", "dup2", "near0", "near1"}
    again = resolve_splits(load_config(project), project, say=said.append)
    assert len(said) == 1 and not again.auto_prepared and again.dataset_dir == splits.dataset_dir
    assert again.test_hash == splits.test_hash


def test_a_changed_instruction_keeps_the_prepared_dataset(project):
    folder, _ = prepare_project(load_config(project), project)
    changed = load_config(project, ["task.instruction=Answer with one topic word.", "task.max_input_tokens=64"])
    splits = resolve_splits(changed, project, say=pytest.fail)
    assert splits.dataset_dir == folder and not splits.auto_prepared
    data_change = load_config(project, ["prepare.pii=keep"])  # this one does change the rows
    said: list[str] = []
    assert resolve_splits(data_change, project, say=said.append).dataset_dir != folder and len(said) == 1


def test_ood_rows_are_cleaned_and_unknown_labels_recorded(project):
    ood = [{"id": "o1", "text": "mail me at jane.doe@example.org about the match", "label": "sports"},
           {"id": "o2", "text": "the market and the bank", "label": "finance"},
           {"id": "o3", "text": "a new phone and laptop", "label": "tech"}]
    (project / "data" / "ood.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ood))
    splits = resolve_splits(load_config(project, ["data.ood_test=data/ood.jsonl"]), project, say=lambda _: None)
    assert [r.id for r in splits.ood] == ["o1", "o3"] and "[EMAIL]" in splits.ood[0].input
    (reject,) = [r for r in splits.rejects if "o2" in r.reason]
    assert "data.ood_test: label 'finance' is not in task.labels" in reject.reason
    assert (splits.dataset_dir / "ood.jsonl").exists() and splits.record()["counts"]["ood"] == 2


def test_generation_with_unique_targets_gets_every_split(tmp_path):
    rows = [{"input": f"question {i} about item {i * 7}", "target": f"answer {i} is {i * 3}"} for i in range(40)]
    project = small_project(tmp_path, rows, "{type: generation}")
    splits = resolve_splits(load_config(project), project, say=lambda _: None)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (32, 4, 4)
    sub = resolve_splits(load_config(project, ["eval.max_test_examples=2"]), project, say=pytest.fail)
    assert len(sub.test) == 2 and {r.id for r in sub.test} <= {r.id for r in splits.test}


def test_a_tiny_file_with_a_tiny_test_fraction_still_has_a_test_row(tmp_path):
    rows = [{"input": f"row {i} says {'good' if i % 2 else 'bad'} thing {i * 13}", "target": ["pos", "neg"][i % 2]}
            for i in range(40)]
    project = small_project(tmp_path, rows, "{type: classification, labels: [pos, neg]}",
                            "  split: {train: 0.97, val: 0, test: 0.03}\n")
    result = cli("prepare", str(project))
    assert result.exit_code == 0, result.output
    assert "train 39, val 0, test 1," in result.output  # was: test 0, and the ladder scored nothing


def test_too_little_data_is_refused_with_the_counts(tmp_path):
    rows = [{"input": "one row", "target": "a"}, {"input": "another row", "target": "b"}]
    project = small_project(tmp_path, rows, "{type: generation}")
    result = cli("prepare", str(project))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "cannot split 2 rows into train/val/test = 0.8/0.1/0.1 without an empty part" in result.output
    with pytest.raises(DataError, match="no prepared dataset matches this config and preparing one failed"):
        resolve_splits(load_config(project), project)
    assert not (project / ".tunewise" / "datasets").exists() or not any((project / ".tunewise" / "datasets").iterdir())


def test_an_empty_test_split_is_refused_before_any_work(tiny_project):
    folder, _ = prepare_project(load_config(tiny_project), tiny_project)
    (folder / "test.jsonl").write_text("")  # as an older prepare wrote it
    with pytest.raises(DataError, match=r"the test split is empty \(train 36, val 12, test 0\)"):
        resolve_splits(load_config(tiny_project), tiny_project)
    result = cli("ladder", str(tiny_project), "-q")
    assert result.exit_code == 1 and "test split is empty" in result.output
    assert "nan" not in result.output and "Traceback" not in result.output
    assert not (tiny_project / ".tunewise" / "runs").exists() and not (tiny_project / ".tunewise" / "reports").exists()


def test_a_missing_test_file_names_its_own_key(project):
    (project / "data" / "test.jsonl").unlink()
    with pytest.raises(DataError, match=r"test.jsonl: no such data file \(data.test_file in tunewise.yaml\)"):
        resolve_splits(load_config(project), project)
