"""`tunewise curve` end to end on real BBC articles and the bundled MiniLM (seconds, no LLM)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.e2e


def test_curve_on_bbc_articles_with_minilm(tmp_path):
    pytest.importorskip("sentence_transformers")
    from tunewise.cli import app
    from tunewise.examples import bbc_rows

    by_label: dict[str, list[dict]] = {}
    for r in bbc_rows():
        by_label.setdefault(r["label"], []).append(r)
    picked = [r for label in sorted(by_label) for r in by_label[label][:24]]  # 120 articles
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in picked))
    (tmp_path / "tunewise.yaml").write_text("""name: bbc-curve
task: {type: classification, input_field: text, target_field: label,
       labels: [business, entertainment, politics, sports, tech]}
data: {files: [data/a.jsonl], split: {train: 0.6, val: 0.05, test: 0.35}, seed: 0}
model: {base: smollm2-135m-instruct}
encoder: {model: all-minilm-l6-v2, max_seq_length: 64, batch_size: 32}
eval: {bootstrap: 200}
labeling: {usd_per_row: 0.4}
""")
    result = CliRunner().invoke(app, ["curve", str(tmp_path), "--rungs", "embedding-classifier",
                                      "--sizes", "5,15,40,70", "-q"])
    assert result.exit_code == 0, result.output
    folder = max((tmp_path / ".tunewise" / "curves").iterdir())
    curve = json.loads((folder / "curve.json").read_text())
    (emb,) = curve["rungs"]
    values = {p["n"]: p["value"] for p in emb["points"]}
    assert sorted(values) == [5, 15, 40, 70]
    # One article per topic is a weak classifier; 70 articles make a good one on frozen MiniLM features.
    assert values[70] >= 0.8 and values[70] > values[5]
    assert emb["fit"]["ok"] or "flat" in emb["fit"]["reason"] or "identifiable" in emb["fit"]["reason"]
    if emb["fit"]["ok"]:
        lo, hi = emb["projection"]["gain_ci"]
        assert lo <= emb["projection"]["gain"] <= hi
    assert (folder / "curve.html").exists() and curve["advice"]
