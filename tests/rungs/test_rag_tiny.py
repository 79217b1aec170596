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


def test_chunks_keep_paragraphs_whole_and_headings_with_their_text(tmp_path):
    (tmp_path / "d").mkdir()
    entries = [f"## Term{i}\n\nA term{i} is " + " ".join(f"w{i}x{j}" for j in range(8)) + "." for i in range(4)]
    (tmp_path / "d" / "g.md").write_text("# Glossary\n\n" + "\n\n".join(entries))
    chunks = chunk_documents(tmp_path / "d", words=26, overlap=5)
    # Each entry (heading, 2 + 11 words) is whole in exactly one passage and no passage ends on a heading.
    for i in range(4):
        whole = [c for c in chunks if f"## Term{i} A term{i} is w{i}x0" in c.text and f"w{i}x7." in c.text]
        assert len(whole) == 1
    assert not any(c.text.split()[-2] in ("#", "##") for c in chunks)


class _CharTokenizer:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(ch) for ch in text]}

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def test_clip_never_cuts_inside_a_word():
    from tunewise.rungs.rag import _clip

    text = "Quillet is a budget memo. The Harbor team signs it every Tuesday in Kiln."
    assert _clip(_CharTokenizer(), text, 200) == text
    clipped = _clip(_CharTokenizer(), text, 60)  # the budget ends inside "Tuesday"
    assert clipped == "Quillet is a budget memo. The Harbor team signs it every …"
    assert _clip(_CharTokenizer(), text, 30) == "Quillet is a budget memo. …"


def test_retrieval_recall_counts_gold_text_in_passages():
    from tunewise.evaluate.content import retrieval_hits

    hits = retrieval_hits(["## Quillet", None, "## Brallet"], [["x ## quillet  A", "y"], ["z"], ["## Bra"]])
    assert hits[0] == 1.0 and hits[2] == 0.0 and hits[1] != hits[1]  # NaN: no gold for the item


def test_misspelt_gold_field_is_an_error(tmp_path, tiny_model_dir, tiny_encoder_dir):
    extra = f"encoder: {{model: {tiny_encoder_dir}}}\nretrieval: {{chunk_words: 12, top_k: 2, gold_field: gold}}\n"
    project = _write(tmp_path / "rag", tiny_model_dir, "generation", extra)
    _docs(project / "docs")
    with pytest.raises(ConfigError, match=r"'retrieval.gold_field': no test row has a field 'gold'"):
        run_ladder(load_config(project, ["data.documents=docs"]), project, ["rag"])
