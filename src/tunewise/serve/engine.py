"""Continuous batching for generation: sequences join and leave one running decode batch at token
boundaries, each with its own stop condition, token budget and rows of the KV cache, and each token
is handed to its request as it is produced (real streaming).

A request joins by a prefill of its prompt alone (so a fault there fails only it), then its cache
rows are left-padded into the running batch. The prefix every prompt of a rung starts with (system
prompt, instruction, fixed few-shot examples) is run once per rung and its keys and values start
each new prompt's cache, so a join prefills only the request's own tokens (the computation is
shared; each sequence still holds its own copy of those rows); every step decodes one token for every sequence in one
forward pass; a finished sequence's rows are dropped at once, so a short answer never waits for a
long one. Greedy, as the ladder measured. It drives the rungs that decode with the plain cached
decoder (prompting rungs, LoRA-family adapters, full fine-tunes); prefix and prompt tuning own the
KV cache and RAG retrieves per request, so those keep the batch-at-once path (batching.run_group).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from tunewise.core import Prediction

log = logging.getLogger(__name__)


def continuous(served) -> bool:
    """Whether ``served`` generates through the plain cached decoder this engine reproduces."""
    from tunewise.rungs.base import LabelScorer
    from tunewise.rungs.finetuned import FinetunedRung
    from tunewise.train.methods import PROMPT_LEARNING

    rung = served.rung
    return (served.task != "classification" and isinstance(rung, LabelScorer)
            and type(rung).predict in (LabelScorer.predict, FinetunedRung.predict)
            and type(rung).generate is LabelScorer.generate
            and getattr(rung, "method", None) not in PROMPT_LEARNING)


@dataclass
class Sequence:
    job: object  # batching.Job
    prompt_len: int
    limit: int
    tokens: list[int] = field(default_factory=list)
    pos: int = 0  # the position of the next token fed
    sent: str = ""  # text already handed to a stream
    done: bool = False


class DecodeEngine:
    """The running decode batch of one served rung (one adapter per forward pass)."""

    def __init__(self, served, push: Callable[[object, str], None], reuse_prefix: bool = True):
        rung = served.rung
        self.served, self.model, self.tok = served, rung.model, rung.tokenizer
        self.stops = set(rung.builder().stop_ids)
        self.push = push  # (job, text delta) -> None, thread-safe
        self.reuse_prefix = reuse_prefix  # off only to test that reuse changes no token
        self.shared: tuple[list[int], list] | None = None  # the prefix's ids and per-layer (keys, values)
        self.prefix_hits = 0  # joins that started from the shared prefix
        self.seqs: list[Sequence] = []
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.mask: torch.Tensor | None = None

    @property
    def active(self) -> bool:
        return bool(self.seqs)

    @torch.inference_mode()
    def join(self, job) -> None:
        """Prefill ``job``'s prompt alone and add it to the running batch (or finish it at once)."""
        from transformers import DynamicCache

        prompt = self._prompt(job.record)
        limit = job.max_tokens or self.served.rung.config.eval.max_new_tokens
        seq = Sequence(job, len(prompt), limit, pos=len(prompt))
        cache = DynamicCache(config=self.model.config)
        ids, layers = self._shared() if self.reuse_prefix else ([], [])
        feed = prompt
        # Checked per prompt: a request whose tokens merge across the prefix's end is prefilled whole.
        if ids and len(prompt) > len(ids) and prompt[:len(ids)] == ids:
            for i, (k, v) in enumerate(layers):
                cache.update(k, v, i)  # copied into the new cache: the shared tensors are never written
            feed = prompt[len(ids):]
            self.prefix_hits += 1
        with self.served.context():
            self.model.eval()
            out = self.model(input_ids=torch.tensor([feed]), past_key_values=cache, use_cache=True,
                             logits_to_keep=1)
        self._advance(seq, int(out.logits[0, -1].argmax()))
        if seq.done:
            return
        self._merge([(layer.keys, layer.values) for layer in out.past_key_values.layers], len(prompt))
        self.seqs.append(seq)
        job.batch_size = len(self.seqs)

    def _prompt(self, record) -> list[int]:
        rung = self.served.rung
        ids = rung.prompt_ids([record])[0]
        return list(getattr(rung, "_prefix_ids", []) or []) + ids  # read after prompt_ids, which may set it

    def _shared(self) -> tuple[list[int], list]:
        """The tokens every prompt of this rung starts with and their keys and values, run once: the
        common start of two prompts with different inputs (none if shorter than worth a forward)."""
        from transformers import DynamicCache

        from tunewise.evaluate.decode import MIN_SHARED_PREFIX, common_prefix_length
        from tunewise.rungs.saved import request_record

        if self.shared is None:
            probes = [self._prompt(request_record(text)) for text in ("a", "zebra 7")]
            n = common_prefix_length(probes)
            ids, layers = (probes[0][:n] if n >= MIN_SHARED_PREFIX else []), []
            if ids:
                cache = DynamicCache(config=self.model.config)
                with self.served.context():
                    self.model.eval()
                    self.model(input_ids=torch.tensor([ids]), past_key_values=cache, use_cache=True, logits_to_keep=1)
                layers = [(layer.keys, layer.values) for layer in cache.layers]
                log.info("%s: a prefix of %d tokens every prompt starts with is computed once and reused",
                         self.served.id, n)
            self.shared = (ids, layers)
        return self.shared

    @torch.inference_mode()
    def step(self) -> None:
        """One token for every running sequence, in one forward pass; finished ones leave."""
        from transformers import DynamicCache

        self._drop([i for i, s in enumerate(self.seqs) if s.job.future.done()])  # hung up
        if not self.seqs:
            return
        cache = DynamicCache(config=self.model.config)
        for i, (k, v) in enumerate(self.layers):
            cache.update(k, v, i)
        b = len(self.seqs)
        mask = torch.cat([self.mask, torch.ones((b, 1), dtype=torch.long)], dim=1)
        feed = torch.tensor([[s.tokens[-1]] for s in self.seqs])
        pos = torch.tensor([[s.pos] for s in self.seqs])
        with self.served.context():
            out = self.model(input_ids=feed, attention_mask=mask, position_ids=pos, past_key_values=cache,
                             use_cache=True)
        self.layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        self.mask = mask
        for s, t in zip(self.seqs, out.logits[:, -1].argmax(-1).tolist(), strict=True):
            s.pos += 1
            self._advance(s, t)
        self._drop([i for i, s in enumerate(self.seqs) if s.done])

    def run(self, waiting: Callable[[], bool], most: int = 8) -> None:
        """Decode steps until a sequence finishes, a request waits to join, or ``most`` steps: one
        hand-over to the model's thread per few tokens, not per token (on a loaded CPU each costs)."""
        for _ in range(most):
            n = len(self.seqs)
            self.step()
            if len(self.seqs) < n or not self.seqs or waiting():
                return

    def fail_all(self) -> list:
        """Empty the batch after a failed step; return the jobs that were running."""
        jobs = [s.job for s in self.seqs]
        self.seqs, self.layers, self.mask = [], [], None
        return jobs

    def _advance(self, seq: Sequence, token: int) -> None:
        if token in self.stops:
            seq.done = True
        else:
            seq.tokens.append(token)
            seq.done = len(seq.tokens) >= seq.limit
        self._emit(seq)
        if seq.done:
            self._finish(seq)

    def _emit(self, seq: Sequence) -> None:
        """Hand the stream the text it has not had, as the final answer will read: leading space
        dropped, trailing space and a half-decoded character held back until known."""
        if getattr(seq.job, "stream", None) is None:
            return
        text = self.tok.decode(seq.tokens, skip_special_tokens=True).lstrip()
        text = text.strip() if seq.done else text.rstrip()
        if text.endswith("\ufffd") and not seq.done:
            return
        if text.startswith(seq.sent) and len(text) > len(seq.sent):
            self.push(seq.job, text[len(seq.sent):])
            seq.sent = text

    def _finish(self, seq: Sequence) -> None:
        output = self.tok.decode(seq.tokens, skip_special_tokens=True).strip()
        pred = Prediction(id=seq.job.record.id, output=output, latency_ms=0.0, prompt_tokens=seq.prompt_len)
        pred.completion_tokens = len(seq.tokens)
        seq.job.result = pred  # set on the event loop by the batcher

    def _merge(self, new: list[tuple[torch.Tensor, torch.Tensor]], length: int) -> None:
        """Left-pad the running cache or the new one to the same width and stack them."""
        if not self.seqs:
            self.layers, self.mask = new, torch.ones((1, length), dtype=torch.long)
            return
        width = max(self.mask.shape[1], length)
        old_pad, new_pad = width - self.mask.shape[1], width - length
        self.layers = [(torch.cat([_lpad(k, old_pad), _lpad(nk, new_pad)]), torch.cat([_lpad(v, old_pad), _lpad(nv, new_pad)]))
                       for (k, v), (nk, nv) in zip(self.layers, new, strict=True)]
        new_mask = torch.cat([torch.zeros((1, new_pad), dtype=torch.long), torch.ones((1, length), dtype=torch.long)], 1)
        self.mask = torch.cat([torch.nn.functional.pad(self.mask, (old_pad, 0)), new_mask])

    def _drop(self, rows: list[int]) -> None:
        if not rows:
            return
        keep = [i for i in range(len(self.seqs)) if i not in set(rows)]
        self.seqs = [self.seqs[i] for i in keep]
        if not keep:
            self.layers, self.mask = [], None
            return
        idx = torch.tensor(keep)
        mask = self.mask[idx]
        start = int((mask.sum(0) > 0).nonzero()[0])  # columns every remaining row pads are cut
        self.mask = mask[:, start:]
        self.layers = [(k[idx][:, :, start:], v[idx][:, :, start:]) for k, v in self.layers]


def _lpad(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, 0, n, 0)) if n else x
