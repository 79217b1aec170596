import json

from tunewise.config import load_config
from tunewise.ladder import run_ladder


def test_ladder_on_tiny_model_writes_report(tiny_project):
    config = load_config(tiny_project)
    report_dir = run_ladder(config, tiny_project)
    ladder = json.loads((report_dir / "ladder.json").read_text())
    assert [r["name"] for r in ladder["rungs"]] == ["zero-shot", "lora"]
    assert ladder["n_test"] == 12
    for r in ladder["rungs"]:
        lo, hi = r["metrics"]["accuracy_ci"]
        assert lo <= r["metrics"]["accuracy"] <= hi
    assert (report_dir / "report.md").read_text().count(ladder["test_hash"]) == 1
    assert ladder["recommendation"]["rung"] in {"zero-shot", "lora"}
