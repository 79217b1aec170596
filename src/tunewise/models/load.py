"""Load a base model from a bundled alias, a local Hugging Face folder, or a .gguf file.

A GGUF file is de-quantised once to fp32 safetensors in the cache and reused afterwards.
transformers refuses ``save_pretrained`` on a GGUF-loaded model, so the cached copy is rebuilt
from the config and the state dict.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from tunewise import assets
from tunewise.core import ProgressFn, no_progress
from tunewise.workspace import atomic_dir, sha256_file, write_json

log = logging.getLogger(__name__)


class ModelError(RuntimeError):
    """The base model cannot be found or loaded; the message says what to do."""


def resolve(spec: str, project: Path | None = None, progress: ProgressFn = no_progress) -> Path:
    """Turn a model spec into a local Hugging Face folder (converting a GGUF file if needed)."""
    if spec in assets.MODEL_ALIASES:
        return gguf_to_hf(assets.asset_path(assets.MODEL_ALIASES[spec]), progress)
    path = Path(spec).expanduser()
    if not path.is_absolute() and project is not None and (Path(project) / path).exists():
        path = Path(project) / path
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"model.base: no such GGUF file: {path}")
        return gguf_to_hf(path, progress)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"model.base: {path} has no config.json (not a Hugging Face model folder)")
        return path
    known = ", ".join(sorted(assets.MODEL_ALIASES))
    raise ModelError(f"model.base: '{spec}' is not a bundled alias ({known}), a folder or a .gguf file")


@contextlib.contextmanager
def _gguf_bar(progress: ProgressFn):
    """transformers' GGUF reader draws a tqdm bar of its own (a stray line under the CLI, which turns
    transformers' bars off); draw ours instead, by tensors de-quantised, silent by default."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    def bar(items, desc: str = "", **_):
        items = list(items)
        advance = progress("de-quantising GGUF tensors", len(items))
        for item in items:
            yield item
            advance(1)

    real = gguf_utils.tqdm
    gguf_utils.tqdm = bar
    try:
        yield
    finally:
        gguf_utils.tqdm = real


def gguf_to_hf(gguf: Path, progress: ProgressFn = no_progress) -> Path:
    """De-quantise ``gguf`` to an fp32 safetensors folder in the cache, once; return the folder."""
    key = f"{gguf.stem}-{sha256_file(gguf)[:16]}"
    target = assets.cache_dir() / "models" / key
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    with open(gguf, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelError(f"{gguf}: not a GGUF file (it does not start with the GGUF magic bytes)")
    assets.offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to fp32 safetensors (once) in %s", gguf.name, target)
    title = f"converting {gguf.name} (once)"
    stage = progress(title, 4)  # each stage takes seconds to a minute on a CPU: name the one running
    stage(0, description=f"{title}: tokenizer")
    with _gguf_bar(progress):
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        stage(1, description=f"{title}: weights")
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    stage(1, description=f"{title}: fp32 model")
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "float32"
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config.pad_token_id = tok.pad_token_id
    stage(1, description=f"{title}: writing safetensors")
    # atomic_dir renames the finished folder into place: a conversion killed half-way leaves
    # only a hidden temporary folder, never a cache entry that looks complete.
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        write_json(tmp / "tunewise-source.json", {"gguf": str(gguf), "sha256": sha256_file(gguf)})
    stage(1, description=title)
    return target


def weight_format(folder: Path) -> str:
    names = {p.name for p in Path(folder).iterdir()}
    if any(n.endswith(".safetensors") for n in names):
        return "safetensors"
    if any(n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in names):
        return "pickle"
    return "none"


def load_tokenizer(folder: Path):
    assets.offline()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


GQA_SWITCH = "TRANSFORMERS_SDPA_FORCE_GQA"


def cpu_attention() -> None:
    """On a CPU, attention reads grouped key/value heads as they are (SDPA's ``enable_gqa``) instead of
    copying each one per query head first, which transformers does whenever a mask is passed (every
    padded batch): the same scores (tests/test_label_scoring.py), 5-7% less time scoring and training
    SmolLM2 (3 key/value heads for 9 query heads; BENCHMARKS.md). Set the variable to 0 to opt out."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault(GQA_SWITCH, "1")


def load_model(folder: Path, allow_pickle: bool = False):
    """Load a causal LM in fp32 from a local folder; pickle weights only when explicitly allowed."""
    assets.offline()
    import torch
    from transformers import AutoModelForCausalLM

    cpu_attention()

    fmt = weight_format(folder)
    if fmt == "pickle" and not allow_pickle:
        raise ModelError(
            f"{folder} holds pickle weights, which can run arbitrary code when loaded; convert them "
            "to safetensors, or pass allow_pickle=True if you trust the source"
        )
    if fmt == "none":
        raise ModelError(f"{folder} has no weight files (*.safetensors)")
    return AutoModelForCausalLM.from_pretrained(
        folder,
        dtype=torch.float32,
        local_files_only=True,
        trust_remote_code=False,
        use_safetensors=fmt == "safetensors",
    )


def load(spec: str, project: Path | None = None, progress: ProgressFn = no_progress):
    """Return (model, tokenizer, folder) for a model spec (a GGUF's one-off conversion shows on ``progress``)."""
    folder = resolve(spec, project, progress)
    return load_model(folder), load_tokenizer(folder), folder
