"""Classification by label log-likelihood, in one batched pass per batch of prompts.

Each prompt runs through the model once with its KV cache kept; the cache is repeated once per
label and every label's answer tokens (label + end of turn) are scored against it. This costs one forward
pass over the prompts plus a few tokens per label, instead of one full pass per label.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch


def native_bf16() -> bool:
    """bf16 matmuls run natively here: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX tiles."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def resolve_precision(precision: str) -> str:
    """The precision a run computes in: ``auto`` is bf16 where it runs natively, else fp32."""
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    return precision


def inference_precision(precision: str):
    """The context every scoring and generation forward runs in: bf16 autocast (matmuls in bf16,
    log-softmax and scores in fp32, as the callers cast logits) or plain fp32."""
    if resolve_precision(precision) == "bf16":
        return torch.autocast("cuda" if torch.cuda.is_available() else "cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


ADAPTER_PARTS = ("lora_", "ia3_", "prompt_encoder", "prefix_encoder", "modules_to_save")
"""Names of PEFT's own modules (adapter weights, kept as trained: small, and read as they are)."""


def store_bf16(model) -> int:
    """Keep a served model's linear weights in bf16 when every rung on it computes in bf16 autocast.

    Autocast rounds each fp32 weight to bf16 on every call (on a CPU that cast costs as much as a
    decode step's matmuls); a weight stored rounded gives bit-identical results under autocast and is
    read at half the bytes. Adapter weights and DoRA's base layers (DoRA takes the norm of its base
    weight outside a matmul) stay fp32; a tied output head gets a bf16 copy of its own, so the input
    embedding is untouched. Only for models that never run outside autocast. Returns how many weights."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if head is not None and embed is not None and head.weight is embed.weight:
        head.weight = torch.nn.Parameter(head.weight.detach().to(torch.bfloat16), requires_grad=False)
    dora = {id(m.base_layer) for m in model.modules()
            if hasattr(m, "base_layer") and len(getattr(m, "lora_magnitude_vector", None) or {})}
    n = 0
    for name, m in model.named_modules():
        if (type(m) is torch.nn.Linear and id(m) not in dora and m.weight.dtype == torch.float32
                and not any(part.startswith(ADAPTER_PARTS) for part in name.split("."))):
            m.weight.data = m.weight.data.to(torch.bfloat16)
            if m.bias is not None:
                m.bias.data = m.bias.data.to(torch.bfloat16)
            n += 1
    return n


def label_token_ids(tokenizer, builder, labels: Sequence[str]) -> list[list[int]]:
    ids = [tokenizer(builder.answer(lab), add_special_tokens=False)["input_ids"] for lab in labels]
    if len({tuple(x) for x in ids}) != len(ids):
        raise ValueError("two labels tokenize to the same tokens; make the labels distinct")
    return ids


MIN_SHARED_PREFIX = 8
"""Shorter shared prefixes are not worth a forward call of their own (scoring and training alike)."""


def common_prefix_length(prompts: list[list[int]]) -> int:
    """Length of the longest token prefix all prompts share, leaving each at least one own token."""
    if not prompts:
        return 0
    shortest = min(len(p) for p in prompts) - 1
    first = prompts[0]
    n = 0
    while n < shortest and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


def starts_with(prompts: list[list[int]], prefix: list[int]) -> list[bool]:
    """Whether each prompt starts with ``prefix`` (not empty) and has at least one own token after it:
    the prompts a cached prefix can start (a prompt whose tokens merge across its end cannot)."""
    n = len(prefix)
    return [bool(prefix) and len(p) > n and p[:n] == prefix for p in prompts]


def _left_pad(batch: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(x) for x in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, x in enumerate(batch):
        ids[i, width - len(x):] = torch.tensor(x, dtype=torch.long)
        mask[i, width - len(x):] = 1
    return ids, mask


def padded_after(prompts: list[list[int]], pad_id: int, prefix_len: int = 0):
    """(ids, mask, positions) of prompts left-padded to one width after a cached prefix of
    ``prefix_len`` tokens every row shares: the mask covers prefix and prompt, and positions count
    real tokens only, so a padded prompt sees the positions it has alone."""
    ids, mask = _left_pad(prompts, pad_id)
    if prefix_len:
        mask = torch.cat([torch.ones((len(prompts), prefix_len), dtype=torch.long), mask], dim=1)
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)[:, prefix_len:]


@torch.inference_mode()
def score_labels(
    model,
    prompts: list[list[int]],
    labels: list[list[int]],
    pad_id: int,
    batch_size: int = 8,
    prefix_cache=None,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Return a (len(prompts), len(labels)) tensor of summed answer log-probabilities.

    ``prefix_cache``: (length, cache) of a prefix shared by every prompt (few-shot examples),
    computed once; prompts then hold only the tokens after it. Without one, the longest common
    token prefix of the prompts (system prompt + instruction) is found and cached the same way.
    """
    model.eval()
    if prefix_cache is None:
        shared = common_prefix_length(prompts)
        if shared >= MIN_SHARED_PREFIX:
            prefix_cache = cache_prefix(model, prompts[0][:shared])
            prompts = [p[shared:] for p in prompts]
    n_lab = len(labels)
    lab_width = max(len(x) for x in labels)
    lab_ids = torch.full((n_lab, lab_width), pad_id, dtype=torch.long)
    lab_mask = torch.zeros((n_lab, lab_width), dtype=torch.long)
    for j, x in enumerate(labels):
        lab_ids[j, : len(x)] = torch.tensor(x)
        lab_mask[j, : len(x)] = 1
    out = torch.empty((len(prompts), n_lab))
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        out[start : start + len(chunk)] = _score_chunk(model, chunk, lab_ids, lab_mask, pad_id, prefix_cache)
        if on_batch:
            on_batch(len(chunk))
    return out


def _score_chunk(model, chunk, lab_ids, lab_mask, pad_id, prefix_cache):
    prefix_len, shared = prefix_cache if prefix_cache is not None else (0, None)
    ids, mask, positions = padded_after(chunk, pad_id, prefix_len)
    cache = copy_cache(shared, len(chunk), model.config)
    first = model(
        input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
        use_cache=True, logits_to_keep=1,
    )
    first_logp = torch.log_softmax(first.logits[:, -1].float(), dim=-1)  # (b, vocab)
    scores = first_logp[:, lab_ids[:, 0]].clone()  # (b, n_lab)
    if lab_ids.shape[1] > 1:
        scores += _label_tails(model, first.past_key_values, mask, lab_ids, lab_mask)
    return scores


def _label_tails(model, cache, mask, lab_ids, lab_mask) -> torch.Tensor:
    """Summed log-probabilities of every label's tokens after its first, all labels in one call.

    Each row's labels ride side by side after its prompt in the one cache (no copy of the prompt per
    label): a 4D mask lets label j's tokens see the prompt and label j's earlier tokens only, and
    positions restart at the prompt's end for each label. Same numbers as one sequence per label."""
    b, past = mask.shape
    n_lab, w = lab_ids.shape
    span = w - 1
    feed = lab_ids[:, :-1].reshape(1, n_lab * span).expand(b, -1)  # (b, n_lab*span)
    q = n_lab * span
    own = lab_mask[:, :-1].reshape(-1).bool()  # a label's padding is never attended to
    block = torch.block_diag(*[torch.tril(torch.ones(span, span, dtype=torch.bool))] * n_lab) & own.unsqueeze(0)
    block |= torch.eye(q, dtype=torch.bool)  # a padded query still needs one key (its output is unused)
    allowed = torch.cat([mask.bool().unsqueeze(1).expand(b, q, past), block.unsqueeze(0).expand(b, q, q)], dim=2)
    dtype = next(model.parameters()).dtype
    attn = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min).unsqueeze(1)
    start = mask.sum(-1, keepdim=True)  # (b, 1): real tokens before the answer
    pos = start + torch.arange(span).repeat(n_lab).unsqueeze(0)
    out = model(input_ids=feed, attention_mask=attn, position_ids=pos, past_key_values=cache, use_cache=True)
    logp = torch.log_softmax(out.logits.float(), dim=-1)  # (b, q, vocab)
    target = lab_ids[:, 1:].reshape(1, q, 1).expand(b, -1, -1)
    tok = logp.gather(-1, target).squeeze(-1) * lab_mask[:, 1:].reshape(1, q)
    return tok.view(b, n_lab, span).sum(-1)


