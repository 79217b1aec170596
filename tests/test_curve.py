"""`tunewise curve` on tiny config-built models, and the curve fit on synthetic points."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny import write_tiny_project
from typer.testing import CliRunner

from tunewise.config import load_config
from tunewise.data.split import stratified_order
from tunewise.evaluate.learning_curve import MIN_SIZES, fit_curve, power_law


def _items(sizes, params, n_items, seed):
    rng = np.random.default_rng(seed)
    p = power_law(sizes, *params)
    return (rng.random((len(sizes), n_items)) < p[:, None]).astype(float)


def test_fit_recovers_a_known_curve_and_its_band_covers_the_truth():
    sizes = [25, 50, 100, 200, 400, 800]
    truth = (0.9, 1.5, 0.6)
    fit = fit_curve(sizes, _items(sizes, truth, 3000, 0), resamples=300, seed=0)
    assert fit.ok, fit.reason
    value, lo, hi = fit.at(1600)
    true_value = float(power_law(1600, *truth))
    assert lo <= true_value <= hi
    assert abs(value - true_value) < 0.02
    gain, glo, ghi = fit.gain(800, 1600)
    assert glo <= gain <= ghi and gain > 0


def test_too_few_sizes_or_a_flat_curve_are_not_extrapolated():
    few = fit_curve([50, 100, 200], _items([50, 100, 200], (0.9, 1.5, 0.6), 500, 1))
    assert not few.ok and "not identifiable" in few.reason and str(MIN_SIZES) in few.reason
    sizes = [25, 50, 100, 200]
    flat = fit_curve(sizes, (np.random.default_rng(2).random((4, 300)) < 0.7).astype(float))
    assert not flat.ok and flat.reason.startswith("flat")
    assert flat.to_json() == {"ok": False, "reason": flat.reason}


def _run_items(sizes, params, n_items, runs, run_sd, seed):
    """(sizes, runs, items): each training run lands off the curve by its own offset (sd ``run_sd``)."""
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0, run_sd, (len(sizes), runs))
    prob = np.clip(power_law(sizes, *params)[:, None, None] + offsets[:, :, None], 0, 1)
    return (rng.random((len(sizes), runs, n_items)) < prob).astype(float)


def test_the_band_includes_the_spread_between_training_runs():
    sizes, truth = [25, 50, 100, 200, 400, 800], (0.9, 1.5, 0.6)
    steady = fit_curve(sizes, _run_items(sizes, truth, 4000, 3, 0.0, 0), resamples=300, seed=0)
    noisy = fit_curve(sizes, _run_items(sizes, truth, 4000, 3, 0.04, 0), resamples=300, seed=0)
    assert steady.ok and noisy.ok and noisy.seeds == 3

    def width(fit):
        return float(np.mean([hi - lo for lo, hi in fit.value_ci]))

    # Runs that disagree widen each point's interval and the band; the test items alone would not.
    assert width(noisy) > 2 * width(steady), (width(noisy), width(steady))
    _, lo_n, hi_n = noisy.at(1600)
    _, lo_s, hi_s = steady.at(1600)
    assert hi_n - lo_n > hi_s - lo_s


def test_a_fit_whose_bootstrap_refits_fail_has_no_band_and_says_so(monkeypatch):
    import tunewise.evaluate.learning_curve as lc

    real, calls = lc.fit_power_law, iter(range(10 ** 6))
    # The fit on the measured points converges; every bootstrap refit fails.
    monkeypatch.setattr(lc, "fit_power_law", lambda s, v: real(s, v) if next(calls) == 0 else None)
    sizes = [25, 50, 100, 200, 400, 800]
    fit = lc.fit_curve(sizes, _items(sizes, (0.9, 1.5, 0.6), 3000, 0), resamples=200, seed=0)
    assert not fit.ok and "0 of 200 bootstrap refits converged" in fit.reason and "no band" in fit.reason
    calls = iter(range(10 ** 6))
    emb = next(r for r in _analysed(0.5, None)["rungs"] if r["name"] == "embedding-classifier")
    assert emb["band"] is None and "bootstrap refits converged" in emb["no_band"] and not emb["fit"]["ok"]
    assert "projection" not in emb


def test_nested_subsets_are_stratified_supersets(tiny_project):
    from tunewise.data.resolve import resolve_splits

    config = load_config(tiny_project)
    train = resolve_splits(config, tiny_project).train
    order = stratified_order(train, seed=3)
    assert sorted(r.id for r in order) == sorted(r.id for r in train)
    for n in (3, 6, 12, 24):
        counts = {lab: sum(r.target == lab for r in order[:n]) for lab in config.task.labels}
        assert max(counts.values()) - min(counts.values()) <= 1, counts  # the tiny data is balanced
    assert stratified_order(train, seed=3) == order and stratified_order(train, seed=4) != order


@pytest.fixture
def curve_project(tmp_path, tiny_model_dir, tiny_encoder_dir):
    extra = f"encoder: {{model: {tiny_encoder_dir}}}\nlabeling: {{usd_per_row: 0.5}}\n"
    return write_tiny_project(tmp_path / "proj", tiny_model_dir, n_per_label=30, extra=extra)


def test_curve_command_writes_curve_json_and_the_ladder_report_section(curve_project):
    from tunewise.cli import app

    runner = CliRunner()
    ladder = runner.invoke(app, ["ladder", str(curve_project), "--rungs", "zero-shot", "-q"])
    assert ladder.exit_code == 0, ladder.output
    result = runner.invoke(app, ["curve", str(curve_project), "--rungs", "zero-shot,embedding-classifier",
                                 "--sizes", "6,12,24,48", "--more", "20", "-q"])
    assert result.exit_code == 0, result.output
    folder = max((curve_project / ".tunewise" / "curves").iterdir())
    curve = json.loads((folder / "curve.json").read_text())
    by = {r["name"]: r for r in curve["rungs"]}
    assert (folder / "curve.md").exists() and 'id="learning-curve"' in (folder / "curve.html").read_text()
    assert [p["n"] for p in by["embedding-classifier"]["points"]] == [6, 12, 24, 48]
    # Three training runs per size of a trained rung (curve.seeds), each kept; the prompting rung once.
    assert curve["seeds"] == 3 and by["embedding-classifier"]["fit"]["seeds"] == 3
    assert all([r["seed"] for r in p["runs"]] == [0, 1, 2] for p in by["embedding-classifier"]["points"])
    assert "runs" not in by["zero-shot"]["points"][0]
    assert [p["n"] for p in by["zero-shot"]["points"]] == [curve["n_train"]]  # measured once, flat
    assert not by["zero-shot"]["trains"] and by["embedding-classifier"]["trains"]
    assert curve["labeling"] == {"usd_per_row": 0.5} and curve["more"] == 20
    assert curve["advice"] and all(line in result.output for line in curve["advice"][:1])
    fit = by["embedding-classifier"]["fit"]
    # Either a curve or the reason there is none, never both and never silence.
    assert bool(fit["ok"]) != bool(fit.get("reason")), fit
    report = max((curve_project / ".tunewise" / "reports").iterdir())
    assert curve["report_dir"] == f".tunewise/reports/{report.name}"  # relative to the project
    assert "How much data is enough" in (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    assert 'id="learning-curve"' in html and curve["advice"][0].split(":")[0] in html
    assert json.loads((report / "ladder.json").read_text())["curve"]["test_hash"] == curve["test_hash"]
    # A later ladder on the same test split carries the newest curve into its own report.
    again = runner.invoke(app, ["ladder", str(curve_project), "--rungs", "zero-shot", "-q"])
    assert again.exit_code == 0, again.output
    newest = max((curve_project / ".tunewise" / "reports").iterdir())
    assert newest != report and 'id="learning-curve"' in (newest / "report.html").read_text()


def test_sizes_larger_than_the_train_split_are_refused_in_one_line(curve_project):
    from tunewise.cli import app

    result = CliRunner().invoke(app, ["curve", str(curve_project), "--rungs", "embedding-classifier",
                                      "--sizes", "10,5000", "-q"])
    assert result.exit_code == 2
    assert "5,000 is larger than the train split" in result.output and "Traceback" not in result.output
    assert not (curve_project / ".tunewise" / "curves").exists()
    bad = CliRunner().invoke(app, ["curve", str(curve_project), "--sizes", "10,abc"])
    assert bad.exit_code == 2 and "--sizes '10,abc'" in bad.output


def test_the_size_cap_is_respected(curve_project):
    from tunewise.cli import app

    capped = ["--set", "train.max_train_examples=24", "--rungs", "embedding-classifier", "-q"]
    over = CliRunner().invoke(app, ["curve", str(curve_project), "--sizes", "6,48", *capped])
    assert over.exit_code == 2 and "48 is larger than train.max_train_examples (24)" in over.output
    result = CliRunner().invoke(app, ["curve", str(curve_project), *capped])
    assert result.exit_code == 0, result.output
    curve = json.loads((max((curve_project / ".tunewise" / "curves").iterdir()) / "curve.json").read_text())
    assert curve["size_cap"] == 24 and curve["n_train"] == 24 and curve["sizes"] == [24]
    (emb,) = curve["rungs"]
    assert [p["n"] for p in emb["points"]] == [24] and emb["band"] is None and "not identifiable" in emb["no_band"]


def _analysed(prompt_accuracy: float, usd_per_row: float | None):
    from types import SimpleNamespace

    from tunewise.config import ProjectConfig
    from tunewise.curve import analyse
    from tunewise.evaluate.cost import rung_cost

    config = ProjectConfig.model_validate({
        "task": {"type": "classification", "labels": ["a", "b"]}, "data": {"files": ["x.jsonl"]},
        "model": {"base": "x"}, "eval": {"bootstrap": 200}, "labeling": {"usd_per_row": usd_per_row}})
    sizes = [50, 100, 200, 400, 800]
    items = _items(sizes, (0.95, 1.0, 0.5), 4000, 3)

    def point(n, value, train_s, ms):
        return {"n": n, "value": float(value), "ci": None, "train_seconds": train_s, "ms_per_example": ms,
                "prompt_tokens_per_request": 0.0, "cost": rung_cost(train_s, ms, 0.0, config.cost)}

    trained = [point(n, s.mean(), n / 100, 1.0) for n, s in zip(sizes, items, strict=True)]
    results = [("few-shot", [point(800, prompt_accuracy, 0.0, 400.0)], None),
               ("embedding-classifier", trained, fit_curve(sizes, items, 200, 0))]
    splits = SimpleNamespace(train=[None] * 800, test=[None] * 4000, test_hash="h", record=dict)
    return analyse(config, splits, results, sizes, 800, [])


def test_labels_are_priced_against_a_rung_that_is_already_a_point_better():
    curve = _analysed(prompt_accuracy=0.99, usd_per_row=0.5)
    (option,) = curve["options"]
    emb = next(r for r in curve["rungs"] if r["name"] == "embedding-classifier")
    rows = option["labels"]["rows"]
    assert rows > 0 and option["labels"]["usd"] >= rows * 0.5  # labels plus retraining
    assert emb["next_point"]["n"] > 800 and emb["next_point"]["target"] == pytest.approx(emb["next_point"]["from"] + 0.01)
    assert option["switch"]["rung"] == "few-shot" and option["switch"]["extra_usd_first_month"] > 0
    sentence = next(s for s in curve["advice"] if s.startswith("Next point over embedding-classifier"))
    cheaper = "more labels are cheaper" if option["labels"]["usd"] < option["switch"]["extra_usd_first_month"] else \
        "switching to few-shot is cheaper"
    assert cheaper in sentence and f"about {rows:,} more labelled rows (95% CI" in sentence
    # The simulated curve levels off at 95%: it cannot reach few-shot's 99%, and the advice must say so.
    assert "embedding-classifier is not projected to reach few-shot" in " ".join(curve["advice"])
    assert not any("overtakes few-shot" in s for s in curve["advice"])
    unpriced = _analysed(prompt_accuracy=0.5, usd_per_row=None)
    (option,) = unpriced["options"]
    assert "switch" not in option and option["labels"]["usd"] is None
    assert any("set labeling.usd_per_row" in s for s in unpriced["advice"])
    assert any("overtakes few-shot (50.0%)" in s and "below the smallest size measured" in s for s in unpriced["advice"])


def test_hiding_the_largest_size_its_value_falls_inside_the_projected_band():
    """Validation by hiding the largest measured size, on seeded simulated curves with run-to-run variance:
    its measured value (three runs, the same test items) lies in the band projected from the smaller sizes
    in at least 4 of 5 trials."""
    sizes, truth = [25, 50, 100, 200, 400, 800], (0.9, 1.5, 0.6)
    inside = 0
    for trial in range(5):
        items = _run_items(sizes, truth, 600, 3, 0.03, 100 + trial)
        fit = fit_curve(sizes[:-1], items[:-1], resamples=300, seed=trial)
        assert fit.ok, fit.reason
        _, lo, hi = fit.at(sizes[-1])
        inside += lo <= items[-1].mean() <= hi
    assert inside >= 4, inside
