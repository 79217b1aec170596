"""Model readiness: can this model be fine-tuned and served by tunewise, and what should I know first?

Nothing here runs model code: the parameter count comes from the safetensors headers (or, for
pickle weights, which are never unpickled, from the config's shapes), the module names from a
model built on the meta device, and ``trust_remote_code`` is never set. A bundled alias or a
.gguf file is converted once with ``resolve`` (cached) and the converted folder is inspected; the
report names the GGUF source and its quantisation.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tunewise import assets
from tunewise.core import ProgressFn, no_progress
from tunewise.families import from_folder
from tunewise.models.load import ModelError, resolve, weight_format
from tunewise.rungspec import FULL, LORA, QLORA

ROUND_TRIP_TEXT = "Hello, world! Ünïcödé café 123 — tabs\tand\nnewlines."
LICENCE_NAMES = ("LICENSE", "LICENCE", "LICENSE.txt", "LICENSE.md", "LICENCE.txt", "LICENCE.md", "COPYING")


@dataclass
class Readiness:
    path: str
    source: str
    source_format: str
    architecture: str
    model_type: str
    parameters: int
    context_length: int | None
    chat_template: bool
    eos_token: str | None
    pad_token: str | None
    weight_format: str
    licence: str | None
    tokenizer_round_trip: bool
    peft_targets: list[str]
    methods: dict[str, str]
    warnings: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.weight_format == "safetensors" and self.tokenizer_round_trip and self.eos_token is not None

    def to_dict(self) -> dict:
        return asdict(self) | {"ready": self.ready}


def safetensors_params(folder: Path) -> int:
    """Sum of tensor sizes from the safetensors headers, without reading the weights."""
    total = 0
    for file in sorted(Path(folder).glob("*.safetensors")):
        with open(file, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        for name, meta in header.items():
            if name != "__metadata__":
                n = 1
                for d in meta["shape"]:
                    n *= d
                total += n
    return total


def meta_linear_names(config) -> list[str]:
    """Names of the linear layers inside the transformer blocks (PEFT's target_modules), via a meta model."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    names = set()
    output = model.get_output_embeddings()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not output:
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def find_licence(folder: Path, readme_key: str = "license") -> str | None:
    for name in LICENCE_NAMES:
        if (folder / name).is_file():
            first = (folder / name).read_text(encoding="utf-8", errors="replace").strip().splitlines()
            return f"{name}: {first[0].strip() if first else '(empty)'}"
    readme = folder / "README.md"
    if readme.is_file():
        for line in readme.read_text(encoding="utf-8", errors="replace").splitlines()[:40]:
            if line.strip().lower().startswith(f"{readme_key}:"):
                return f"README.md: {line.split(':', 1)[1].strip()}"
    return None


def _source(spec: str) -> tuple[str, str, str | None]:
    """(kind, format, licence known from the source) of a model spec, before resolving it."""
    if spec in assets.MODEL_ALIASES:
        asset = assets.MODEL_ALIASES[spec]
        return f"bundled alias ({asset.pip_spec})", f"gguf ({asset.relpath})", asset.licence
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        return "gguf file", f"gguf ({path.name})", None
    return "local folder", "", None


def _round_trip(tok) -> bool:
    ids = tok.encode(ROUND_TRIP_TEXT, add_special_tokens=False)
    return tok.decode(ids, skip_special_tokens=True) == ROUND_TRIP_TEXT


def _token_checks(tok, config, warnings: list[str]) -> None:
    vocab = getattr(config, "vocab_size", None) or len(tok)
    if tok.eos_token is None:
        warnings.append("no EOS token: a fine-tuned model would not learn to stop")
    elif tok.eos_token_id is not None and tok.eos_token_id >= vocab:
        warnings.append(f"EOS id {tok.eos_token_id} is outside the model's vocabulary ({vocab})")
    if tok.pad_token is None:
        warnings.append("no pad token: tunewise pads with EOS and masks padding out of the loss")
    elif tok.pad_token_id is not None and tok.pad_token_id >= vocab:
        warnings.append(f"pad id {tok.pad_token_id} is outside the model's vocabulary ({vocab})")
    elif tok.pad_token == tok.eos_token:
        warnings.append("pad token = EOS: fine for tunewise (padding is masked by attention), but a "
                        "collator that masks by token id would also hide the answer's final EOS")
    if len(tok) > vocab:
        warnings.append(f"the tokenizer has {len(tok)} tokens but the model only {vocab} embeddings")


def _count_params(folder: Path, fmt: str, warnings: list[str]) -> int:
    """From the safetensors headers; never by opening pickle weights (config.json's shapes instead)."""
    if fmt == "safetensors":
        return safetensors_params(folder)
    if fmt == "pickle":
        warnings.append("pickle weights (*.bin/*.pt) can run arbitrary code when loaded: convert them to "
                        "safetensors; tunewise refuses to load them unless told to")
    else:
        warnings.append("no weight files found")
    try:
        params = from_folder(folder).params()
    except KeyError as e:
        warnings.append(f"parameter count unknown: config.json has no {e.args[0]!r} and the weights were not opened")
        return 0
    warnings.append("parameter count computed from config.json (the weights were not opened)")
    return params


def inspect_model(spec: str, project: Path | None = None, progress: ProgressFn = no_progress) -> Readiness:
    """Readiness report of a bundled alias, a local Hugging Face folder or a .gguf file."""
    assets.offline()
    from transformers import AutoConfig, AutoTokenizer

    kind, source_format, known_licence = _source(spec)
    path = Path(spec).expanduser()
    if kind == "local folder" and not path.exists():
        raise ModelError(f"inspect-model: no such folder or file: {spec}")
    folder = resolve(spec, project, progress)  # a GGUF is converted once, on the progress bar
    fmt = weight_format(folder)
    warnings: list[str] = []
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (ValueError, OSError) as e:
        raise ModelError(f"inspect-model: {folder}: config.json cannot be read without remote code ({e})") from None
    params = _count_params(folder, fmt, warnings)
    try:
        targets = meta_linear_names(config)
    except (ValueError, KeyError, ImportError, TypeError) as e:
        targets = []
        warnings.append(f"transformers cannot build this architecture as a causal LM: {e}")
    try:
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (ValueError, OSError, TypeError) as e:
        found = sorted(p.name for p in Path(folder).iterdir() if "token" in p.name or p.suffix == ".model")
        why = str(e).splitlines()[0].rstrip(": ") if str(e).strip() else type(e).__name__
        raise ModelError(f"inspect-model: {folder}: no usable tokenizer ({why}; tokenizer files present: "
                         f"{', '.join(found) or 'none — add tokenizer.json or tokenizer.model and tokenizer_config.json'})"
                         ) from None
    _token_checks(tok, config, warnings)
    round_trip = _round_trip(tok)
    if not round_trip:
        warnings.append("the tokenizer does not round-trip text (decode(encode(x)) != x): labels may not match")
    chat = bool(getattr(tok, "chat_template", None))
    if not chat:
        warnings.append("no chat template: prompts are built as plain text")
    licence = find_licence(folder) or known_licence
    if licence is None:
        warnings.append("no licence file: check the model's terms before shipping a fine-tune of it")
    methods = {
        FULL: "yes (every parameter trains; see `tunewise estimate` for memory)",
        LORA: f"yes, targets {', '.join(targets)}" if targets else "no linear layers found",
        QLORA: qlora_readiness() if targets else "no linear layers found",
    }
    context = next((getattr(config, k) for k in ("max_position_embeddings", "n_positions", "max_seq_len")
                    if getattr(config, k, None)), None)
    return Readiness(
        path=str(folder), source=kind, source_format=source_format or fmt,
        architecture=(config.architectures or [type(config).__name__])[0], model_type=config.model_type,
        parameters=params, context_length=context, chat_template=chat, eos_token=tok.eos_token,
        pad_token=tok.pad_token, weight_format=fmt, licence=licence, tokenizer_round_trip=round_trip,
        peft_targets=targets, methods=methods, warnings=warnings,
    )


def qlora_support() -> tuple[bool, str]:
    """Whether QLoRA can run here and on what: the one check `inspect-model` and training both use."""
    import importlib.util

    import torch

    if importlib.util.find_spec("bitsandbytes") is None:
        return False, "bitsandbytes is not installed: pip install 'tunewise[qlora]'"
    device = "a CUDA GPU" if torch.cuda.is_available() else "CPU (bitsandbytes' CPU backend; slow)"
    return True, f"4-bit NF4 or 8-bit on {device}"


def qlora_readiness() -> str:
    ok, detail = qlora_support()
    return f"yes, {detail}" if ok else f"no: {detail}"


def render_text(r: Readiness) -> list[str]:
    yes = {True: "yes", False: "NO"}
    lines = [
        f"{r.path}",
        f"  source            {r.source}, {r.source_format}",
        f"  architecture      {r.architecture} ({r.model_type}), {r.parameters / 1e6:,.1f}M parameters",
        f"  context length    {r.context_length or 'unknown'} tokens",
        f"  weights           {r.weight_format}",
        f"  chat template     {yes[r.chat_template]}",
        f"  eos / pad         {r.eos_token!r} / {r.pad_token!r}",
        f"  tokenizer         round-trip {'ok' if r.tokenizer_round_trip else 'FAILS'}",
        f"  licence           {r.licence or 'none found'}",
    ]
    lines += [f"  {m:<17} {v}" for m, v in r.methods.items()]
    lines += [f"warning: {w}" for w in r.warnings]
    lines.append(f"ready: {'yes' if r.ready else 'no'}")
    return lines
