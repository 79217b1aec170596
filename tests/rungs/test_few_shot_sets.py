"""Few-shot as a distribution over example sets, and contextual calibration, on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from tiny import write_tiny_project

from tunewise.config import load_config
from tunewise.core import Record
from tunewise.ladder import load_splits
from tunewise.rungs.prompting import CONTENT_FREE, example_sets
from tunewise.rungs.table import build_rung


@pytest.fixture
def project(tmp_path, tiny_model_dir):
    return write_tiny_project(tmp_path / "proj", tiny_model_dir, extra="few_shot: {k: 3, max_example_tokens: 8}\n")


def _fit(name, project, tmp_path, overrides=()):
    config = load_config(project, list(overrides))
    splits = load_splits(config, project)
    rung = build_rung(name, config, project, tmp_path / name, lambda d, t: (lambda n, **fields: None))
    return rung.fit(splits.train, splits.val), splits


def test_example_sets_differ_and_do_not_end_on_the_same_label():
    pool = [Record(str(i), f"x{i}", lab) for i, lab in enumerate(["a", "b", "c"] * 10)]
    sets = example_sets(pool, 3, 0, 3)
    assert len({tuple(s) for s in sets}) == 3
    assert len({pool[s[-1]].target for s in sets}) == 3  # three labels: three different last labels
    assert all(sorted(pool[i].target for i in s) == ["a", "b", "c"] for s in sets)  # still balanced


def test_few_shot_scores_every_set_and_restores_the_first(project, tmp_path):
    few, splits = _fit("few-shot", project, tmp_path)
    assert len(few.sets) == 3 and few.fixed == few.sets[0]
    draws = few.predict_draws(splits.test[:6])
    assert [seed for seed, _, _ in draws] == [1, 2] and [s for _, s, _ in draws] == few.sets[1:]
    assert few.fixed == few.sets[0]
    one, _ = _fit("few-shot", project, tmp_path / "one", ["few_shot.sets=1"])
    assert one.predict_draws(splits.test[:6]) == []


@pytest.mark.parametrize("name", ["zero-shot", "few-shot"])
def test_calibration_makes_content_free_inputs_uniform(name, project, tmp_path):
    rung, splits = _fit(name, project, tmp_path, ["few_shot.calibrate=true"])
    assert rung.prior is not None and sum(rung.prior) == pytest.approx(1.0)
    labels = rung.config.task.labels
    cf = rung.predict([Record(f"cf{i}", t, None) for i, t in enumerate(CONTENT_FREE)])
    mean = softmax(np.array([[p.scores[lab] for lab in labels] for p in cf]), axis=1).mean(0)
    # Dividing out the prior leaves the content-free inputs near uniform (exactly, for their mean in log space).
    assert np.abs(mean - 1 / len(labels)).max() < np.abs(np.array(rung.prior) - 1 / len(labels)).max() + 1e-9
    raw, _ = _fit(name, project, tmp_path / "raw", ["few_shot.calibrate=false"])
    assert raw.prior is None
    row = splits.test[:1]
    assert rung.predict(row)[0].scores != raw.predict(row)[0].scores
