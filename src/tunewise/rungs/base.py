"""The Predictor protocol every rung follows, and the shared LLM label-scoring predictor.

Conventions (scikit-learn's): the constructor only stores settings; anything learned is set in
``fit``; ``predict`` never looks at targets. ``cost`` says what the rung spent.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from tunewise.config import ProjectConfig
from tunewise.core import Cost, Prediction, ProgressFn, Record, no_progress


class Predictor(Protocol):
    name: str
    cost: Cost

    def fit(self, train: list[Record], val: list[Record]) -> Predictor: ...

    def predict(self, records: list[Record]) -> list[Prediction]: ...


__all__ = ["LabelScorer", "Predictor", "ProgressFn", "no_progress"]


class LabelScorer:
    """Classify by the log-likelihood of each label's answer under a causal LM and a prompt format."""

    name = "llm"

    def __init__(self, config: ProjectConfig, base: tuple, run_dir: Path, progress: ProgressFn = no_progress,
                 project: Path | None = None):
        self.config = config
        self.project = Path(project) if project is not None else Path(".")
        self.model, self.tokenizer, self.model_dir = base
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.cost = Cost()
        self.warnings: list[str] = []  # what this rung warned about; the ladder records it per rung

    def builder(self):
        from tunewise.models.chat import PromptBuilder

        return PromptBuilder(self.config.task, self.tokenizer)

    def prompt_ids(self, records: list[Record]) -> list[list[int]]:
        b = self.builder()
        return [b.encode(r.input, None)[0] for r in records]

    def charge(self, start: float, n_records: int, prompt_tokens: int) -> float:
        """Book a predict call's time and prompt tokens in ``self.cost``; return ms per record."""
        elapsed = time.perf_counter() - start
        self.cost.predict_seconds += elapsed
        self.cost.predict_examples += n_records
        self.cost.prompt_tokens += prompt_tokens
        return 1000 * elapsed / max(n_records, 1)

    def shared_prefix(self):
        """(length, cache) of a prefix every prompt shares, or None."""
        return

    def predict(self, records: list[Record]) -> list[Prediction]:
        if self.config.task.type != "classification":
            return self.generate(records)
        return self.score(records)

    def generate(self, records: list[Record]) -> list[Prediction]:
        """Extraction and generation: greedy decoding of the answer (JSON is parsed when scored)."""
        from tunewise.evaluate.decode import generate

        prompts = self.prompt_ids(records)
        prefix = list(getattr(self, "_prefix_ids", []) or [])
        full = [prefix + p for p in prompts]
        advance = self.progress(f"{self.name}: generating", len(records))
        start = time.perf_counter()
        outs = generate(
            self.model, full, self.tokenizer.pad_token_id, self.tokenizer.eos_token_id,
            self.config.eval.max_new_tokens, self.config.eval.batch_size, on_batch=advance,
        )
        per_ms = self.charge(start, len(records), sum(len(p) for p in full))
        return [
            Prediction(id=r.id, output=self.tokenizer.decode(o, skip_special_tokens=True).strip(),
                       latency_ms=per_ms, prompt_tokens=len(p))
            for r, o, p in zip(records, outs, full, strict=True)
        ]

    def score(self, records: list[Record]) -> list[Prediction]:
        from tunewise.evaluate.decode import label_token_ids, score_labels

        labels = self.config.task.labels
        b = self.builder()
        prompts = self.prompt_ids(records)
        prefix = self.shared_prefix()
        prefix_len = prefix[0] if prefix else 0
        advance = self.progress(f"{self.name}: scoring", len(records))
        start = time.perf_counter()
        scores = score_labels(
            self.model, prompts, label_token_ids(self.tokenizer, b, labels), self.tokenizer.pad_token_id,
            batch_size=self.config.eval.batch_size, prefix_cache=prefix, on_batch=advance,
        )
        per_ms = self.charge(start, len(records), sum(len(p) + prefix_len for p in prompts))
        return [
            Prediction(
                id=rec.id,
                output=labels[int(row.argmax())],
                scores={lab: float(v) for lab, v in zip(labels, row, strict=True)},
                latency_ms=per_ms,
                prompt_tokens=len(p) + prefix_len,
            )
            for rec, row, p in zip(records, scores, prompts, strict=True)
        ]
