"""A rung's latency is the test pass's own batches (rungs.base.BatchClock): no second pass re-measures
what the pass already timed; a rung that predicts in too few batches is timed on the seeded sample."""

from __future__ import annotations

import json

from tiny import write_tiny_project

from tunewise.config import load_config
from tunewise.core import no_progress
from tunewise.ladder import run_ladder
from tunewise.rungs.base import BatchClock


def test_the_clock_times_every_reported_batch():
    clock = BatchClock()
    advance = clock.wrap(no_progress)("scoring", 10)
    for _ in range(5):
        advance(2)
    advance(0)  # a tick without examples is no batch
    summary = clock.summary()
    assert (summary["batches"], summary["examples"], summary["source"]) == (5, 10, "test pass")
    assert summary["q1_ms"] <= summary["median_ms"] <= summary["q3_ms"]
    one_call = BatchClock()
    one_call.wrap(no_progress)("scoring", 3)(3)
    assert one_call.summary() is None


def test_an_llm_rung_is_timed_on_its_test_batches_without_a_timing_pass(tmp_path, tiny_model_dir, monkeypatch):
    from tunewise.rungs import base

    timed_again = []
    real = base.time_predict
    monkeypatch.setattr(base, "time_predict", lambda rung, *a: timed_again.append(rung.name) or real(rung, *a))
    project = write_tiny_project(tmp_path / "p", tiny_model_dir,
                                 extra="eval: {batch_size: 2, timing_examples: 4, timing_repeats: 2}\n")
    report = run_ladder(load_config(project), project, ["zero-shot"])
    rung = json.loads((report / "ladder.json").read_text())["rungs"][0]
    n_test = len((report / "test.jsonl").read_text().splitlines())
    assert timed_again == []
    assert rung["latency"]["source"] == "test pass"
    assert rung["latency"]["batches"] == -(-n_test // 2) and rung["latency"]["examples"] == n_test
    # Fewer batches than the clock needs: the seeded timing sample is predicted again, as before.
    config = load_config(project).model_copy(deep=True)
    config.eval.batch_size = 64
    rung = json.loads((run_ladder(config, project, ["zero-shot"], fresh=True) / "ladder.json").read_text())["rungs"][0]
    assert timed_again == ["zero-shot"] and rung["latency"]["source"] == "timing sample"
    assert rung["latency"]["repeats"] == 2
