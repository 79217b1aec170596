"""The encoder rungs on the real bundled MiniLM and 60 real BBC articles (seconds, no LLM)."""

from __future__ import annotations

import json

import pytest

from tunewise.config import load_config
from tunewise.ladder import run_ladder

pytestmark = pytest.mark.e2e


def test_minilm_rungs_on_bbc_articles(tmp_path):
    pytest.importorskip("sentence_transformers")
    from tunewise.examples import bbc_rows

    rows = bbc_rows()
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    picked = [r for label in sorted(by_label) for r in by_label[label][:12]]  # 60 articles
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in picked))
    (tmp_path / "tunewise.yaml").write_text("""name: bbc-minilm
task: {type: classification, input_field: text, target_field: label,
       labels: [business, entertainment, politics, sports, tech]}
data: {files: [data/a.jsonl], split: {train: 0.5, val: 0.1, test: 0.4}, seed: 0}
model: {base: smollm2-135m-instruct}
encoder: {model: all-minilm-l6-v2, max_seq_length: 64, batch_size: 16, epochs: 2, learning_rate: 2.0e-4}
eval: {bootstrap: 200}
""")
    config = load_config(tmp_path)
    report_dir = run_ladder(config, tmp_path, ["embedding-classifier", "encoder-finetune"])
    ladder = json.loads((report_dir / "ladder.json").read_text())
    by = {r["name"]: r for r in ladder["rungs"]}
    assert 20 <= ladder["n_test"] <= 28
    # Frozen MiniLM features separate BBC topics well even from 30 training articles.
    assert by["embedding-classifier"]["metrics"]["accuracy"] >= 0.7
    # Fine-tuned on 30 articles for 2 epochs it must beat chance (1 in 5) beyond doubt, not just by luck.
    from scipy.stats import binomtest

    m = by["encoder-finetune"]["metrics"]
    right = round(m["accuracy"] * ladder["n_test"])
    assert binomtest(right, ladder["n_test"], 0.2, alternative="greater").pvalue < 0.01, m["accuracy"]
    assert (report_dir / "report.html").exists()
