"""The memory estimate against published peak-memory measurements, each within ±30%.

Every figure below is a PyTorch allocator reading (torch.cuda.max_memory_allocated / torchtune's
peak memory stats), which does not see the CUDA context, so it is compared with the estimate's
peak minus its CUDA-context share. The estimate's constants are the same for every case; only the
setup each source states (model, method, precision, optimizer, batch, sequence length,
checkpointing, LoRA targets, loss) changes.
"""

from __future__ import annotations

import pytest

from tunewise.families import family
from tunewise.plan.estimate import GIB, Setup, memory_breakdown

TOLERANCE = 0.30
TORCHTUNE_LORA = ("q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

PUBLISHED = [
    # torchtune README, "Memory and training speed" (pytorch/torchtune README.md at commit 0031bfb0,
    # https://github.com/pytorch/torchtune#memory-and-training-speed): "batch size 2 (without gradient
    # accumulation), a dataset packed to sequence length 2048, and torch compile enabled".
    # Llama 3.1 8B | Full finetune | 1x 4090 | 18.9 GiB. Config recipes/configs/llama3_1/8B_full_single_device.yaml:
    # bf16 weights, bitsandbytes PagedAdamW8bit, optimizer_in_bwd: True, activation checkpointing on,
    # LinearCrossEntropyLoss (chunked: logits are never upcast whole).
    pytest.param("llama-3.1-8b", Setup("full", 2048, 2, "bf16", "paged_adamw8bit", optimizer_in_backward=True,
                                       loss_chunks=8), True, 18.9, id="torchtune-llama3.1-8b-full-4090"),
    # Llama 3.1 8B | LoRA | 1x 4090 | 16.2 GiB. Config llama3_1/8B_lora_single_device.yaml: bf16, LoRA rank 8
    # on q_proj, v_proj, output_proj and the MLP, AdamW (fused), activation checkpointing on,
    # CEWithChunkedOutputLoss (8 chunks).
    pytest.param("llama-3.1-8b", Setup("lora", 2048, 2, "bf16", "adamw", 8, TORCHTUNE_LORA, loss_chunks=8),
                 True, 16.2, id="torchtune-llama3.1-8b-lora-4090"),
    # Llama 3.1 8B | QLoRA | 1x 4090 | 7.4 GiB. Config llama3_1/8B_qlora_single_device.yaml: NF4 base
    # (torchao), bf16 compute, LoRA rank 8 as above, AdamW, activation checkpointing on, chunked loss.
    pytest.param("llama-3.1-8b", Setup("qlora", 2048, 2, "bf16", "adamw", 8, TORCHTUNE_LORA, loss_chunks=8),
                 True, 7.4, id="torchtune-llama3.1-8b-qlora-4090"),
    # PEFT README, "High performance on consumer hardware" (huggingface/peft README.md): one A100 80GB,
    # ought/raft twitter_complaints. bigscience/bloomz-7b1 | PEFT-LoRA PyTorch | 32GB GPU. Script
    # examples/causal_language_modeling/peft_lora_clm_accelerate_ds_zero3_offload.py: fp32 weights
    # (from_pretrained without dtype, no mixed precision), LoRA r=8 on query_key_value (q, k, v), AdamW,
    # batch_size=8, max_length=64 (padded), no checkpointing; peak read with torch.cuda.max_memory_allocated.
    pytest.param("bloomz-7b1", Setup("lora", 64, 8, "fp32", "adamw", 8, ("q_proj", "k_proj", "v_proj")),
                 False, 32.0, id="peft-bloomz-7b1-lora-a100"),
    # Same table: bigscience/T0_3B | Full Finetuning | 47.14GB GPU. Script
    # examples/conditional_generation/peft_lora_seq2seq_accelerate_ds_zero3_offload.py (the T0_3B
    # version): fp32, AdamW, batch_size=8, tweets padded to the longest in the batch (we assume 128
    # tokens), labels padded to the longest class name (4 tokens), no checkpointing.
    pytest.param("t0-3b", Setup("full", 128, 8, "fp32", "adamw", target_len=4), False, 47.14,
                 id="peft-t0-3b-full-a100"),
    # Same table: bigscience/T0_3B | PEFT-LoRA PyTorch | 14.4GB GPU: as above with LoRA r=8 on q and v (PEFT's
    # default targets for T5).
    pytest.param("t0-3b", Setup("lora", 128, 8, "fp32", "adamw", 8, ("q_proj", "v_proj"), target_len=4),
                 False, 14.4, id="peft-t0-3b-lora-a100"),
]


def allocator_peak_gib(model: str, setup: Setup, checkpointing: bool) -> float:
    mem = memory_breakdown(family(model), setup)
    return (mem["peak_checkpointed" if checkpointing else "peak"] - mem["cuda_context"]) / GIB


@pytest.mark.parametrize(("model", "setup", "checkpointing", "published_gib"), PUBLISHED)
def test_estimate_matches_published_peak_memory(model, setup, checkpointing, published_gib):
    estimate = allocator_peak_gib(model, setup, checkpointing)
    assert abs(estimate - published_gib) <= TOLERANCE * published_gib, (
        f"{model} {setup.method}: estimated {estimate:.2f} GiB, published {published_gib} GiB"
    )


def test_parameter_counts_match_the_model_cards():
    # Published totals: Llama-3.1-8B 8.03B, Llama-2-7B 6.74B, Llama-2-13B 13.0B, Llama-3.1-70B 70.6B,
    # bloomz-7b1 7.07B, T0_3B 2.85B, SmolLM2-135M 134.5M (model cards on the Hugging Face Hub).
    expected = {"llama-3.1-8b": 8.03e9, "llama-2-7b": 6.74e9, "llama-2-13b": 13.0e9, "llama-3.1-70b": 70.6e9,
                "bloomz-7b1": 7.07e9, "t0-3b": 2.85e9, "smollm2-135m": 134.5e6}
    for name, n in expected.items():
        assert family(name).params() == pytest.approx(n, rel=0.01), name


def test_same_constants_order_the_methods():
    """QLoRA < LoRA < full, and checkpointing always saves memory: the model's shape, not a fit."""
    arch = family("8b")
    peaks = {m: memory_breakdown(arch, Setup(m, 2048, 2))["peak"] for m in ("qlora", "lora", "full")}
    assert peaks["qlora"] < peaks["lora"] < peaks["full"]
    mem = memory_breakdown(arch, Setup("lora", 2048, 2))
    assert mem["peak_checkpointed"] < mem["peak"]
