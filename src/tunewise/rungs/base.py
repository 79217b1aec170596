"""The rung contract every rung follows, the context a rung is built in, and the shared LLM label scorer.

Conventions (scikit-learn's): the constructor only stores settings; anything learned is set in
``fit``; ``predict`` never looks at targets. ``cost`` says what the rung spent. Every rung is built
the same way, ``Class(config, ctx)`` (``tunewise.rungs.table.build_rung``), and loads the same way,
``Class.load(config, ctx, manifest)`` (``tunewise.rungs.saved.load_rung``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from tunewise.config import ProjectConfig
from tunewise.core import Cost, Prediction, ProgressFn, Record, no_progress
from tunewise.evaluate.cost import decode_bytes, forward_flops, kv_bytes_per_position, model_shape
from tunewise.rungspec import TEXT

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """Where a rung runs: its project (relative paths in the config resolve there), its run folder,
    the progress callback, and for an LLM rung the loaded base it runs on: ``(model, tokenizer, folder)``."""

    project: Path
    run_dir: Path
    progress: ProgressFn = no_progress
    base: tuple | None = None

    def __post_init__(self):
        self.project, self.run_dir = Path(self.project), Path(self.run_dir)

    def with_base(self, config: ProjectConfig) -> RunContext:
        """This context on its base, or on a fresh copy of ``config.model.base`` when it has none."""
        import dataclasses

        from tunewise.models.load import load

        return self if self.base is not None else dataclasses.replace(
            self, base=load(config.model.base, self.project, self.progress))


class Predictor(Protocol):
    name: ClassVar[str]  # its entry in the table of rungs (tunewise.rungspec)
    cost: Cost

    def __init__(self, config: ProjectConfig, ctx: RunContext): ...

    def fit(self, train: list[Record], val: list[Record]) -> Predictor: ...

    def predict(self, records: list[Record]) -> list[Prediction]: ...

    def save(self, run_dir) -> None: ...

    @classmethod
    def load(cls, config: ProjectConfig, ctx: RunContext, manifest: dict) -> Predictor: ...


__all__ = ["LabelScorer", "Predictor", "ProgressFn", "RunContext", "no_progress"]


class LabelScorer:
    """Classify by the log-likelihood of each label's answer under a causal LM and a prompt format."""

    name = "llm"

    def __init__(self, config: ProjectConfig, ctx: RunContext):
        if ctx.base is None:
            raise ValueError(f"{type(self).__name__}: an LLM rung is built on a loaded base (RunContext.base)")
        self.config = config
        self.project, self.run_dir, self.progress = ctx.project, ctx.run_dir, ctx.progress
        self.model, self.tokenizer, self.model_dir = ctx.base
        self.cost = Cost()
        # Counted before any adapter wraps the model: a merged adapter serves with the base's weights.
        self.shape = model_shape(self.model)
        self.kv_bytes = kv_bytes_per_position(self.model)
        self.warnings: list[str] = []  # what this rung warned about; the ladder records it per rung

    def builder(self):
        from tunewise.models.chat import PromptBuilder

        return PromptBuilder(self.config.task, self.tokenizer)

    def prompt_ids(self, records: list[Record]) -> list[list[int]]:
        b = self.builder()
        return [b.prompt_ids(r) for r in records]

    def full_prompt_ids(self, records: list[Record]) -> list[list[int]]:
        """Each record's whole prompt: ``prompt_ids`` after the fixed prefix a rung keeps apart (the
        few-shot examples), as a server feeds it to the model."""
        ids = self.prompt_ids(records)
        prefix = list(getattr(self, "_prefix_ids", None) or [])  # read after prompt_ids, which may set it
        return [prefix + p for p in ids]

    def charge(self, start: float, prompts: list[list[int]], answers: list[list[int]], decoded: bool = False) -> float:
        """Book a predict call's time, prompt tokens and forward FLOPs in ``self.cost``; return ms per record.

        ``prompts``: each record's whole prompt (shared prefix included); ``answers``: the lengths of the
        token runs after every prompt (each label's scored answer, or the generated tokens). The prefix
        all prompts share is priced as cached, as ``score_labels`` and a prefix-caching server run it
        (tunewise.evaluate.cost). ``decoded``: the runs were generated one token at a time, so their
        bytes read are booked too (a GPU prices them by memory bandwidth)."""
        from tunewise.evaluate.decode import MIN_SHARED_PREFIX, common_prefix_length

        elapsed = time.perf_counter() - start
        # One prompt alone shares nothing with other requests: its whole prompt is its own.
        shared = common_prefix_length(prompts) if len(prompts) > 1 else 0
        cached = shared if shared >= MIN_SHARED_PREFIX else 0
        for p, runs in zip(prompts, answers, strict=True):
            flops = forward_flops(self.shape, len(p) - cached, cached)
            after = sum(forward_flops(self.shape, n, len(p)) for n in runs)
            self.cost.predict_flops += flops + after
            if decoded:
                self.cost.decode_tokens += sum(runs)
                self.cost.decode_flops += after
                self.cost.decode_bytes += sum(decode_bytes(self.shape[0], self.kv_bytes, n, len(p)) for n in runs)
        self.cost.predict_seconds += elapsed
        self.cost.predict_examples += len(prompts)
        self.cost.prompt_tokens += sum(len(p) for p in prompts)
        return 1000 * elapsed / max(len(prompts), 1)

    @staticmethod
    def label_runs(label_ids: list[list[int]]) -> list[int]:
        """The token runs one classification request scores after its prompt: each label's answer but
        its first token (scored from the prompt's last position)."""
        return [len(x) - 1 for x in label_ids]

    def shared_prefix(self):
        """(length, cache) of a prefix every prompt shares, or None."""
        return

    def predict(self, records: list[Record], prefix: tuple[list[int], object] | None = None) -> list[Prediction]:
        """``prefix``: (ids, cache) of tokens a server found every prompt of this rung starts with, run once
        and reused by every batch (classification only; ``score``)."""
        from tunewise.evaluate.decode import inference_precision

        with inference_precision(self.config.eval.precision):
            if self.config.task.type == TEXT:
                return self.perplexity(records)
            if self.config.task.type != "classification":
                return self.generate(records)
            return self.score(records, prefix)

    def perplexity(self, records: list[Record]) -> list[Prediction]:
        """A plain-text corpus: each document's summed NLL over its windows (tunewise.evaluate.perplexity)."""
        from tunewise.evaluate.perplexity import chunk_note, corpus_windows, window_nll

        size = self.config.train.max_length
        docs, cut = corpus_windows(self.tokenizer, [r.input for r in records], size)
        flat = [w for d in docs for w in d]
        if cut:
            self.warnings.append(chunk_note(cut, len(records), size, len(flat)))
            log.warning("%s: %s", self.name, self.warnings[-1])
        advance = self.progress(f"{self.name}: perplexity", len(flat))
        start = time.perf_counter()
        nll = iter(window_nll(self.model, flat, self.tokenizer.pad_token_id, self.config.eval.batch_size, advance))
        per_ms = self.charge(start, [[t for w in d for t in w] for d in docs], [[] for _ in docs])
        out = []
        for rec, d in zip(records, docs, strict=True):
            total = sum(next(nll) for _ in d)
            out.append(Prediction(id=rec.id, output="", latency_ms=per_ms, prompt_tokens=sum(len(w) for w in d),
                                  nll=total, scored_tokens=sum(len(w) - 1 for w in d)))
        return out

    def generate(self, records: list[Record]) -> list[Prediction]:
        """Extraction and generation: greedy decoding of the answer (JSON is parsed when scored)."""
        from tunewise.evaluate.decode import generate

        prompts = self.prompt_ids(records)
        prefix = list(getattr(self, "_prefix_ids", []) or [])
        full = [prefix + p for p in prompts]
        advance = self.progress(f"{self.name}: generating", len(records))
        start = time.perf_counter()
        outs = generate(
            self.model, full, self.tokenizer.pad_token_id, self.builder().stop_ids,
            self.config.eval.max_new_tokens, self.config.eval.batch_size, on_batch=advance,
        )
        per_ms = self.charge(start, full, [[len(o)] for o in outs], decoded=True)
        return [
            Prediction(id=r.id, output=self.tokenizer.decode(o, skip_special_tokens=True).strip(),
                       latency_ms=per_ms, prompt_tokens=len(p))
            for r, o, p in zip(records, outs, full, strict=True)
        ]

    def score(self, records: list[Record], fixed: tuple[list[int], object] | None = None) -> list[Prediction]:
        """Each record's label scores. ``fixed``: (ids, cache) of a prefix computed once elsewhere (a
        server's, for every batch): prompts that start with it are fed only their tokens after it, the
        others whole; without it, the rung's own shared prefix, or the prompts' common start, runs once
        per call (``score_labels``)."""
        import torch

        from tunewise.evaluate.decode import label_token_ids, score_labels, starts_with

        labels = self.config.task.labels
        b = self.builder()
        full = self.full_prompt_ids(records)
        advance = self.progress(f"{self.name}: scoring", len(records))
        start = time.perf_counter()
        label_ids = label_token_ids(self.tokenizer, b, labels)
        # Groups of (rows, tokens cached before them, their prefix cache).
        if fixed is not None and fixed[0]:
            hit, n = starts_with(full, fixed[0]), len(fixed[0])
            groups = [([i for i, h in enumerate(hit) if h], n, (n, fixed[1])),
                      ([i for i, h in enumerate(hit) if not h], 0, None)]
        else:  # the rung's own shared prefix (few-shot examples), or none: score_labels finds the common start
            prefix = self.shared_prefix()
            groups = [(list(range(len(full))), prefix[0] if prefix else 0, prefix)]
        scores = torch.empty((len(full), len(labels)))
        for rows, cached, cache in groups:
            if rows:
                scores[rows] = score_labels(
                    self.model, [full[i][cached:] for i in rows], label_ids, self.tokenizer.pad_token_id,
                    batch_size=self.config.eval.batch_size, prefix_cache=cache, on_batch=advance,
                )
        per_ms = self.charge(start, full, [self.label_runs(label_ids)] * len(full))
        return [
            Prediction(
                id=rec.id,
                output=labels[int(row.argmax())],
                scores={lab: float(v) for lab, v in zip(labels, row, strict=True)},
                latency_ms=per_ms,
                prompt_tokens=len(p),
            )
            for rec, row, p in zip(records, scores, full, strict=True)
        ]


