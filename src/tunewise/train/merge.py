"""Reload a trained run's weights, and merge a LoRA adapter into its base for export.

Exports are safetensors with the tokenizer and chat template. Pickle weights and
``trust_remote_code`` are refused unless explicitly allowed: both can run arbitrary code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tunewise.models.load import ModelError, load_model, load_tokenizer, weight_format
from tunewise.rungspec import QLORA
from tunewise.workspace import atomic_dir, write_json


def trained_meta(folder: Path) -> dict:
    path = Path(folder) / "tunewise-train.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _base_folder(adapter: Path) -> Path:
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    base = Path(cfg.get("base_model_name_or_path") or "")
    if not (base / "config.json").exists():
        raise ModelError(f"{adapter}: its base model {base} is not a local folder any more")
    return base


def load_trained(folder: Path, allow_pickle: bool = False):
    """(model, tokenizer) from a run's ``adapter/`` or ``model/`` folder, for evaluation or serving."""
    from tunewise.train.common import check_same_template

    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such trained model folder")
    if weight_format(folder) == "pickle" and not allow_pickle:
        raise ModelError(f"{folder} holds pickle weights, which can run arbitrary code when loaded; "
                         "pass --allow-pickle only if you trust their source")
    tok = load_tokenizer(folder)
    check_same_template(folder, tok)
    if not (folder / "adapter_config.json").exists():
        return load_model(folder, allow_pickle), tok
    from peft import PeftModel

    meta = trained_meta(folder)
    base_dir = _base_folder(folder)
    if meta.get("method") == QLORA:
        # The adapter learned against the quantised base; serve it on the same one.
        from tunewise.train.methods import load_quantized

        base = load_quantized(base_dir, meta.get("quant_bits", 4))
    else:
        base = load_model(base_dir, allow_pickle)
    return PeftModel.from_pretrained(base, folder, is_trainable=False), tok


def merge_adapter(folder: Path, out: Path, allow_pickle: bool = False) -> Path:
    """Merge a LoRA/DoRA/IA3 adapter into a full-precision copy of its base; save safetensors,
    the tokenizer and its chat template to ``out``. A full-weights folder is re-exported as is."""
    folder = Path(folder)
    meta = trained_meta(folder)
    if (folder / "adapter_config.json").exists():
        from peft import PeftModel

        from tunewise.train.methods import PROMPT_LEARNING

        if meta.get("method") in PROMPT_LEARNING:
            raise ModelError(f"{folder}: {meta['method']} adapters add virtual tokens and cannot be merged")
        base = load_model(_base_folder(folder), allow_pickle)
        # qlora adapters merge into the fp32 base: the exported model is not quantised.
        model = PeftModel.from_pretrained(base, folder).merge_and_unload()
    else:
        model = load_model(folder, allow_pickle)
    tok = load_tokenizer(folder)
    with atomic_dir(Path(out)) as tmp:
        model.to(torch.float32).save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        write_json(tmp / "tunewise-train.json", {**meta, "merged_from": str(folder)})
    return Path(out)
