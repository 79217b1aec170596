"""Continuous batching for generation: sequences join and leave one running decode batch at token
boundaries, each with its own stop condition, token budget and rows of the KV cache, and each token
is handed to its request as it is produced (real streaming).

Requests that arrive together join by one prefill of their prompts (if it fails, each is
prefilled alone, so a fault fails only the request that causes it), then their cache rows are
left-padded into the running batch. The prefix every prompt of a rung starts with (system
prompt, instruction, fixed few-shot examples) is run once per rung and its keys and values start
each new prompt's cache, so a join prefills only the request's own tokens (the computation is
shared; each sequence still holds its own copy of those rows); every step decodes one token for every sequence in one
forward pass; a finished sequence's rows are dropped at once, so a short answer never waits for a
long one. Greedy, in the rung's own matmul precision (eval.precision), as the ladder measured. It drives the rungs that decode with the plain cached
decoder (prompting rungs, LoRA-family adapters, full fine-tunes); prefix and prompt tuning own the
KV cache and RAG retrieves per request, so those keep the batch-at-once path (batching.run_group), as
do models with sliding-window layers (their cache keeps only the window).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from tunewise.core import Prediction

log = logging.getLogger(__name__)
JSON_CANDIDATES = 32  # the likeliest tokens tried, in order, for an answer that must stay JSON


def json_top(fmt) -> str | None:
    """What an answer asked to be JSON (a ResponseFormat) opens with: "{" for an object, "[" for an
    array, "{[" for either; None when not asked, or when the schema asks for a bare string, number or
    literal (those are checked once decoded, not constrained)."""
    if fmt is None:
        return None
    if fmt.kind == "json_object":
        return "{"
    kind = (fmt.schema or {}).get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if kind is None:
        return "{["
    return "".join(c for k, c in (("object", "{"), ("array", "[")) if k in kinds) or None


def continuous(served) -> bool:
    """Whether ``served`` generates through the plain cached decoder this engine reproduces."""
    return served.task != "classification" and batch_reason(served) is None


def batch_reason(served) -> str | None:
    """Why a rung generates a batch at once rather than on this engine (None: it does not)."""
    from tunewise.serve.attention import windowed
    from tunewise.serve.registry import prompt_reason

    if reason := prompt_reason(served.rung):
        return reason
    if windowed(served.rung.model):
        return "its model has sliding-window layers, whose cache keeps only the window"
    return None


@dataclass
class Sequence:
    job: object  # batching.Job
    prompt_len: int
    limit: int
    tokens: list[int] = field(default_factory=list)
    pos: int = 0  # the position of the next token fed
    sent: str = ""  # text already handed to a stream
    done: bool = False
    top: str | None = None  # an answer that must be JSON: the characters its document may open with
    complete: bool = False  # that answer is a whole JSON document


class DecodeEngine:
    """The running decode batch of one served rung (one adapter per forward pass)."""

    def __init__(self, served, push: Callable[[object, str], None], reuse_prefix: bool = True, pack: bool = True):
        rung = served.rung
        self.served, self.model, self.tok = served, rung.model, rung.tokenizer
        self.stops = set(rung.builder().stop_ids)
        self.pad = rung.tokenizer.pad_token_id if rung.tokenizer.pad_token_id is not None else 0  # masked out
        self.push = push  # (job, text delta) -> None, thread-safe
        self.reuse_prefix = reuse_prefix  # off only to test that reuse changes no token
        self.prefix_hits = 0  # joins that started from the shared prefix
        self.said_cache = False  # the warning that the cache is not grown in place was given
        self.packed = 0  # joins prefilled in a running batch's step
        self.char_tokens: dict[str, int | None] = {}  # a character -> a token of it alone (JSON answers)
        self.seqs: list[Sequence] = []
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.mask: torch.Tensor | None = None
        self.cache = None  # the running batch's cache between steps (GrowLayer), rebuilt when rows join or leave
        _decode_kernel(self.model)
        from tunewise.serve.attention import packable

        self.pack = pack and packable(self.model)  # joins prefill in the running batch's step (serve.attention.Packed)
        from tunewise.evaluate.decode import resolve_precision

        self.bf16 = resolve_precision(served.rung.config.eval.precision) == "bf16"  # under bf16 autocast

    @property
    def active(self) -> bool:
        return bool(self.seqs)

    def join(self, job) -> None:
        """Prefill ``job``'s prompt and add it to the running batch (or finish it at once)."""
        self.join_many([job])

    @torch.inference_mode()
    def join_many(self, jobs: list) -> None:
        """Prefill the prompts of ``jobs`` (requests that arrived together) in one forward pass per
        group and add them to the running batch; one that is done after its first token leaves at once.

        Prompts that start with the rung's shared prefix are fed only their own tokens after its
        cached keys and values. On a packable model they go packed, with the running batch's next
        step (``_packed``); else, or if that fails, left-padded between the prefix and their tokens
        (masked, with each row's own positions), so every row's last column is its last prompt token."""
        from tunewise.evaluate.decode import starts_with

        prompts = [self._prompt(job.record) for job in jobs]
        ids, prefix = self.served.prefix() if self.reuse_prefix else ([], None)
        # Checked per prompt: a request whose tokens merge across the prefix's end is prefilled whole.
        hit = starts_with(prompts, ids)
        for shared in (True, False):
            group = [i for i, h in enumerate(hit) if h == shared]
            if not group:
                continue
            args = ([jobs[i] for i in group], [prompts[i] for i in group], len(ids) if shared else 0,
                    prefix if shared else None)
            if self.pack:
                try:
                    self._packed(*args)
                    continue
                except Exception as e:  # noqa: BLE001 - the same requests, prefilled on their own below
                    log.warning("%s: a prefill packed with the running batch's step failed (%s: %s); prefilling "
                                "the %d request(s) on their own", self.served.id, type(e).__name__, e, len(group))
            self._prefill(*args)

    def _prefill(self, jobs: list, prompts: list[list[int]], start: int, prefix) -> None:
        from tunewise.evaluate.decode import copy_cache, padded_after

        x, mask, pos = padded_after([p[start:] for p in prompts], self.pad, start)
        cache = copy_cache(prefix, len(jobs), self.model.config)
        self.prefix_hits += len(jobs) if start else 0
        with self.served.context(), self.precision():
            self.model.eval()
            out = self.model(input_ids=x, attention_mask=mask, position_ids=pos, past_key_values=cache,
                             use_cache=True, logits_to_keep=1)
        self._admit(jobs, prompts, out.logits[:, -1],
                    [(layer.keys, layer.values) for layer in out.past_key_values.layers], mask)

    def _packed(self, jobs: list, prompts: list[list[int]], start: int, prefix) -> None:
        """Prefill ``prompts`` and decode one token of every running sequence in one forward pass
        (serve.attention.Packed): the prompts' tokens and the running tokens packed into one row, no
        padding; alone, the prompts only."""
        from transformers import DynamicCache

        from tunewise.evaluate.decode import padded_after
        from tunewise.serve.attention import PACKED, PACKED_MASK, GrowLayer, Packed, PackedLayer

        b = self._running()
        if b and self.cache is None:
            self.cache = self._grow_cache()
        if b and not all(isinstance(x, GrowLayer) for x in self.cache.layers):
            return self._prefill(jobs, prompts, start, prefix)
        own = [p[start:] for p in prompts]
        segments, at = [], 0
        for o in own:
            segments.append((at, len(o)))
            at += len(o)
        mask = self._step_mask() if b else None
        cache = DynamicCache(config=self.model.config)
        plan = Packed(segments, [(x.keys, x.values) for x in prefix.layers] if prefix is not None else None,
                      self.cache.layers if b else [None] * len(cache.layers), mask.bool() if b else None)
        ids = [t for o in own for t in o] + [s.tokens[-1] for s in self.seqs]
        pos = [start + i for o in own for i in range(len(o))] + [s.pos for s in self.seqs]
        keep = [a + n - 1 for a, n in segments] + list(range(at, at + b))
        cache.layers = [PackedLayer(plan, i) for i in range(len(cache.layers))]
        self.prefix_hits += len(jobs) if start else 0
        token = PACKED.set(plan)
        try:
            with self.served.context(), self.precision():
                self.model.eval()
                out = self.model(input_ids=torch.tensor([ids]), attention_mask=PACKED_MASK,
                                 position_ids=torch.tensor([pos]), past_key_values=cache, use_cache=True,
                                 logits_to_keep=torch.tensor(keep))
        except BaseException:
            self.cache = None  # a layer may hold the failed step's token
            raise
        finally:
            PACKED.reset(token)
        logits = out.logits[0]
        self.packed += len(jobs) if b else 0
        if b:
            self._stepped(self.cache.layers, mask, logits[len(jobs):])
        # The new rows' cache as a padded prefill leaves it: prefix, pads, own tokens.
        width = max(len(o) for o in own)
        new_mask = padded_after(own, self.pad, start)[1]

        def rows(x: torch.Tensor, pre: torch.Tensor | None) -> torch.Tensor:  # (prompts, heads, width, dim)
            pre = x[:, :, :0] if pre is None else pre.to(x.dtype)
            return torch.cat([torch.cat([pre, x.new_zeros((1, x.shape[1], width - n, x.shape[3])), x[:, :, a:a + n]], dim=2)
                              for a, n in segments])

        layers = [(rows(k, plan.prefix[li][0] if plan.prefix else None),
                   rows(v, plan.prefix[li][1] if plan.prefix else None)) for li, (k, v) in sorted(plan.new.items())]
        self._admit(jobs, prompts, logits[: len(jobs)], layers, new_mask)

    def _admit(self, jobs: list, prompts: list[list[int]], logits: torch.Tensor, layers: list,
               mask: torch.Tensor) -> None:
        """The prefilled requests' first tokens (from their rows of ``logits``); those not done join the
        running batch with their rows of ``layers`` (keys, values per layer) and ``mask``."""
        seqs = [Sequence(job, len(prompt), job.max_tokens or self.served.rung.config.eval.max_new_tokens,
                         pos=len(prompt), top=json_top(getattr(job, "fmt", None)))
                for job, prompt in zip(jobs, prompts, strict=True)]
        self._next(seqs, logits)
        keep = [i for i, s in enumerate(seqs) if not s.done]
        if not keep:
            return
        rows = torch.tensor(keep)
        self._merge([(k[rows], v[rows]) for k, v in layers], mask[rows])
        self.seqs += [seqs[i] for i in keep]
        for s in self.seqs:
            s.job.batch_size = len(self.seqs)

    def precision(self):
        """The rung's own matmul precision (eval.precision), as the ladder measured it."""
        from tunewise.evaluate.decode import inference_precision

        return inference_precision(self.served.rung.config.eval.precision)

    def _prompt(self, record) -> list[int]:
        return self.served.rung.full_prompt_ids([record])[0]

    @torch.inference_mode()
    def step(self) -> None:
        """One token for every running sequence, in one forward pass; finished ones leave."""
        from tunewise.serve.attention import DECODING, ROUNDED

        if not self._running():
            return
        if self.cache is None:
            self.cache = self._grow_cache()
        mask = self._step_mask()
        feed = torch.tensor([[s.tokens[-1]] for s in self.seqs])
        pos = torch.tensor([[s.pos] for s in self.seqs])
        token = DECODING.set(True)
        rounded = ROUNDED.set(all(getattr(x, "round_bf16", False) for x in self.cache.layers))
        try:
            with self.served.context(), self.precision():
                out = self.model(input_ids=feed, attention_mask=mask, position_ids=pos, past_key_values=self.cache,
                                 use_cache=True)
        except BaseException:
            self.cache = None  # a layer may hold the failed step's token
            raise
        finally:
            DECODING.reset(token)
            ROUNDED.reset(rounded)
        self._stepped(out.past_key_values.layers, mask, out.logits[:, -1])

    def _stepped(self, layers: list, mask: torch.Tensor, logits: torch.Tensor) -> None:
        """After a forward that fed every running sequence its last token: the cache it left (``layers``,
        ``mask``), each sequence's next token from its row of ``logits``; finished ones leave."""
        self.layers, self.mask = [(x.keys, x.values) for x in layers], mask
        for seq in self.seqs:
            seq.pos += 1
        self._next(self.seqs, logits)
        self._drop([i for i, s in enumerate(self.seqs) if s.done])

    def _grow_cache(self):
        """The running batch's cache, with room in place for every token its sequences may still
        decode (transformers' DynamicCache where its layers are not plain DynamicLayers)."""
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        from tunewise.serve.attention import GrowLayer

        cache = DynamicCache(config=self.model.config)
        room = max(s.limit - len(s.tokens) for s in self.seqs) + 1
        if len(cache.layers) == len(self.layers) and all(type(x) is DynamicLayer for x in cache.layers):
            cache.layers = [GrowLayer(k, v, room, round_bf16=self.bf16) for k, v in self.layers]
            return cache
        if not self.said_cache:  # the same answers, more slowly: said once
            self.said_cache = True
            kinds = sorted({type(x).__name__ for x in cache.layers} - {"DynamicLayer"}) or ["a different layer count"]
            log.warning("%s: its model's cache has %s layers, which the decode engine does not grow in place: each "
                        "decode step copies the cache and new requests are prefilled apart from the running batch "
                        "(the same answers, more slowly)", self.served.id, ", ".join(kinds))
        for i, (k, v) in enumerate(self.layers):
            cache.update(k, v, i)
        return cache

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
        self.seqs, self.layers, self.mask, self.cache = [], [], None, None
        return jobs

    def _next(self, seqs: list[Sequence], logits: torch.Tensor) -> None:
        """Each sequence's next token from its row of ``logits``: the likeliest, or for an answer that
        must be JSON the likeliest that keeps it JSON (see _json_token)."""
        greedy = logits.float().argmax(-1).tolist()  # the same index; bf16's argmax is 4x slower on a CPU
        for i, seq in enumerate(seqs):
            self._advance(seq, greedy[i] if seq.top is None else self._json_token(seq, logits[i]))

    def _json_token(self, seq: Sequence, row: torch.Tensor) -> int:
        """The likeliest of the ``JSON_CANDIDATES`` likeliest tokens after which the answer is still the
        start of a JSON document (``seq.top``: what it opens with) that the budget left can close; if none
        is, the token of the next character of the shortest completion. A whole document ends the answer."""
        from tunewise.serve.jsonprefix import json_prefix

        left = seq.limit - len(seq.tokens) - 1  # tokens that may follow this one
        before = self.tok.decode(seq.tokens, skip_special_tokens=True)
        for token in row.topk(min(JSON_CANDIDATES, row.numel())).indices.tolist():
            if token in self.stops:
                continue
            text = self.tok.decode(seq.tokens + [token], skip_special_tokens=True)
            state = json_prefix(text, seq.top) if text != before else None
            if state is not None and state.ok and len(state.closer) <= left:
                seq.complete = state.complete
                return token
        state = json_prefix(before, seq.top)
        token = self._char_token(state.closer[:1]) if state.ok and state.closer else None
        if token is None:  # cannot happen with a byte-level vocabulary; the answer's check then says why
            log.warning("%s: no token continues the JSON answer %r", self.served.id, before[-80:])
            seq.complete = True
            return int(row.argmax())
        seq.complete = json_prefix(self.tok.decode(seq.tokens + [token], skip_special_tokens=True), seq.top).complete
        return token

    def _char_token(self, char: str) -> int | None:
        """A token that decodes to exactly ``char`` (looked up once per character)."""
        if char not in self.char_tokens:
            ids = self.tok.encode(char, add_special_tokens=False)
            found = next((t for t in ids[:1] if self.tok.decode([t]) == char), None)
            if found is None:
                found = next((t for t in range(len(self.tok)) if self.tok.decode([t]) == char), None)
            self.char_tokens[char] = found
        return self.char_tokens[char]

    def _advance(self, seq: Sequence, token: int) -> None:
        if token in self.stops and seq.top is None:
            seq.done = True
        else:
            seq.tokens.append(token)
            seq.done = len(seq.tokens) >= seq.limit or seq.complete
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

    def _merge(self, new: list[tuple[torch.Tensor, torch.Tensor]], new_mask: torch.Tensor) -> None:
        """Left-pad the running cache or the new rows' to the same width and stack them."""
        self.cache = None
        if not self.seqs:
            self.layers, self.mask = new, new_mask
            return
        width = max(self.mask.shape[1], new_mask.shape[1])
        old_pad, new_pad = width - self.mask.shape[1], width - new_mask.shape[1]
        self.layers = [(torch.cat([_lpad(k, old_pad), _lpad(nk, new_pad)]), torch.cat([_lpad(v, old_pad), _lpad(nv, new_pad)]))
                       for (k, v), (nk, nv) in zip(self.layers, new, strict=True)]
        pad = torch.nn.functional.pad
        self.mask = torch.cat([pad(self.mask, (old_pad, 0)), pad(new_mask, (new_pad, 0))])

    def _running(self) -> int:
        """Drop the sequences whose clients hung up; how many run on."""
        self._drop([i for i, s in enumerate(self.seqs) if s.job.future.done()])
        return len(self.seqs)

    def _step_mask(self) -> torch.Tensor:
        """The running rows' mask with the column of the token a step feeds them."""
        return torch.cat([self.mask, torch.ones((len(self.seqs), 1), dtype=self.mask.dtype)], dim=1)

    def _drop(self, rows: list[int]) -> None:
        if not rows:
            return
        keep = [i for i in range(len(self.seqs)) if i not in set(rows)]
        self.seqs, self.cache = [self.seqs[i] for i in keep], None
        if not keep:
            self.layers, self.mask = [], None
            return
        idx = torch.tensor(keep)
        mask = self.mask[idx]
        start = int((mask.sum(0) > 0).nonzero()[0])  # columns every remaining row pads are cut
        self.mask = mask[:, start:]
        self.layers = [(k[idx][:, :, start:], v[idx][:, :, start:]) for k, v in self.layers]


def _decode_kernel(model) -> None:
    """Route the model's attention through serve.attention (its decode kernel for the engine's steps,
    transformers' sdpa for everything else) where it uses sdpa."""
    from tunewise.serve.attention import register

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is not None and getattr(config, "_attn_implementation", None) == "sdpa":
        base.set_attn_implementation(register())


def _lpad(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, 0, n, 0)) if n else x