def cache_prefix(model, prefix_ids: list[int]):
    """Run a shared prefix once; return (length, cache) for ``score_labels``."""
    from transformers import DynamicCache

    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        model(input_ids=torch.tensor([prefix_ids]), past_key_values=cache, use_cache=True, logits_to_keep=1)
    return len(prefix_ids), cache


def copy_cache(shared, batch: int, config):
    """A new cache holding ``shared``'s keys and values once per row of a batch of ``batch`` (empty
    for None); the shared tensors are never written (a cache layer's update concatenates into new ones)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=config)
    for i, layer in enumerate(shared.layers if shared is not None else []):
        cache.update(layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1), i)
    return cache


@torch.inference_mode()
def generate(model, prompts: list[list[int]], pad_id: int, eos_id: int | list[int], max_new_tokens: int = 64,
             batch_size: int = 8, on_batch: Callable[[int], None] | None = None) -> list[list[int]]:
    """Greedy continuations of left-padded prompts, cut at the first stop token.

    ``eos_id``: the stop token(s): the template's end of turn (``PromptBuilder.stop_ids``), which
    need not be the tokenizer's EOS.
    """
    model.eval()
    stops = [eos_id] if isinstance(eos_id, int) else list(eos_id)
    out: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        ids, mask = _left_pad(chunk, pad_id)
        gen = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=pad_id, eos_token_id=stops,
        )[:, ids.shape[1]:]
        for row in gen.tolist():
            end = next((i for i, t in enumerate(row) if t in stops), len(row))
            out.append(row[:end])
        if on_batch:
            on_batch(len(chunk))
    return out
