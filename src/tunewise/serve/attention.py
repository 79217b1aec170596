"""The decode engine's two kernels for one new token per sequence: attention over grouped key/value
heads under bf16 autocast, and a KV cache that grows in place.

Under bf16 autocast, torch's CPU attention kernel (``scaled_dot_product_attention``) spends about
3.3 ms on one decode token for 32 sequences of ~110 tokens, where the same arithmetic as two small
matmuls takes 0.5 ms: at a batch of 32 it was 40% of a decode step. :func:`decode_attention` computes
what that kernel computes — inputs rounded to bf16, products and softmax in fp32, output rounded to
bf16 — with the query heads of each key/value head grouped, so nothing is repeated. Its output can
differ from the kernel's in the last bf16 bit (another summation order). It serves only the
engine's decode steps (:data:`DECODING`); every other forward pass (prefill, scoring, the ladder's own
generation) still goes to transformers' sdpa path unchanged.

:class:`GrowLayer` keeps a running batch's keys and values in a buffer with room for the tokens
still to come: a step writes its token in place instead of copying the whole cache (``torch.cat``
in transformers' DynamicLayer copies it on every step, 25% of a step at a batch of 32).

:class:`Packed` is one forward pass that prefills new prompts and decodes one token of every running
sequence together (vLLM's mixed batch): the prompts' tokens and the running tokens are packed into
one row, so the linear layers read their weights once for both, and attention is computed per
segment: each new prompt causally over the shared prefix and its own tokens, each running token
over its own row of the running cache. A request joining a busy batch then costs the running
sequences no step of their own.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

import torch
from transformers.cache_utils import DynamicLayer

NAME = "tunewise_decode"
DECODING: contextvars.ContextVar[bool] = contextvars.ContextVar("tunewise_decoding", default=False)
# Set by the engine while its running cache holds keys/values already rounded to bf16 (GrowLayer(round_bf16=True)).
ROUNDED: contextvars.ContextVar[bool] = contextvars.ContextVar("tunewise_rounded", default=False)
# Model types whose attention is plain causal attention through the attention interface and the
# cache's update (no sliding window, no soft-capping): the ones a packed forward may run.
PACKABLE = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3"})


@dataclass
class Packed:
    """One packed forward: new prompts' own tokens (``segments``: (start, length) in the packed row,
    after the shared ``prefix`` keys/values per layer, or None), then one token of each of ``rows``
    running sequences, whose keys/values go into ``running`` (GrowLayers) with ``mask`` (bool,
    rows x cache width after the step)."""

    segments: list[tuple[int, int]]
    prefix: list[tuple[torch.Tensor, torch.Tensor]] | None
    running: list
    mask: torch.Tensor | None
    causal: dict[int, torch.Tensor] = field(default_factory=dict)
    new: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # layer -> prompts' keys/values

    @property
    def width(self) -> int:  # the new prompts' tokens, ahead of the running ones
        return sum(n for _, n in self.segments)

    @property
    def rows(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    def causal_mask(self, n: int, p: int) -> torch.Tensor:
        """(1, 1, n, p + n): query i sees the prefix and its own tokens up to i."""
        if n not in self.causal:
            self.causal[n] = torch.ones((n, p + n), dtype=torch.bool).tril(p)[None, None]
        return self.causal[n]


PACKED: contextvars.ContextVar[Packed | None] = contextvars.ContextVar("tunewise_packed", default=None)
# The attention mask passed to a packed forward: 4-d, so transformers builds none (the plan has the real ones).
PACKED_MASK = torch.ones((1, 1, 1, 1), dtype=torch.bool)


def _config(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "config", None)


def windowed(model) -> bool:
    """Whether some layer of ``model`` attends over a sliding window shorter than its context: its
    cache keeps only the window, which the decode engine's rows of one width cannot hold."""
    config = _config(model)
    window = getattr(config, "sliding_window", None)
    if config is None or not window or not getattr(config, "use_sliding_window", True):
        return False
    types = getattr(config, "layer_types", None)
    if types is not None and all(t == "full_attention" for t in types):
        return False
    return window < (getattr(config, "max_position_embeddings", None) or float("inf"))


def packable(model) -> bool:
    """Whether ``model`` (its base, past any PEFT wrapper) can run a packed forward."""
    config = _config(model)
    return (config is not None and config.model_type in PACKABLE and not windowed(model)
            and getattr(config, "_attn_implementation", None) == NAME)


class PackedLayer(DynamicLayer):
    """A packed forward's cache layer: the running tokens' keys/values go into their rows of the
    running cache (in place); the new prompts' are kept in the plan for their own cache rows."""

    def __init__(self, plan: Packed, index: int):
        super().__init__()
        self.plan, self.index, self.is_initialized = plan, index, True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        w = self.plan.width
        self.plan.new[self.index] = (key_states[:, :, :w], value_states[:, :, :w])
        if self.plan.rows:
            self.plan.running[self.index].update(key_states[0, :, w:].transpose(0, 1).unsqueeze(2),
                                                 value_states[0, :, w:].transpose(0, 1).unsqueeze(2))
        self.keys, self.values = key_states, value_states
        return key_states, value_states


