"""Generation and extraction ladders on the tiny model: decoding, metrics, report, and the errors."""

from __future__ import annotations

import json

import pytest

from tunewise.config import ConfigError, load_config
from tunewise.ladder import run_ladder


def _write(folder, model_dir, task: str, extra: str = ""):
    rows = []
    for i, (topic, words) in enumerate([("business", "market shares"), ("sports", "match goal"), ("tech", "phone games")] * 6):
        if task == "generation":
            rows.append({"id": str(i), "input": f"the {words} news", "target": f"{topic} news"})
        else:
            rows.append({"id": str(i), "input": f"the {words} news", "target": json.dumps({"topic": topic, "word": words.split()[0]})})
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "tunewise.yaml").write_text(f"""name: tiny-{task}
task: {{type: {task}, instruction: answer}}
data: {{files: [data/rows.jsonl], split: {{train: 0.6, val: 0.2, test: 0.2}}, seed: 1}}
model: {{base: {model_dir}}}
rungs: [zero-shot, few-shot, lora]
train: {{epochs: 1, batch_size: 4, learning_rate: 0.01, max_length: 64, eval_steps: 2, lora: {{r: 4, alpha: 8, dropout: 0.0}}}}
eval: {{batch_size: 8, bootstrap: 200, max_new_tokens: 6, format: {{max_words: 3}}}}
few_shot: {{k: 2}}
{extra}""")
    return folder


def test_generation_ladder_reports_text_metrics(tmp_path, tiny_model_dir):
    project = _write(tmp_path / "gen", tiny_model_dir, "generation")
    # zero-shot generation is covered by the extraction test; few-shot and LoRA here.
    report_dir = run_ladder(load_config(project), project, ["few-shot", "lora"])
    ladder = json.loads((report_dir / "ladder.json").read_text())
    assert ladder["primary"] == "content_f1"
    for r in ladder["rungs"]:
        m = r["metrics"]
        for key in ("content_f1", "semantic_similarity", "rouge_l", "chrf", "exact_match", "format_compliance"):
            assert key in m and m[f"{key}_ci"] is not None
    # The one comparison (the other rung against the best) is exact McNemar when every item scored 0 or 1
    # (the tiny model's answers), else a paired t on the graded items (report/decide.py).
    tests = [r["paired_vs_best"].get("test") for r in ladder["rungs"]]
    assert tests.count(None) == 1 and [t for t in tests if t][0] in ("mcnemar", "paired-t")
    md = (report_dir / "report.md").read_text()
    assert "rouge_l" in md and "Rungs are ranked on **content_f1**" in md
    # Answers beside references: the worst by the primary metric and the same seeded sample per rung.
    samples = [[e["id"] for e in r["answers"]["sample"]] for r in ladder["rungs"]]
    assert samples[0] == samples[1] and len(samples[0]) == min(5, ladder["n_test"])
    assert md.count("A seeded random sample") == 2 and "Answers beside the reference" in (report_dir / "report.html").read_text()
    rec = ladder["recommendation"]  # a handful of test rows: withheld, naming the better-scoring rung
    assert rec["rung"] in {"few-shot", "lora"} or (rec.get("withheld") and rec["provisional"] in {"few-shot", "lora"})


def test_extraction_ladder_reports_json_metrics(tmp_path, tiny_model_dir):
    project = _write(tmp_path / "ext", tiny_model_dir, "extraction", "")
    (project / "schema.json").write_text(json.dumps({"type": "object", "required": ["topic"]}))
    config = load_config(project, ["task.json_schema=schema.json"])
    report_dir = run_ladder(config, project, ["zero-shot"])
    m = json.loads((report_dir / "ladder.json").read_text())["rungs"][0]["metrics"]
    assert {"json_valid_rate", "field_precision", "field_recall", "field_f1", "hallucination_rate"} <= set(m)


def test_extraction_without_schema_names_the_key(tmp_path, tiny_model_dir):
    project = _write(tmp_path / "ext", tiny_model_dir, "extraction")
    with pytest.raises(ConfigError, match=r"tunewise.yaml: missing required key 'task.json_schema'"):
        run_ladder(load_config(project), project, ["zero-shot"])


@pytest.mark.parametrize("method", ["prefix", "prompt-tuning"])
def test_prompt_learning_methods_generate_on_generation_tasks(tmp_path, tiny_model_dir, method):
    # They once trained to the end and then failed scoring an empty label list.
    project = _write(tmp_path / "gen", tiny_model_dir, "generation")
    config = load_config(project, ["train.max_steps=2", "train.num_virtual_tokens=2"])
    report_dir = run_ladder(config, project, [method])
    rung = json.loads((report_dir / "ladder.json").read_text())["rungs"][0]
    assert rung["name"] == method and rung["metrics"]["rouge_l_ci"] is not None
    lines = (project / rung["run_dir"] / "predictions.jsonl").read_text().splitlines()
    preds = [json.loads(line) for line in lines]
    assert len(preds) == json.loads((report_dir / "ladder.json").read_text())["n_test"]
    assert all(isinstance(p["output"], str) for p in preds)
