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
"""

from __future__ import annotations

import contextvars

import torch
from transformers.cache_utils import DynamicLayer

NAME = "tunewise_decode"
DECODING: contextvars.ContextVar[bool] = contextvars.ContextVar("tunewise_decoding", default=False)


def decode_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     is_causal=None, **kwargs):
    """transformers' attention interface: one query token per sequence under bf16 autocast in an
    engine decode step; anything else is transformers' sdpa, unchanged."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not (DECODING.get() and query.shape[2] == 1 and torch.is_autocast_enabled(query.device.type)
            and torch.get_autocast_dtype(query.device.type) == torch.bfloat16 and not kwargs.get("softcap")):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    b, heads, _, dim = query.shape
    groups = key.shape[1]
    scale = dim ** -0.5 if scaling is None else scaling
    with torch.autocast(query.device.type, enabled=False):
        q = query.to(torch.bfloat16).float().view(b, groups, heads // groups, dim)
        k = key.to(torch.bfloat16).float()
        v = value.to(torch.bfloat16).float()
        scores = (q @ k.transpose(-1, -2)) * scale  # (b, groups, heads per group, keys)
        if attention_mask is not None:
            mask = attention_mask[:, :, -1:, : k.shape[-2]]  # (b, 1, 1, keys)
            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        out = (scores.softmax(-1) @ v).to(torch.bfloat16)
    return out.view(b, heads, 1, dim).transpose(1, 2).contiguous(), None


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

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int):
        super().__init__()
        self.dtype, self.device = keys.dtype, keys.device  # both in the keys' dtype, as DynamicLayer stores them
        self.is_initialized = True
        self.n = keys.shape[-2]
        self.kbuf = self._buffer(keys, self.n + room)
        self.vbuf = self._buffer(values, self.n + room)
        self._view()

    def _buffer(self, x: torch.Tensor, size: int) -> torch.Tensor:
        buf = torch.empty((*x.shape[:-2], size, x.shape[-1]), dtype=self.dtype, device=self.device)
        buf[..., : x.shape[-2], :] = x
        return buf

    def _view(self) -> None:
        self.keys, self.values = self.kbuf[..., : self.n, :], self.vbuf[..., : self.n, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        m = key_states.shape[-2]
        if self.n + m > self.kbuf.shape[-2]:
            self.kbuf, self.vbuf = self._buffer(self.keys, 2 * (self.n + m)), self._buffer(self.values, 2 * (self.n + m))
        self.kbuf[..., self.n : self.n + m, :] = key_states
        self.vbuf[..., self.n : self.n + m, :] = value_states
        self.n += m
        self._view()
        return self.keys, self.values
