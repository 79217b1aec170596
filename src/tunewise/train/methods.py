"""Turn a base model into the trainable model of each fine-tuning method.

One plain function per method family, chosen by a dict: full weights, the PEFT adapters (LoRA,
DoRA, prefix tuning, prompt tuning, IA3) and QLoRA (LoRA over a bitsandbytes-quantised base).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from tunewise.assets import require_extra
from tunewise.config import ProjectConfig
from tunewise.rungspec import (
    DORA,
    DPO,
    FULL,
    IA3,
    KTO,
    LORA,
    METHODS,
    PEFT_PREFIX,
    PEFT_PROMPT,
    PREFIX,
    PROMPT_TUNING,
    QLORA,
    spec,
)

log = logging.getLogger(__name__)

# The method names are the table of rungs' (tunewise.rungspec); how each one trains is here.
PROMPT_LEARNING = tuple(m for m in METHODS if spec(m).adapter in (PEFT_PREFIX, PEFT_PROMPT))
"""Methods that learn virtual tokens (prefix and prompt tuning): they own the KV cache and the first positions."""
# Methods whose forward passes keyword arguments through to the base model (logits_to_keep,
# position_ids): the ones that can use sparse logits and padding-free batches.
PASS_THROUGH = (FULL, LORA, DORA, QLORA)
PREFERENCE = (DPO, KTO)
"""Methods trained on preferences by a TRL trainer, on LoRA or full weights (train.<method>.weights)."""


class MethodError(ValueError):
    """A method cannot run with these settings or on this machine; raised before training."""


def _lora(config: ProjectConfig, dora: bool = False):
    from peft import LoraConfig

    lc = config.train.lora
    return LoraConfig(
        r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=lc.target_modules,
        use_dora=dora, task_type="CAUSAL_LM",
    )


def _dora(config: ProjectConfig):
    return _lora(config, dora=True)


def _prefix(config: ProjectConfig):
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(num_virtual_tokens=config.train.num_virtual_tokens, task_type="CAUSAL_LM")


def _prompt_tuning(config: ProjectConfig):
    from peft import PromptTuningConfig

    return PromptTuningConfig(num_virtual_tokens=config.train.num_virtual_tokens, task_type="CAUSAL_LM")


def _ia3(config: ProjectConfig):
    from peft import IA3Config

    # peft's per-architecture defaults (attention k/v and the MLP down projection) are the
    # published IA3 placement; "all-linear" would scale every projection instead.
    targets = config.train.lora.target_modules
    if targets == "all-linear":
        return IA3Config(task_type="CAUSAL_LM")
    return IA3Config(target_modules=targets, feedforward_modules=[], task_type="CAUSAL_LM")


PEFT_CONFIGS = {
    LORA: _lora, DORA: _dora, QLORA: _lora, PREFIX: _prefix, PROMPT_TUNING: _prompt_tuning, IA3: _ia3,
}


def peft_config(config: ProjectConfig):
    """The PEFT config of an adapter method (dpo and kto with LoRA weights use plain LoRA)."""
    method = config.train.method
    if method in PREFERENCE:
        return _lora(config)
    return PEFT_CONFIGS[method](config)


def model_folder(model) -> Path:
    name = getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "")
    if not name or not Path(name).is_dir():
        raise MethodError("qlora: the base model must be loaded from a local folder to be re-loaded quantised")
    return Path(name)


def load_quantized(folder: Path, bits: int):
    """Load ``folder`` with its linear layers quantised by bitsandbytes (4-bit NF4 or 8-bit)."""
    try:
        import bitsandbytes as bnb
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    except ImportError as e:  # pragma: no cover - pinned in the lock file
        raise MethodError(f"qlora needs bitsandbytes ({e}); pip install 'tunewise[qlora]'") from None
    quant = (
        BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
        if bits == 4 else BitsAndBytesConfig(load_in_8bit=True)
    )
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, quantization_config=quant, dtype=torch.float32, device_map="cuda:0" if torch.cuda.is_available() else "cpu",
            local_files_only=True, trust_remote_code=False,
        )
    except (RuntimeError, ValueError, ImportError) as e:
        raise MethodError(f"train.quant_bits={bits}: bitsandbytes cannot quantise on this machine ({str(e).splitlines()[0]})") from None
    disable_avx512_bf16(model, bnb)
    return model


def disable_avx512_bf16(model, bnb=None) -> int:
    """Turn off bitsandbytes' AVX512-BF16 CPU kernel on every 4-bit layer; return how many.

    On CPUs with AVX512-BF16 the fused kernel caches a bf16 weight layout during an eval forward
    and the LoRA gradients of later training steps come out silently wrong.
    """
    if bnb is None:
        import bitsandbytes as bnb
    n = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def prepare_model(model, config: ProjectConfig):
    """Return the model to train: full weights trainable, or a PEFT model around the base."""
    method = config.train.method
    if full_weights(config):
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import get_peft_model

    if method == QLORA:
        model = load_quantized(model_folder(model), config.train.quant_bits)
    return get_peft_model(model, peft_config(config))


def check_precision(precision: str) -> None:
    """Fail with a clear message when mixed precision is asked for on hardware without it."""
    if precision == "fp32":
        return
    from tunewise.evaluate.decode import native_bf16

    cuda = torch.cuda.is_available()
    if precision == "bf16" and not native_bf16():
        raise MethodError("train.precision=bf16 needs a GPU with bf16 or a CPU with AVX512-BF16 or AMX (none "
                          "found); use precision: fp32")
    if precision == "fp16" and not cuda:
        raise MethodError("train.precision=fp16 needs a CUDA GPU (none found); use precision: fp32")


def check_method(config: ProjectConfig) -> None:
    t = config.train
    check_precision(t.precision)
    if t.padding_free and t.method not in PASS_THROUGH:
        raise MethodError(f"train.padding_free: not supported with method {t.method} (full, lora, dora, qlora only)")
    uri = t.mlflow_uri or ""
    if uri and not uri.startswith(("sqlite:", "http:", "https:", "postgresql:", "mysql:")) \
            and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        raise MethodError(f"train.mlflow_uri={uri}: MLflow 3 refuses file stores; use sqlite:///path/mlflow.db "
                          "(or set MLFLOW_ALLOW_FILE_STORE=true)")
    if uri:
        require_extra("mlflow", "mlflow", "train.mlflow_uri")
    if t.method == QLORA:
        from tunewise.models.inspect import qlora_support

        ok, detail = qlora_support()  # the same answer inspect-model gives
        if not ok:
            raise MethodError(f"train.method=qlora: {detail}")
    if t.method == QLORA and t.precision == "fp16":
        raise MethodError("train.precision=fp16 with qlora: use bf16 or fp32")


def output_name(config: ProjectConfig) -> str:
    """Where the trained weights go inside a run folder."""
    return "model" if full_weights(config) else "adapter"


def full_weights(config: ProjectConfig) -> bool:
    """Whether the method trains every weight (full; dpo or kto with weights: full)."""
    t = config.train
    return t.method == FULL or (t.method in PREFERENCE and getattr(t, t.method).weights == FULL)
