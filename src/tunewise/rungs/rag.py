"""Retrieval-augmented prompting: passages from a folder of documents go into every prompt.

Documents (``data.documents``: .txt and .md files) are cut into overlapping word windows. A query
retrieves by two rankers fused with reciprocal-rank fusion: BM25 catches exact names and numbers,
MiniLM embeddings catch paraphrases; RRF needs no weight to tune. The top passages are numbered in
the prompt and the prediction cites them; the passages are kept for the unsupported-answer rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunewise.config import ConfigError, ProjectConfig, config_path
from tunewise.core import Prediction, Record
from tunewise.rungs.base import LabelScorer

RRF_K = 60  # the constant of Cormack et al. (2009); dampens the weight of top ranks


@dataclass
class Chunk:
    source: str  # file relative to the documents folder
    index: int
    text: str


def documents_dir(config: ProjectConfig, project: Path) -> Path:
    where = config_path(project)
    if not config.data.documents:
        raise ConfigError(f"{where}: missing required key 'data.documents' (the rag rung retrieves from a folder "
                          "of .txt/.md documents)")
    folder = Path(project) / config.data.documents
    if not folder.is_dir() or not any(_doc_files(folder)):
        raise ConfigError(f"{where}: bad value for 'data.documents': {folder} holds no .txt or .md files")
    return folder


def _doc_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".txt", ".md") and p.is_file())


def chunk_documents(folder: Path, words: int, overlap: int) -> list[Chunk]:
    """Overlapping windows of ``words`` words, so a fact cut at one boundary is whole in the next."""
    chunks = []
    step = max(1, words - overlap)
    for path in _doc_files(folder):
        tokens = path.read_text(encoding="utf-8", errors="replace").split()
        for i, start in enumerate(range(0, max(len(tokens) - overlap, 1), step)):
            chunks.append(Chunk(str(path.relative_to(folder)), i, " ".join(tokens[start : start + words])))
    return chunks


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


class Rag(LabelScorer):
    """The instruction, the top retrieved passages (numbered, to cite) and the input, through the chat template."""

    name = "rag"

    def fit(self, train: list[Record], val: list[Record]) -> Rag:
        from rank_bm25 import BM25Okapi

        from tunewise.rungs.encoder import Embedder, encoder_dir

        self.builder().check_template()
        r, enc = self.config.retrieval, self.config.encoder
        self.chunks = chunk_documents(documents_dir(self.config, self.project), r.chunk_words, r.overlap_words)
        self.bm25 = BM25Okapi([_words(c.text) for c in self.chunks])
        self.embed = Embedder(encoder_dir(self.config, self.project), enc.max_seq_length, enc.batch_size)
        self.vectors = self.embed([c.text for c in self.chunks])
        return self

    def save(self, run_dir) -> None:
        """The passages as JSON and their embeddings as safetensors: the documents may change later,
        the served rung answers from the passages it was measured with."""
        from tunewise import workspace as ws
        from tunewise.rungs.saved import save_arrays, write_manifest

        run_dir = Path(run_dir)
        ws.write_json(run_dir / "rag_chunks.json", [vars(c) for c in self.chunks])
        save_arrays(run_dir / "rag_vectors.safetensors", {"chunks": self.vectors})
        write_manifest(run_dir, self.name)

    @classmethod
    def load(cls, run_dir, config, project, manifest: dict, base: tuple | None = None) -> Rag:
        import json

        from rank_bm25 import BM25Okapi

        from tunewise.rungs.encoder import Embedder, encoder_dir
        from tunewise.rungs.saved import llm_base, load_arrays

        run_dir = Path(run_dir)
        self = cls(config, llm_base(config, project, base), run_dir, project=project)
        self.chunks = [Chunk(**c) for c in json.loads((run_dir / "rag_chunks.json").read_text(encoding="utf-8"))]
        # BM25's statistics are a pure function of the saved passages: rebuilt, not refitted.
        self.bm25 = BM25Okapi([_words(c.text) for c in self.chunks])
        enc = config.encoder
        self.embed = Embedder(encoder_dir(config, project), enc.max_seq_length, enc.batch_size)
        self.vectors = load_arrays(run_dir / "rag_vectors.safetensors")["chunks"]
        return self

    def retrieve(self, queries: list[str]) -> list[list[int]]:
        """Chunk indices per query, best first, by reciprocal-rank fusion of BM25 and embedding ranks."""
        k = min(self.config.retrieval.top_k, len(self.chunks))
        dense = self.embed(queries) @ self.vectors.T
        out = []
        for query, sims in zip(queries, dense, strict=True):
            fused = np.zeros(len(self.chunks))
            for scores in (self.bm25.get_scores(_words(query)), sims):
                ranks = np.empty(len(scores), dtype=int)
                ranks[np.argsort(-scores, kind="stable")] = np.arange(len(scores))
                fused += 1.0 / (RRF_K + ranks + 1)
            out.append(np.argsort(-fused, kind="stable")[:k].tolist())
        return out

    def prompt_ids(self, records: list[Record]) -> list[list[int]]:
        b = self.builder()
        hits = self.retrieve([r.input for r in records])
        self.passages = [[self.chunks[i].text for i in h] for h in hits]
        self.citations = [[{"n": n, "source": self.chunks[i].source, "chunk": self.chunks[i].index}
                           for n, i in enumerate(h, 1)] for h in hits]
        limit = self.config.retrieval.max_passage_tokens
        ids = []
        for rec, passages in zip(records, self.passages, strict=True):
            context = "\n".join(f"[{n}] {_clip(self.tokenizer, p, limit)}" for n, p in enumerate(passages, 1))
            content = "\n\n".join(x for x in (
                self.config.task.instruction.strip(),
                f"Passages (cite the ones you use as [n]):\n{context}",
                f"Input: {b.truncate(rec.input)}",
            ) if x)
            ids.append(self.tokenizer(_render(b, content), add_special_tokens=False)["input_ids"])
        return ids

    def predict(self, records: list[Record]) -> list[Prediction]:
        preds = super().predict(records)
        for p, cites in zip(preds, self.citations, strict=True):
            p.citations = cites  # type: ignore[attr-defined]  # written to predictions.jsonl by the ladder
        return preds


def _clip(tokenizer, text: str, max_tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens]) + " …"


def _render(builder, content: str) -> str:
    """The user turn through the chat template, as PromptBuilder renders every other prompt."""
    tok = builder.tokenizer
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
    return content + "\n"
