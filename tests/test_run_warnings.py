"""Everything a run warned about is recorded: in the run's metrics.json, per rung in ladder.json, and in
report.md / report.html — rows dropped by train.length_policy: drop, the overfitting warning, few-shot
examples cut to fit the context."""

from __future__ import annotations

import json
import random

from tiny import TOPICS, WORDS

from tunewise.config import load_config
from tunewise.ladder import run_ladder
from tunewise.train import callbacks


def test_a_rungs_warnings_reach_ladder_json_metrics_and_report(tiny_project, monkeypatch):
    # Long, distinct rows (4 per label) that cannot fit train.max_length: dropped by the length policy.
    rng = random.Random(0)
    rows = tiny_project / "data" / "rows.jsonl"
    long_rows = [{"id": f"long-{label}-{i}", "text": " ".join(rng.choice(WORDS) for _ in range(60)),
                  "label": label} for label in TOPICS for i in range(4)]
    rows.write_text(rows.read_text() + "".join(json.dumps(r) + "\n" for r in long_rows))
    # Overfitting: every evaluation counts as a growing gap (the warning's own rule is tested in
    # test_train_guards); the real callback then words and records it.
    real_check = callbacks.HistoryCallback._check_gap

    def always_growing(self, step, val_loss):
        self._last_gap, self.gap = float("-inf"), float("-inf")
        real_check(self, step, val_loss)

    monkeypatch.setattr(callbacks.HistoryCallback, "_check_gap", always_growing)
    # 30 examples of ~20 tokens each cannot fit the tiny model's 512-token context.
    config = load_config(tiny_project, ["rungs=[few-shot, lora]", "few_shot.k=30", "train.length_policy=drop"])
    report_dir = run_ladder(config, tiny_project)

    ladder = json.loads((report_dir / "ladder.json").read_text())
    few, lora = ladder["rungs"]
    assert len(few["warnings"]) == 1 and "few-shot:" in few["warnings"][0]
    assert "to fit the 5" in few["warnings"][0]  # the budget: 512 tokens less the answer's room
    dropped = [w for w in lora["warnings"] if "train.length_policy=drop" in w]
    assert dropped and "left out" in dropped[0] and "longer than 64 tokens" in dropped[0]
    overfit = [w for w in lora["warnings"] if "overfitting" in w]
    assert overfit and overfit[0].startswith("step ")
    for r in (few, lora):
        saved = json.loads((tiny_project / r["run_dir"] / "metrics.json").read_text())
        assert saved["warnings"] == r["warnings"]
    md = (report_dir / "report.md").read_text()
    html = (report_dir / "report.html").read_text()
    for w in (few["warnings"][0], dropped[0], overfit[0]):
        assert w in md
    assert md.count("**Warnings:**") == 2 and html.count("<b>Warnings:</b>") == 2
    assert "left out" in html and "lost examples" in html


def test_a_rung_without_warnings_shows_none(tiny_project):
    report_dir = run_ladder(load_config(tiny_project, ["rungs=[zero-shot]"]), tiny_project)
    ladder = json.loads((report_dir / "ladder.json").read_text())
    assert ladder["rungs"][0]["warnings"] == []
    assert "Warnings:" not in (report_dir / "report.md").read_text()
