"""QLoRA on CPU: LoRA gradients on the 4-bit base match an fp32 copy whose base weights are the
dequantised ones, also after an eval forward pass (bitsandbytes' AVX512-BF16 path breaks this)."""

from __future__ import annotations

import bitsandbytes as bnb
import torch
from peft import LoraConfig, get_peft_model
from transformers import set_seed

from tunewise.models.load import load_model
from tunewise.train.methods import load_quantized


def _lora(model):
    set_seed(0)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
    for name, p in peft.named_parameters():
        if "lora_B" in name:  # B starts at zero, which would leave A without gradient
            torch.manual_seed(hash(name) % 1000)
            p.data.normal_(0, 0.1)
    return peft


def _grads(model, ids):
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)  # the eval pass after which AVX512-BF16 kernels corrupt gradients
    model.train()
    model.zero_grad()
    model(input_ids=ids, labels=ids).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_qlora_grads_match_dequantised_fp32_copy(tiny_model_dir):
    quant = load_quantized(tiny_model_dir, 4)
    layers = [m for m in quant.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.support_avx512bf16_for_cpu is False for m in layers)

    ref = load_model(tiny_model_dir)
    for name, module in quant.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            w = bnb.functional.dequantize_4bit(module.weight.data, module.weight.quant_state)
            ref.get_submodule(name).weight.data = w.to(torch.float32).reshape(ref.get_submodule(name).weight.shape)

    ids = torch.randint(3, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    g_quant, g_ref = _grads(_lora(quant), ids), _grads(_lora(ref), ids)
    assert g_quant.keys() == g_ref.keys() and len(g_quant) > 0
    for name in g_quant:
        assert g_quant[name].abs().sum() > 0, name
        torch.testing.assert_close(g_quant[name], g_ref[name], rtol=1e-3, atol=1e-5, msg=name)
