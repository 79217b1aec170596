"""Every classification rung on the tiny models: fit, predict, cost, and what each one learned."""

from __future__ import annotations

import pytest
from tiny import write_tiny_project

from tunewise.config import load_config
from tunewise.ladder import load_splits
from tunewise.rungs.prompting import _balanced_sample, _common_prefix
from tunewise.rungs.table import build_rung


@pytest.fixture
def project(tmp_path, tiny_model_dir, tiny_encoder_dir):
    extra = f"few_shot: {{k: 3, max_example_tokens: 8}}\nencoder: {{model: {tiny_encoder_dir}, epochs: 6, learning_rate: 0.01, batch_size: 8}}\n"
    return write_tiny_project(tmp_path / "proj", tiny_model_dir, extra=extra)


def _run(name, project, tmp_path, overrides=()):
    config = load_config(project, list(overrides))
    splits = load_splits(config, project)
    rung = build_rung(name, config, project, tmp_path / name, lambda d, t: (lambda n, **fields: None))
    rung.fit(splits.train, splits.val)
    preds = rung.predict(splits.test)
    return rung, preds, splits


@pytest.mark.parametrize("name", ["zero-shot", "few-shot", "embedding-classifier", "encoder-finetune"])
def test_rung_predicts_a_label_per_test_record(name, project, tmp_path):
    rung, preds, splits = _run(name, project, tmp_path)
    assert [p.id for p in preds] == [r.id for r in splits.test]
    labels = {"business", "sports", "tech"}
    assert all(p.output in labels and set(p.scores) == labels for p in preds)
    assert rung.cost.predict_examples == len(splits.test)
    assert rung.cost.prompt_tokens > 0 and all(p.prompt_tokens > 0 for p in preds)


def test_few_shot_prompts_are_longer_and_share_a_cached_prefix(project, tmp_path):
    zero, _, _ = _run("zero-shot", project, tmp_path)
    # Raw label scores (no calibration): compared below with each full prompt scored alone.
    few, preds, splits = _run("few-shot", project, tmp_path, ["few_shot.calibrate=false"])
    assert few.cost.prompt_tokens > zero.cost.prompt_tokens
    assert len(few._prefix_ids) > 0
    # The cached prefix gives the same scores as running every full prompt alone.
    from tunewise.evaluate.decode import label_token_ids, score_labels

    b = few.builder()
    full = [few.tokenizer(few.render(b, r.input, few.fixed), add_special_tokens=False)["input_ids"]
            for r in splits.test[:3]]
    assert few.tokenizer.decode(full[0]).count("<|im_start|>assistant") == len(few.fixed) + 1
    plain = score_labels(few.model, full, label_token_ids(few.tokenizer, b, ["business", "sports", "tech"]),
                         few.tokenizer.pad_token_id, batch_size=2)
    for row, p in zip(plain, preds[:3], strict=True):
        assert row.tolist() == pytest.approx(list(p.scores.values()), abs=1e-3)


def test_few_shot_similar_selection_picks_nearest_examples(project, tmp_path):
    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    from tunewise.core import Record

    few, preds, splits = _run("few-shot", project, tmp_path, ["few_shot.selection=similar"])
    assert not few._prefix_ids and len(preds) == len(splits.test)
    # A query equal to a pool example's input gets that example, nearest last (next to the input).
    for target in few.pool[:3]:
        (shots,) = few.shots_for([Record("q", target.input, None)])
        assert few.pool[shots[-1]].input == target.input
    # The chosen examples are the k nearest by cosine, as scikit-learn's exact search finds them.
    queries = few.embed([r.input for r in splits.test])
    nn = NearestNeighbors(n_neighbors=few.k, metric="cosine").fit(few.pool_vectors)
    _, expected = nn.kneighbors(queries)
    for got, want, q in zip(few.shots_for(splits.test), expected, queries, strict=True):
        sims = few.pool_vectors @ q
        # Same set, allowing swaps between exactly tied similarities.
        assert np.allclose(sorted(sims[got]), sorted(sims[want]), atol=1e-6)


def test_few_shot_drops_examples_to_fit_the_context(project, tmp_path):
    few, _, splits = _run("few-shot", project, tmp_path, ["few_shot.max_example_tokens=200"])
    few.model.config.max_position_embeddings = 60
    ids = few.prompt_ids(splits.test[:2])
    assert all(len(few._prefix_ids) + len(x) <= few.context_budget() for x in ids)


def test_encoder_finetune_changes_the_encoder_and_learns(project, tmp_path):
    rung, _, _ = _run("encoder-finetune", project, tmp_path)
    from transformers import AutoModel

    losses = [h["loss"] for h in rung.history]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    before = AutoModel.from_pretrained(rung.model.config._name_or_path).state_dict()
    after = rung.model.bert.state_dict()
    assert any((before[k] != after[k]).any() for k in before if k in after)
    assert rung.cost.train_seconds > 0 and rung.cost.train_tokens > 0


def test_embedding_classifier_fits_the_train_split(project, tmp_path):
    rung, _, _ = _run("embedding-classifier", project, tmp_path)
    assert rung.history[0]["train_accuracy"] > 0.5


def test_balanced_sample_covers_every_label_first():
    from tunewise.core import Record

    pool = [Record(str(i), "x", lab) for i, lab in enumerate("aaaaabbbbbccccc")]
    chosen = _balanced_sample(pool, 3, seed=0)
    assert sorted(pool[i].target for i in chosen) == ["a", "b", "c"]


def test_common_prefix_leaves_each_prompt_a_token():
    assert _common_prefix([[1, 2, 3], [1, 2, 4]]) == [1, 2]
    assert _common_prefix([[1, 2], [1, 2]]) == [1]
