"""The rag rung: chunking, hybrid retrieval, citations, the unsupported-answer rate and its errors."""

from __future__ import annotations

import json

import pytest
from test_text_tasks_tiny import _write

from tunewise.config import ConfigError, load_config
from tunewise.ladder import run_ladder
from tunewise.rungs.rag import chunk_documents


def _docs(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "business.md").write_text("the market shares profit bank economy " * 5)
    (folder / "sports.txt").write_text("the match team goal cup player " * 5)
    (folder / "tech.txt").write_text("the phone software internet computer games " * 5)
    (folder / "notes.pdf").write_text("ignored")


def test_chunks_overlap_and_skip_other_files(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text(" ".join(f"w{i}" for i in range(250)))
    (tmp_path / "d" / "b.pdf").write_text("x")
    chunks = chunk_documents(tmp_path / "d", words=120, overlap=30)
    assert [c.text.split()[0] for c in chunks] == ["w0", "w90", "w180"]
    assert chunks[0].text.split()[-1] == "w119" and chunks[1].source == "a.txt"


def test_rag_generation_ladder_cites_and_scores_support(tmp_path, tiny_model_dir, tiny_encoder_dir):
    extra = f"encoder: {{model: {tiny_encoder_dir}}}\nretrieval: {{chunk_words: 12, overlap_words: 2, top_k: 2}}\n"
    project = _write(tmp_path / "rag", tiny_model_dir, "generation", extra)
    _docs(project / "docs")
    config = load_config(project, ["data.documents=docs"])
    report_dir = run_ladder(config, project, ["rag"])
    ladder = json.loads((report_dir / "ladder.json").read_text())
    rung = ladder["rungs"][0]
    assert "groundedness" in rung["metrics"] and rung["prompt_tokens_per_request"] > 30
    rows = [json.loads(x) for x in (tmp_path / "rag" / rung["run_dir"] / "predictions.jsonl").read_text().splitlines()]
    assert all(len(r["citations"]) == 2 and r["citations"][0]["n"] == 1 for r in rows)
    # The business question retrieves the business document first (BM25 and embeddings fused).
    business = next(r for r in rows if r["target"].startswith("business"))
    assert business["citations"][0]["source"] == "business.md"


def test_rag_without_documents_names_the_key(tmp_path, tiny_model_dir):
    project = _write(tmp_path / "rag", tiny_model_dir, "generation")
    with pytest.raises(ConfigError, match=r"tunewise.yaml: missing required key 'data.documents'"):
        run_ladder(load_config(project), project, ["rag"])
    with pytest.raises(ConfigError, match=r"bad value for 'data.documents'.*no .txt or .md"):
        run_ladder(load_config(project, ["data.documents=nowhere"]), project, ["rag"])
