"""Generation scored by what an answer says, not by how it looks.

ROUGE-L and chrF reward every shared word alike, so an answer that copies the task's template
("A quillet is ...") and invents the rest scores close to one that states the reference's facts.
The metrics here look only at *new content*: the content words of a text (stop words removed with
scikit-learn's English list, Porter-stemmed) that do not already occur in the prompt (instruction
and input). Echoing the question or the template earns nothing.

- content precision / recall / F1: new content of the answer against new content of the
  reference. A reference with no new content (e.g. "Yes.") scores 1 for an answer that adds none
  and 0 otherwise (the SQuAD convention for empty answers), so every item has a score.
- groundedness: the share of the answer's new content found in the passages relevant to the
  question (the project's documents, retrieved for scoring for every rung). NaN when the answer
  adds no content: there is nothing to ground.
- semantic similarity: cosine of MiniLM sentence embeddings of answer and reference, clipped at 0.
  all-MiniLM-L6-v2 was trained for exactly that cosine; BERTScore's token matching needs a
  model-specific layer choice and a baseline rescaling estimated on a corpus, neither of which
  exists for this encoder, and costs a token-by-token match per pair. Being a whole-sentence
  score, it still sees the template, which is why it is reported and not the default.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from tunewise.tokens import words


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


@lru_cache(maxsize=1)
def _stemmer():
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer()


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return _stemmer().stem(word)


def content_words(text: str) -> set[str]:
    """Stemmed content words: not stop words; numbers kept (a 3 vs a 5 is the whole answer)."""
    stop = _stopwords()
    # A one-character word is noise in English ("s" of "it's") but a whole word in Chinese or Thai.
    return {_stem(w) if w.isascii() else w for w in words(str(text))
            if w not in stop and (len(w) > 1 or w.isdigit() or not w.isascii())}


def new_content(text: str, prompt_words: set[str]) -> set[str]:
    return content_words(text) - prompt_words


def content_prf(answer: set[str], reference: set[str]) -> tuple[float, float, float]:
    """Precision, recall and F1 of the answer's new content words against the reference's."""
    if not reference:
        hit = float(not answer)
        return hit, hit, hit
    tp = len(answer & reference)
    p = tp / len(answer) if answer else 0.0
    r = tp / len(reference)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def groundedness(answer: set[str], passages: list[str]) -> float:
    """Share of the answer's new content words that occur in the passages (NaN: nothing new said)."""
    if not answer:
        return float("nan")
    context = set().union(*(content_words(p) for p in passages)) if passages else set()
    return len(answer & context) / len(answer)


def content_columns(prompts: list[str], references: list[str], answers: list[str],
                    evidence: list[list[str]] | None) -> dict[str, list[float]]:
    """Per-item content precision, recall, F1 and (with evidence passages) groundedness."""
    cols: dict[str, list[float]] = {"content_precision": [], "content_recall": [], "content_f1": []}
    if evidence is not None:
        cols["groundedness"] = []
    for i, (prompt, ref, ans) in enumerate(zip(prompts, references, answers, strict=True)):
        seen = content_words(prompt)
        a, r = new_content(ans, seen), new_content(ref, seen)
        for key, value in zip(("content_precision", "content_recall", "content_f1"), content_prf(a, r), strict=True):
            cols[key].append(value)
        if evidence is not None:
            cols["groundedness"].append(groundedness(a, evidence[i]))
    return cols


@lru_cache(maxsize=2)
def _encoder(folder: str, max_seq_length: int):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(folder, device="cpu")
    model.max_seq_length = max_seq_length
    return model


def semantic_similarity(folder: Path, references: list[str], answers: list[str], max_seq_length: int = 128,
                        batch_size: int = 32) -> list[float]:
    """Cosine of normalised MiniLM embeddings of each answer and its reference, clipped to [0, 1]."""
    if not answers:
        return []
    model = _encoder(str(folder), max_seq_length)
    enc = lambda texts: model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
    sims = (enc(list(answers)) * enc(list(references))).sum(1)
    return np.clip(sims, 0.0, 1.0).astype(float).tolist()


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip().lower()


def retrieval_hits(golds: list[str | None], passages: list[list[str]]) -> list[float]:
    """Per item: 1 when a retrieved passage contains the gold text (case and spacing ignored); NaN without gold."""
    return [float("nan") if not g else float(any(_norm(g) in _norm(p) for p in ps))
            for g, ps in zip(golds, passages, strict=True)]
