"""Measure the peak memory growth of a few training steps on CPU; run as a subprocess.

usage: python measure_cpu.py MODEL_DIR BATCH SEQ_LEN METHOD [METHOD …]  → one JSON line, by method.

The baseline is the resident set after the model and optimizer are built; the peak is Linux's
high-water mark (VmHWM), reset just before training by writing 5 to /proc/self/clear_refs, so the
model load's own peak does not count (nor an earlier method's: everything is freed in between). The growth is what training adds: gradients, optimizer
state, activations and logits.
"""

from __future__ import annotations

import gc
import json
import re
import sys


def _kib(field: str) -> int:
    status = open("/proc/self/status").read()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) * 1024


def main(model_dir: str, method: str, batch: int, seq_len: int, steps: int = 2) -> dict:
    import torch

    torch.set_num_threads(1)
    from tunewise.models.load import load_model

    torch.manual_seed(0)
    model = load_model(model_dir)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, seq_len))
    baseline = _kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    peak = _kib("VmHWM")
    del model, optimizer, loss
    gc.collect()
    return {"baseline": baseline, "peak": peak, "growth": peak - baseline}


if __name__ == "__main__":
    model_dir, batch, seq, *methods = sys.argv[1:]
    print(json.dumps({m: main(model_dir, m, int(batch), int(seq)) for m in methods}))
