"""The decode engine's kernels (serve/attention.py): grouped-head attention for one token under bf16
autocast computes what torch's sdpa kernel computes (within one bf16 step), only in engine decode
steps; the growing KV cache holds what transformers' DynamicLayer holds."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from tunewise.rungs.base import LabelScorer
from tunewise.serve.attention import DECODING, GrowLayer, decode_attention
from tunewise.serve.registry import Served


class _Module:  # what the attention functions read of an attention layer
    num_key_value_groups = 4
    is_causal = True
    training = False


def _inputs(b=5, heads=8, groups=2, keys=37, dim=16, q_len=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, heads, q_len, dim, generator=g)
    k = torch.randn(b, groups, keys, dim, generator=g)
    v = torch.randn(b, groups, keys, dim, generator=g).to(torch.bfloat16)  # v_proj's output under autocast
    mask = torch.ones(b, 1, q_len, keys, dtype=torch.bool)
    mask[::2, :, :, :7] = False  # left padding on some rows
    return q, k, v, mask


@pytest.mark.parametrize("masked", [True, False])
def test_decode_attention_is_sdpa_under_bf16_autocast_within_a_bf16_step(masked):
    q, k, v, mask = _inputs()
    mask = mask if masked else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, _ = sdpa_attention_forward(_Module(), q, k, v, mask, scaling=0.25)
        token = DECODING.set(True)
        try:
            got, _ = decode_attention(_Module(), q, k, v, mask, scaling=0.25)
        finally:
            DECODING.reset(token)
    assert got.shape == want.shape and got.dtype == want.dtype == torch.bfloat16
    # bf16 has 8 bits of mantissa: one unit in the last place is 2**-8 relative
    torch.testing.assert_close(got.float(), want.float(), rtol=2 ** -7, atol=2 ** -8)


def test_grouped_attention_over_a_prompt_is_sdpa_under_bf16_autocast_within_a_bf16_step():
    """The packed forward's attention for a new prompt (several queries, causal after a prefix, some
    keys masked) computes what sdpa computes under bf16 autocast."""
    from tunewise.serve.attention import _grouped

    q, k, v, _ = _inputs(b=1, keys=19, q_len=7)
    mask = torch.ones((7, 19), dtype=torch.bool).tril(12)[None, None]  # a prefix of 12, then causal
    mask[..., 3] = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, _ = sdpa_attention_forward(_Module(), q, k, v, mask, scaling=0.25, is_causal=False)
        got, _ = _grouped(q, k, v, mask, 0.25)
    assert got.shape == want.shape and got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), rtol=2 ** -7, atol=2 ** -8)


def test_decode_attention_is_sdpa_itself_outside_engine_steps():
    q, k, v, mask = _inputs(q_len=4, keys=40)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, _ = sdpa_attention_forward(_Module(), q, k, v, mask, scaling=0.25)
        assert torch.equal(decode_attention(_Module(), q, k, v, mask, scaling=0.25)[0], want)  # not in a step
        token = DECODING.set(True)
        try:  # in a step, but four query tokens (a prefill): sdpa
            assert torch.equal(decode_attention(_Module(), q, k, v, mask, scaling=0.25)[0], want)
        finally:
            DECODING.reset(token)
    q1, k1, v1, m1 = _inputs()
    want = sdpa_attention_forward(_Module(), q1, k1, v1.float(), m1, scaling=0.25)[0]
    token = DECODING.set(True)
    try:  # fp32 (no autocast): sdpa, bit for bit
        assert torch.equal(decode_attention(_Module(), q1, k1, v1.float(), m1, scaling=0.25)[0], want)
    finally:
        DECODING.reset(token)


def test_the_growing_cache_holds_what_dynamic_layer_holds():
    g = torch.Generator().manual_seed(1)
    k0, v0 = torch.randn(3, 2, 5, 4, generator=g), torch.randn(3, 2, 5, 4, generator=g)
    grow, plain = GrowLayer(k0, v0.to(torch.bfloat16), room=2), DynamicLayer()
    plain.update(k0, v0.to(torch.bfloat16))
    assert grow.values.dtype == plain.values.dtype  # both stored in the keys' dtype
    for step in range(5):  # past its room: the buffer grows
        k, v = torch.randn(3, 2, 1, 4, generator=g), torch.randn(3, 2, 1, 4, generator=g).to(torch.bfloat16)
        a, b = grow.update(k, v), plain.update(k, v)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), step
        assert grow.get_seq_length() == plain.get_seq_length() == 6 + step


def test_a_cache_rounded_to_bf16_attends_exactly_as_one_rounded_at_each_step():
    """Under bf16 autocast, keys/values stored already rounded (in fp32) give the decode step's attention
    bit for bit what rounding the whole cache in the step gives, without the copy."""
    from tunewise.serve.attention import _grouped

    q, k, v, mask = _inputs(keys=30)
    v = v.float()
    grow = GrowLayer(k[..., :29, :], v[..., :29, :], room=3, round_bf16=True)
    keys, values = grow.update(k[..., 29:, :], v[..., 29:, :])
    assert keys.dtype == torch.float32 and torch.equal(keys, k.to(torch.bfloat16).float())
    assert torch.equal(values, v.to(torch.bfloat16).float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, _ = _grouped(q, k, v, mask, 0.25)
        got, _ = _grouped(q, keys, values, mask, 0.25, rounded=True)
    assert torch.equal(got, want)


ARCHITECTURES = {  # small random models of families the engine may serve, each with its own attention quirks
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),  # q/k/v biases
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 24}),  # q/k norms, head_dim != hidden / heads
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": 6}),  # a window shorter than the prompt
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", {"head_dim": 16, "query_pre_attn_scalar": 20,
                                                         "sliding_window": 6}),  # its own scaling, local layers
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),  # fused qkv
}


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_a_decode_step_through_the_kernel_matches_sdpa_on_other_model_families(arch):
    """One decode step of a left-padded batch under bf16 autocast: the same next-token logits (to bf16
    rounding) with the engine's kernel as with transformers' sdpa, on model families other than Llama."""
    import copy

    import transformers
    from transformers import DynamicCache

    from tunewise.serve.attention import register

    config_name, model_name, extra = ARCHITECTURES[arch]
    config = getattr(transformers, config_name)(
        vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, **extra)
    torch.manual_seed(0)
    model = getattr(transformers, model_name)(config).eval()
    model.set_attn_implementation("sdpa")
    ids = torch.randint(1, 97, (3, 11))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, :4] = 0  # left padding
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        cache = DynamicCache(config=model.config)
        model(input_ids=ids, attention_mask=mask[:, :11], position_ids=positions[:, :11], past_key_values=cache,
              use_cache=True)
        step = {"input_ids": torch.randint(1, 97, (3, 1)), "attention_mask": mask, "position_ids": positions[:, 11:]}
        want = model(**step, past_key_values=copy.deepcopy(cache), use_cache=True).logits
        model.set_attn_implementation(register())
        token = DECODING.set(True)
        try:
            got = model(**step, past_key_values=copy.deepcopy(cache), use_cache=True).logits
        finally:
            DECODING.reset(token)
    # logits of about 0.5 here: a few bf16 steps apart at most (a wrong scale or window is ~0.04 off)
    torch.testing.assert_close(got.float(), want.float(), rtol=0.01, atol=0.01)
    assert got.argmax(-1).tolist() == want.argmax(-1).tolist()


class _Rung(LabelScorer):  # what the decode engine reads of a rung: a random model, prompts as token ids
    def __init__(self, model, precision="fp32"):
        from types import SimpleNamespace

        self.model, self.method = model, None
        self.tokenizer = SimpleNamespace(pad_token_id=0, decode=lambda ids, **kw: " ".join(map(str, ids)))
        self.config = SimpleNamespace(eval=SimpleNamespace(precision=precision, max_new_tokens=6))

    def builder(self):
        from types import SimpleNamespace

        return SimpleNamespace(stop_ids=[])

    def prompt_ids(self, records):  # a shared prefix of 10 tokens, then the text's own, of its own length
        return [list(range(1, 11)) + [11 + sum(map(ord, w)) % 80 for w in r.input.split()] for r in records]


def _served(rung):
    return Served("random/zero-shot", rung, rung.config, None, "generation", [])


class _Job:
    def __init__(self, text, n):
        from tunewise.rungs.saved import request_record

        self.record, self.max_tokens, self.stream, self.result, self.batch_size = request_record(text), n, None, None, 0
        self.future = self

    def done(self):
        return False


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_joins_packed_with_a_decode_step_decode_what_a_prefill_then_a_step_decodes(arch):
    """Requests joining a running batch are prefilled in the batch's next step (their tokens and one
    token of each running sequence packed into one row): the same tokens, in fp32, as a padded prefill
    and a step of its own, on each model family it runs on; a model with a sliding window is left to
    the batch-at-once path."""
    import transformers

    from tunewise.serve.attention import packable, windowed
    from tunewise.serve.engine import DecodeEngine

    config_name, model_name, extra = ARCHITECTURES[arch]
    config = getattr(transformers, config_name)(
        vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, initializer_range=0.3, **extra)
    torch.manual_seed(0)  # weights large enough that one position or one masked key changes the tokens
    model = getattr(transformers, model_name)(config).eval()
    model.set_attn_implementation("sdpa")
    texts = ["x", "p q r s t u v w", "one two three", "a b", "four five six seven eight", "nine ten"]
    budgets = [6, 2, 6, 5, 1, 4]  # rows of different widths: left padding in the running batch

    def decode(pack: bool) -> tuple[list[str], DecodeEngine]:
        engine = DecodeEngine(_served(_Rung(model)), lambda job, delta: None, pack=pack)
        jobs = [_Job(t, n) for t, n in zip(texts, budgets, strict=True)]
        engine.join_many(jobs[:2])
        engine.step()
        engine.join_many(jobs[2:3])  # one joins a running batch
        engine.step()
        engine.join_many(jobs[3:])  # three together, while one of the first two finishes
        while engine.active:
            engine.step()
        return [j.result.output for j in jobs], engine

    if "sliding_window" in extra:  # its cache keeps only the window: the batch-at-once path serves it
        assert windowed(model) and not packable(model)
        return
    assert not windowed(model)
    alone, _ = decode(False)
    packed, engine = decode(True)
    assert engine.pack and engine.packed == 4
    assert [len(a.split()) for a in alone] == budgets and len(set(alone)) == len(alone)
    assert packed == alone