def _packed_attention(module, query, key, value, plan: Packed, scaling, **kwargs):
    """Attention of a packed forward, as (1, tokens, heads, dim): each new prompt over the shared
    prefix and itself, causally; each running token over its row of the running cache."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if kwargs.get("softcap") or kwargs.get("sliding_window"):
        raise ValueError("a packed forward does not do soft-capped or sliding-window attention")
    outs = []
    layer = module.layer_idx
    pk, pv = plan.prefix[layer] if plan.prefix else (None, None)
    for start, n in plan.segments:
        k, v = key[:, :, start:start + n], value[:, :, start:start + n]
        if pk is not None:
            k, v = torch.cat([pk.to(k.dtype), k], dim=2), torch.cat([pv.to(v.dtype), v], dim=2)
        q, mask = query[:, :, start:start + n], plan.causal_mask(n, k.shape[2] - n)
        out, _ = (_grouped(q, k, v, mask, scaling) if _bf16(q)
                  else sdpa_attention_forward(module, q, k, v, mask, scaling=scaling, is_causal=False))
        outs.append(out)
    if plan.rows:
        w, cache = plan.width, plan.running[layer]
        q = query[0, :, w:].transpose(0, 1).unsqueeze(2)  # (rows, heads, 1, dim)
        mask = plan.mask[:, None, None, :]
        if _bf16(q):
            out, _ = _grouped(q, cache.keys, cache.values, mask, scaling, rounded=getattr(cache, "round_bf16", False))
        else:
            out, _ = sdpa_attention_forward(module, q, cache.keys, cache.values, mask, scaling=scaling, is_causal=False)
        outs.append(out.transpose(0, 1))  # (1, rows, heads, dim)
    return torch.cat(outs, dim=1), None


def _bf16(query) -> bool:
    return torch.is_autocast_enabled(query.device.type) and torch.get_autocast_dtype(query.device.type) == torch.bfloat16


def decode_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     is_causal=None, **kwargs):
    """transformers' attention interface: one query token per sequence under bf16 autocast in an
    engine decode step; anything else is transformers' sdpa, unchanged."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plan = PACKED.get()
    if plan is not None:
        return _packed_attention(module, query, key, value, plan, scaling, **kwargs)
    if not (DECODING.get() and query.shape[2] == 1 and _bf16(query) and not kwargs.get("softcap")):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    return _grouped(query, key, value, attention_mask, scaling, rounded=ROUNDED.get())


def _grouped(query, key, value, attention_mask, scaling, rounded: bool = False):
    """Queries over grouped key/value heads, bf16 in and out, fp32 inside, as torch's CPU kernel
    computes under bf16 autocast; ``attention_mask``'s last ``q_len`` rows apply (bool or additive).
    ``rounded``: ``key`` and ``value`` are fp32 holding bf16 values already (no copy to round them)."""
    b, heads, n, dim = query.shape
    groups = key.shape[1]
    scale = dim ** -0.5 if scaling is None else scaling
    with torch.autocast(query.device.type, enabled=False):
        q = query.to(torch.bfloat16).float().reshape(b, groups, heads // groups * n, dim)
        if rounded and key.dtype == value.dtype == torch.float32:
            k, v = key, value
        else:
            k, v = key.to(torch.bfloat16).float(), value.to(torch.bfloat16).float()
        scores = (q @ k.transpose(-1, -2)) * scale  # (b, groups, heads per group x queries, keys)
        if attention_mask is not None:
            mask = attention_mask[:, :, -n:, : k.shape[-2]].unsqueeze(2)  # (b, 1, 1, queries, keys)
            scores = scores.view(b, groups, heads // groups, n, -1)
            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
            scores = scores.view(b, groups, heads // groups * n, -1)
        out = (scores.softmax(-1) @ v).to(torch.bfloat16)
    return out.view(b, heads, n, dim).transpose(1, 2).contiguous(), None


def register() -> str:
    """Register :func:`decode_attention` (and sdpa's mask) with transformers under :data:`NAME`."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

    if NAME not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionInterface.register(NAME, decode_attention)
        AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


class GrowLayer(DynamicLayer):
    """One layer's keys and values for a running decode batch, in a buffer with ``room`` spare
    positions; :meth:`update` writes new tokens in place (and grows the buffer if it must)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int, round_bf16: bool = False):
        super().__init__()
        self.dtype, self.device = keys.dtype, keys.device  # both in the keys' dtype, as DynamicLayer stores them
        # Under bf16 autocast attention reads keys and values rounded to bf16: stored so (in fp32), a
        # decode step's attention need not round the whole cache again (a third of a step at 32 sequences).
        self.round_bf16 = round_bf16 and self.dtype == torch.float32
        self.is_initialized = True
        self.n = keys.shape[-2]
        self.kbuf = self._buffer(keys, self.n + room)
        self.vbuf = self._buffer(values, self.n + room)
        self._view()

    def _buffer(self, x: torch.Tensor, size: int) -> torch.Tensor:
        buf = torch.empty((*x.shape[:-2], size, x.shape[-1]), dtype=self.dtype, device=self.device)
        buf[..., : x.shape[-2], :] = self._round(x)
        return buf

    def _round(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.bfloat16) if self.round_bf16 else x

    def _view(self) -> None:
        self.keys, self.values = self.kbuf[..., : self.n, :], self.vbuf[..., : self.n, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        m = key_states.shape[-2]
        if self.n + m > self.kbuf.shape[-2]:
            self.kbuf, self.vbuf = self._buffer(self.keys, 2 * (self.n + m)), self._buffer(self.values, 2 * (self.n + m))
        self.kbuf[..., self.n : self.n + m, :] = self._round(key_states)
        self.vbuf[..., self.n : self.n + m, :] = self._round(value_states)
        self.n += m
        self._view()
        return self.keys, self.values
