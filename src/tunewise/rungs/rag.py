"""Retrieval-augmented prompting: passages from a folder of documents go into every prompt.

Documents (``data.documents``: .txt and .md files) are cut into passages (see chunk_documents). A query
retrieves by two rankers fused with reciprocal-rank fusion: BM25 catches exact names and numbers,
MiniLM embeddings catch paraphrases; RRF needs no weight to tune. Passages keep paragraphs whole;
the top passages are numbered in the prompt, the best one nearest the question, and the prediction
cites them. The same retriever picks the evidence every rung's groundedness is scored against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunewise.config import ConfigError, ProjectConfig, config_path
from tunewise.core import Prediction, Record
from tunewise.rungs.base import LabelScorer, RunContext
from tunewise.rungs.encoder import Embedder, encoder_dir
from tunewise.rungs.state import load_arrays, save_arrays, write_manifest
from tunewise.rungspec import RAG

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
    """Passages of up to ``words`` words that keep paragraphs (blank-line separated) whole.

    Consecutive paragraphs are packed while they fit, so a glossary entry or an FAQ answer reaches
    the model whole, names included; a Markdown heading is never the last block of a passage (it
    belongs to what follows). A paragraph longer than ``words`` is cut into overlapping windows,
    so a fact cut at one boundary is whole in the next.
    """
    chunks = []
    for path in _doc_files(folder):
        source = str(path.relative_to(folder))
        text = path.read_text(encoding="utf-8", errors="replace")
        packed = _pack([b.split() for b in re.split(r"\n\s*\n", text) if b.strip()], words, overlap)
        chunks += [Chunk(source, i, " ".join(passage)) for i, passage in enumerate(packed)]
    return chunks


def _pack(blocks: list[list[str]], words: int, overlap: int) -> list[list[str]]:
    out: list[list[str]] = []
    current: list[list[str]] = []

    def flush() -> None:
        carry = []
        while current and current[-1][0].startswith("#"):  # a heading goes with the text after it
            carry.insert(0, current.pop())
        if current:
            out.append([w for blk in current for w in blk])
        current[:] = carry

    step = max(1, words - overlap)
    for block in blocks:
        if len(block) > words:
            flush()
            head = [w for blk in current for w in blk]
            current.clear()
            block = head + block
            out.extend(block[s : s + words] for s in range(0, max(len(block) - overlap, 1), step))
            continue
        if sum(map(len, current)) + len(block) > words:
            flush()
        current.append(block)
    flush()
    if current:  # only headings were left
        out.append([w for blk in current for w in blk])
    return out


class Retriever:
    """BM25 and MiniLM ranks over the document passages, fused with reciprocal-rank fusion."""

    def __init__(self, config: ProjectConfig, project: Path):
        from rank_bm25 import BM25Okapi

        r, enc = config.retrieval, config.encoder
        self.top_k = r.top_k
        self.chunks = chunk_documents(documents_dir(config, project), r.chunk_words, r.overlap_words)
        self.bm25 = BM25Okapi([_words(c.text) for c in self.chunks])
        self.embed = Embedder(encoder_dir(config, project), enc.max_seq_length, enc.batch_size)
        self.vectors = self.embed([c.text for c in self.chunks])

    @classmethod
    def from_saved(cls, config: ProjectConfig, project: Path, chunks: list[Chunk], vectors: np.ndarray) -> Retriever:
        """The retriever over saved passages and their embeddings; BM25's statistics are a pure function
        of the passages, so they are rebuilt, not refitted."""
        from rank_bm25 import BM25Okapi

        self = cls.__new__(cls)
        enc = config.encoder
        self.top_k, self.chunks, self.vectors = config.retrieval.top_k, chunks, vectors
        self.bm25 = BM25Okapi([_words(c.text) for c in chunks])
        self.embed = Embedder(encoder_dir(config, project), enc.max_seq_length, enc.batch_size)
        return self

    def retrieve(self, queries: list[str]) -> list[list[int]]:
        """Chunk indices per query, best first, by reciprocal-rank fusion of BM25 and embedding ranks."""
        k = min(self.top_k, len(self.chunks))
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


_EVIDENCE: dict[tuple, list[list[str]]] = {}


def evidence_passages(config: ProjectConfig, project: Path, records: list[Record]) -> list[list[str]] | None:
    """The passages relevant to each record's question, for scoring groundedness of every rung.

    Retrieved with the rag rung's own retriever, so every rung is judged against the same
    evidence whether or not it retrieves; None when the project has no documents. Cached per
    documents folder, retrieval settings and records, since every rung of a ladder asks for it.
    """
    if not config.data.documents:
        return None
    key = (str(Path(project).resolve()), config.data.documents, config.retrieval.model_dump_json(),
           config.encoder.model, tuple((r.id, r.input) for r in records))
    if key not in _EVIDENCE:
        retriever = Retriever(config, project)
        hits = retriever.retrieve([r.input for r in records])
        while len(_EVIDENCE) >= 4:  # the test and the OOD split of the ladder at hand
            _EVIDENCE.pop(next(iter(_EVIDENCE)))
        _EVIDENCE[key] = [[retriever.chunks[i].text for i in h] for h in hits]
    return _EVIDENCE[key]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


class Rag(LabelScorer):
    """The instruction, the top retrieved passages (numbered, to cite) and the input, through the chat template."""

    name = RAG

    def fit(self, train: list[Record], val: list[Record]) -> Rag:
        self.builder().check_template()
        self.retriever = Retriever(self.config, self.project)
        self.chunks = self.retriever.chunks
        return self

    def save(self, run_dir) -> None:
        """The passages as JSON and their embeddings as safetensors: the documents may change later,
        the served rung answers from the passages it was measured with."""
        from tunewise import workspace as ws

        run_dir = Path(run_dir)
        ws.write_json(run_dir / "rag_chunks.json", [vars(c) for c in self.retriever.chunks])
        save_arrays(run_dir / "rag_vectors.safetensors", {"chunks": self.retriever.vectors})
        write_manifest(run_dir, self.name)

    @classmethod
    def load(cls, config, ctx: RunContext, manifest: dict) -> Rag:
        import json

        self = cls(config, ctx.with_base(config))
        run_dir, project = self.run_dir, self.project
        chunks = [Chunk(**c) for c in json.loads((run_dir / "rag_chunks.json").read_text(encoding="utf-8"))]
        vectors = load_arrays(run_dir / "rag_vectors.safetensors")["chunks"]
        self.retriever = Retriever.from_saved(config, project, chunks, vectors)
        self.chunks = self.retriever.chunks
        return self

    def prompt_ids(self, records: list[Record]) -> list[list[int]]:
        b = self.builder()
        chunks = self.retriever.chunks
        hits = self.retriever.retrieve([r.input for r in records])
        self.passages = [[chunks[i].text for i in h] for h in hits]
        self.citations = [[{"n": n, "source": chunks[i].source, "chunk": chunks[i].index}
                           for n, i in enumerate(h, 1)] for h in hits]
        limit = self.config.retrieval.max_passage_tokens
        ids = []
        for rec, passages in zip(records, self.passages, strict=True):
            # Numbered by rank, listed worst first: the best passage sits next to the question,
            # where a small model copies names from most reliably.
            numbered = [f"[{n}] {_clip(self.tokenizer, p, limit)}" for n, p in enumerate(passages, 1)]
            block = "Passages (cite the ones you use as [n]):\n" + "\n".join(reversed(numbered))
            messages = rec.meta.get("messages") if rec.meta else None
            if messages and b.has_template:
                # A chat row keeps its real turns (as every other rung renders it); the passages go
                # into its last user turn, next to the question they answer.
                text = b.render(_with_passages(b.prompt_turns(messages), block), generation=True,
                                tools=rec.meta.get("tools"))
            else:
                text = _render(b, "\n\n".join(x for x in (
                    self.config.task.instruction.strip(), block, f"Input: {b.truncate(rec.input)}") if x))
            ids.append(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return ids

    def predict(self, records: list[Record]) -> list[Prediction]:
        preds = super().predict(records)
        for p, cites in zip(preds, self.citations, strict=True):
            p.citations = cites  # type: ignore[attr-defined]  # written to predictions.jsonl by the ladder
        return preds


def _clip(tokenizer, text: str, max_tokens: int) -> str:
    """The passage whole when it fits; else cut at the last sentence (or word) end within the budget,
    never inside a word, so the model is not shown a garbled name to copy."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    cut = tokenizer.decode(ids[:max_tokens])
    if not text.startswith(cut):  # decoding may normalise spaces; fall back to the word boundary
        cut = cut.rsplit(" ", 1)[0]
    else:
        cut = cut if text[len(cut) : len(cut) + 1].isspace() else cut.rsplit(" ", 1)[0]
    sentence = max(cut.rfind(". "), cut.rfind(".\n"))
    return (cut[: sentence + 1] if sentence > len(cut) // 2 else cut) + " …"


def _with_passages(turns: list[dict], block: str) -> list[dict]:
    """The turns with ``block`` put before the content of the last user turn."""
    last = max((i for i, t in enumerate(turns) if t["role"] == "user"), default=None)
    if last is None:
        return [*turns, {"role": "user", "content": block}]
    return [*turns[:last], {**turns[last], "content": f"{block}\n\n{turns[last]['content']}"}, *turns[last + 1:]]


def _render(builder, content: str) -> str:
    """The user turn through the chat template, as PromptBuilder renders every other prompt."""
    tok = builder.tokenizer
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
    return content + "\n"