@contextlib.contextmanager
def off_the_books(rung, quiet: bool = False):
    """Predictions that are not the rung's own (calibration's content-free prior, the timing pass): the
    rung's cost and warnings are as before afterwards; ``quiet`` also hides their progress bars."""
    import copy

    cost, warnings = copy.copy(rung.cost), list(getattr(rung, "warnings", []))
    progress = getattr(rung, "progress", None)
    if quiet and progress is not None:
        rung.progress = no_progress
    try:
        yield
    finally:
        rung.cost = cost
        if hasattr(rung, "warnings"):
            rung.warnings = warnings
        if quiet and progress is not None:
            rung.progress = progress


class BatchClock:
    """The latency of the test pass itself: ms per example of every batch a rung reports (its progress
    ticks) while it predicts, so an LLM rung's latency needs no second pass that only re-measures.

    ``wrap`` a rung's progress callback for the pass; ``summary`` is None when the pass gave fewer than
    MIN_BATCHES batches to time (a rung that predicts in one call: the timing sample is predicted instead)."""

    MIN_BATCHES = 4

    def __init__(self) -> None:
        self.ms: list[float] = []
        self.examples = 0

    def wrap(self, progress: ProgressFn) -> ProgressFn:
        def bar(description: str, total: int):
            advance = progress(description, total)
            last = [time.perf_counter()]

            def tick(n, **fields):
                now = time.perf_counter()
                if n:
                    self.ms.append(1000 * (now - last[0]) / n)
                    self.examples += n
                last[0] = now
                return advance(n, **fields)

            return tick

        return bar

    def summary(self) -> dict | None:
        if len(self.ms) < self.MIN_BATCHES:
            return None
        return {**_spread(self.ms), "examples": self.examples, "repeats": 1, "batches": len(self.ms),
                "source": "test pass"}


def time_predict(rung, records: list[Record], repeats: int) -> dict | None:
    """Latency measured apart from scoring: ``records`` (a fixed sample) predicted ``repeats`` times;
    the median and interquartile range of ms per example. What it spends is not booked in the rung's
    cost, and it shows no progress bar. None when there is nothing to time."""
    if not records or repeats < 1:
        return None
    ms = []
    with off_the_books(rung, quiet=True):
        for _ in range(repeats):
            start = time.perf_counter()
            rung.predict(records)
            ms.append(1000 * (time.perf_counter() - start) / len(records))
    return {**_spread(ms), "examples": len(records), "repeats": repeats, "source": "timing sample"}


def _spread(ms: list[float]) -> dict:
    """Median and interquartile range of ms per example, the one shape every latency figure has."""
    import numpy as np

    q1, median, q3 = np.percentile(ms, [25, 50, 75])
    return {"median_ms": round(float(median), 3), "q1_ms": round(float(q1), 3), "q3_ms": round(float(q3), 3)}
