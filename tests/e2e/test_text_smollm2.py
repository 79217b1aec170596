"""Continued pre-training end to end: the real bundled SmolLM2-135M adapted to BBC tech articles (text only)."""

import json
import math
import subprocess
import sys

import pytest

from tunewise.examples import bbc_rows

pytestmark = pytest.mark.e2e


def cli(*args):
    return subprocess.run([sys.executable, "-c", "from tunewise.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=900, check=False)


def test_lora_on_a_text_corpus_lowers_perplexity_and_says_whether_adaptation_paid(tmp_path):
    # A corpus we did not write: BBC tech articles as plain text (the first 60 words of each; no labels).
    rows = [{"id": r["id"], "text": " ".join(r["text"].split()[:60])} for r in bbc_rows() if r["label"] == "tech"][:48]
    project = tmp_path / "corpus"
    (project / "data").mkdir(parents=True)
    (project / "data" / "tech.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (project / "tunewise.yaml").write_text("""name: tech-corpus
task: {type: text}
data: {files: [data/tech.jsonl], split: {train: 0.6, val: 0.1, test: 0.3}, seed: 0}
model: {base: smollm2-135m-instruct}
rungs: [zero-shot, lora]
train: {max_steps: 4, batch_size: 4, learning_rate: 0.002, max_length: 64, eval_steps: 4, tensorboard: false,
        max_val_examples: 2, lora: {r: 8, alpha: 16, dropout: 0.0}}
eval: {batch_size: 8, bootstrap: 500, timing_examples: 0}
""")
    done = cli("ladder", str(project), "-q")
    assert done.returncode == 0, done.stderr[-3000:]
    report_dir = max((project / ".tunewise" / "reports").iterdir())
    ladder = json.loads((report_dir / "ladder.json").read_text())
    assert ladder["primary"] == "perplexity"
    rungs = {r["name"]: r for r in ladder["rungs"]}
    test_ids = {json.loads(line)["id"] for line in (report_dir / "test.jsonl").read_text().splitlines()}
    for r in rungs.values():
        m = r["metrics"]
        lo, hi = m["perplexity_ci"]
        assert math.isfinite(m["perplexity"]) and 1 < lo <= m["perplexity"] <= hi
        # Every rung scored exactly the frozen test split's documents.
        preds = [json.loads(line) for line in (project / r["run_dir"] / "predictions.jsonl").read_text().splitlines()]
        assert {p["id"] for p in preds} == test_ids
    assert rungs["lora"]["metrics"]["perplexity"] < rungs["zero-shot"]["metrics"]["perplexity"]
    assert any("were cut into windows" in w for w in rungs["zero-shot"]["warnings"])  # 60 words > 64 tokens
    rec = ladder["recommendation"]
    assert "domain adaptation" in rec["reason"]
    md = (report_dir / "report.md").read_text()
    assert "perplexity (95% CI)" in md and "domain adaptation" in md
    assert "perplexity" in done.stdout
