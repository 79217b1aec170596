"""Every rung x task type: it runs, or it is refused before any work with one line naming the key."""

from __future__ import annotations

import json
import typing

import pytest

from tunewise.config import ConfigError, RungName, load_config
from tunewise.ladder import check_rungs, run_ladder
from tunewise.rungspec import NAMES
from tunewise.rungspec import RUNGS as TABLE
from tunewise.train.methods import MethodError

RUNGS = typing.get_args(RungName)
TASKS = ("classification", "extraction", "generation", "text")
# The words of the refusal for a need the matrix's projects lack (they have the bundled encoder and
# labelled rows, no documents, no preference data).
MISSING = {"documents": "data.documents", "preference": "needs preference data",
           "unpaired-preference": "needs unpaired preference data"}


def test_the_config_accepts_exactly_the_table_of_rungs():
    assert RUNGS == NAMES


def refusal(rung: str, task: str) -> str | None:
    """What the matrix expects from the rung's entry in the table of rungs: the words of the refusal,
    or None when the rung runs."""
    spec = TABLE[rung]
    if task not in spec.task_types:
        return f"needs task.type: {' or '.join(sorted(spec.task_types))}"
    return next((MISSING[n] for n in MISSING if n in spec.needs), None)


def write_project(folder, model_dir, task: str):
    rows = []
    for i, (topic, words) in enumerate([("business", "market shares"), ("sports", "match goal"), ("tech", "phone games")] * 5):
        if task == "text":  # a plain-text corpus: rows of text only
            rows.append({"id": str(i), "text": f"the {words} news about {topic}"})
            continue
        target = {"classification": topic, "generation": f"{topic} news",
                  "extraction": json.dumps({"topic": topic})}[task]
        rows.append({"id": str(i), "input": f"the {words} news", "target": target})
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "schema.json").write_text(json.dumps({"type": "object", "required": ["topic"]}))
    labels = "labels: [business, sports, tech]" if task == "classification" else ""
    schema = "json_schema: schema.json" if task == "extraction" else ""
    (folder / "tunewise.yaml").write_text(f"""name: matrix
task: {{type: {task}, instruction: answer, {labels}{', ' if labels and schema else ''}{schema}}}
data: {{files: [data/rows.jsonl], split: {{train: 0.6, val: 0.2, test: 0.2}}, seed: 1}}
model: {{base: {model_dir}}}
train: {{max_steps: 1, batch_size: 4, learning_rate: 0.01, max_length: 64, eval_steps: 1, num_virtual_tokens: 2,
         lora: {{r: 2, alpha: 4, dropout: 0.0}}, tensorboard: false}}
eval: {{batch_size: 8, bootstrap: 100, max_new_tokens: 4}}
few_shot: {{k: 1}}
encoder: {{epochs: 0.2}}
""")
    return folder


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("rung", RUNGS)
def test_every_combination_is_decided_before_any_work(tmp_path, tiny_model_dir, rung, task):
    project = write_project(tmp_path, tiny_model_dir, task)
    config = load_config(project)
    expected = refusal(rung, task)
    if expected is None:
        check_rungs([rung], config, project)
        return
    with pytest.raises((ConfigError, MethodError)) as err:
        check_rungs([rung], config, project)
    message = str(err.value)
    assert expected in message and "\n" not in message


# The combinations the matrix accepts and no other test runs end to end: trained rungs on text tasks.
@pytest.mark.parametrize(("rung", "task"), [("full", "generation"), ("dora", "extraction"), ("ia3", "generation")])
def test_accepted_text_task_combinations_run(tmp_path, tiny_model_dir, rung, task):
    project = write_project(tmp_path, tiny_model_dir, task)
    report_dir = run_ladder(load_config(project), project, [rung])
    result = json.loads((report_dir / "ladder.json").read_text())["rungs"][0]
    assert result["name"] == rung and result["metrics"]


def test_a_dpo_rung_reads_its_preference_file_from_the_project_not_the_working_folder(tiny_project, tmp_path,
                                                                                      monkeypatch):
    rows = [{"prompt": f"the {w} news", "chosen": good, "rejected": bad}
            for w, good, bad in [("market", "business", "sports"), ("match", "sports", "tech"),
                                 ("phone", "tech", "business"), ("bank", "business", "tech")] * 2]
    (tiny_project / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the relative path must not be read from here
    config = load_config(tiny_project, ["train.dpo.data=prefs.jsonl", "train.max_steps=1", "train.eval_steps=1"])
    report_dir = run_ladder(config, tiny_project, ["dpo"])
    ladder = json.loads((report_dir / "ladder.json").read_text())
    assert ladder["status"] == "complete" and ladder["rungs"][0]["name"] == "dpo"
