"""Peak training memory, throughput, time and money, before a single GPU-hour is bought.

One principled model with the same constants for every case (none is tuned to a test):

* weights: parameters from the architecture (families.py) × bytes per parameter of the precision;
  QLoRA stores the transformer layers' linear weights in NF4 with double quantisation (4.127 bits)
  and keeps embeddings, LM head and norms in 16-bit.
* trainable parameters: all (full) or LoRA's A and B, r × (in + out) per adapted linear layer.
* gradients: one per trainable parameter, in its dtype; none kept with the optimizer step fused
  into the backward pass (only the largest tensor's gradient is alive at a time).
* optimizer: AdamW keeps two states per trainable parameter in its dtype; 8-bit AdamW one byte each;
  paged 8-bit AdamW lives in CUDA unified memory that the allocator does not count on the GPU.
* activations, after Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
  Transformer Models" (arXiv:2205.05198), with the widths of today's architectures and a
  memory-efficient attention kernel (SDPA/flash: no s² attention matrix is kept). Per token and
  layer the backward pass keeps: attention — the norm input, the normed input, Q, K, V and the
  attention output (2h + 2·q + 2·kv); MLP — the norm input, the normed input and the four
  intermediate-width tensors of a gated MLP (2h + 4i; a plain MLP keeps two: 2h + 2i). With
  activation checkpointing only each layer's input is kept, plus one layer's full set while it is
  recomputed.
* logits: batch × seq × vocab in the compute dtype plus the fp32 copy the loss upcasts to (a
  chunked loss, as in torchtune, upcasts one chunk at a time).
* encoder-decoder models (T5): encoder layers see seq_len tokens, decoder layers and logits
  target_len tokens.
* framework overhead: 5% of the tensors above for allocator rounding and fragmentation, plus
  0.5 GiB of CUDA context and cuBLAS workspace. PyTorch's own counters
  (``torch.cuda.max_memory_allocated``) do not see the context, so published figures read from
  them are compared with ``peak - cuda_context``.

Throughput comes from the one cost model (tunewise.evaluate.cost): training FLOPs as the ladder
records them (6N per token for full fine-tuning, 4N for LoRA where no weight gradients are computed,
+2N when activations are recomputed; attention left out, as the ladder leaves it out) on the
catalogue GPU at the utilisation stated in tunewise/gpus.yaml. So an estimate and a ladder's training
cost agree on the same run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from tunewise.evaluate.cost import FORWARD, FORWARD_BACKWARD, FORWARD_BACKWARD_FROZEN, gpu_machine, training_flops
from tunewise.families import Arch, family, from_folder
from tunewise.gpus import Gpu, GpuError, catalogue_path, find_gpu, load_gpus  # noqa: F401  (re-exported)
from tunewise.rungspec import FULL, LORA, QLORA

GIB = 1024**3

METHODS = (FULL, LORA, QLORA)  # the methods of the table of rungs the memory model covers
PRECISIONS = ("bf16", "fp16", "fp32", "mixed")
OPTIMIZERS = ("adamw", "adamw8bit", "paged_adamw8bit", "sgd")

NF4_BYTES = 4.127 / 8  # 4-bit NF4 + an fp8 absmax per 64 weights + an fp32 absmax per 256 absmaxes (QLoRA paper)
CUDA_CONTEXT_GIB = 0.5
ALLOCATOR_SHARE = 0.05
FP32_SPEED = 0.5  # fp32 runs on TF32 tensor cores at about half the 16-bit peak


# A bad estimate input (model, method, GPU, size) or catalogue; the message names it. One class with the
# catalogue's own error, so a bad --gpu and a bad --method are caught alike.
PlanError = GpuError


@dataclass(frozen=True)
class Setup:
    method: str = LORA
    seq_len: int = 512
    batch: int = 8
    """Micro-batch per GPU (sequences per forward pass)."""
    precision: str = "bf16"
    """bf16/fp16: pure 16-bit weights and states; mixed: fp32 master weights with 16-bit compute; fp32."""
    optimizer: str = "adamw"
    lora_r: int = 8
    lora_targets: tuple[str, ...] | str = "all-linear"
    optimizer_in_backward: bool = False
    """The optimizer steps each parameter as soon as its gradient exists (torchtune), so gradients do not pile up."""
    loss_chunks: int = 1
    """The loss upcasts logits to fp32 in this many chunks (1: all at once, as Hugging Face does)."""
    target_len: int | None = None
    """Encoder-decoder models: decoder tokens per example (default seq_len)."""
    gpus: int = 1
    """Data-parallel GPUs: each holds a full copy (memory per GPU is unchanged, throughput scales)."""

    def check(self) -> None:
        for key, value, allowed in (("method", self.method, METHODS), ("precision", self.precision, PRECISIONS),
                                    ("optimizer", self.optimizer, OPTIMIZERS)):
            if value not in allowed:
                raise PlanError(f"--{key} {value!r}: expected one of {', '.join(allowed)}")
        sizes = (("seq-len", self.seq_len), ("batch", self.batch), ("gpus", self.gpus), ("lora-r", self.lora_r),
                 ("loss-chunks", self.loss_chunks), ("target-len", self.target_len or 1))
        for key, value in sizes:
            if value <= 0:
                raise PlanError(f"--{key} {value}: must be a positive number")


def resolve_arch(model: str) -> Arch:
    """A size family (`8b`, `llama-3.1-8b`), a bundled alias, a local model folder or a .gguf file."""
    from tunewise import assets

    found = family(model)
    if found is not None:
        return found
    if model in assets.MODEL_ALIASES:
        # The alias is a known architecture: read the shape without converting the GGUF file.
        return family(model.removesuffix("-instruct")) or _from_resolved(model)
    path = Path(model).expanduser()
    if path.is_dir() or path.suffix == ".gguf":
        return _from_resolved(model)
    raise PlanError(
        f"--model {model!r}: not a size ({', '.join(['1b', '3b', '7b', '8b', '13b', '70b'])}), a family "
        f"(llama-3.1-8b, mistral-7b, …), a bundled alias or a local model folder"
    )


def _from_resolved(model: str) -> Arch:
    from tunewise.models.load import ModelError, resolve

    try:
        folder = resolve(model)
        return from_folder(folder)
    except ModelError as e:
        raise PlanError(f"--model: {e}") from None
    except KeyError as e:
        raise PlanError(f"--model {model!r}: its config.json has no {e.args[0]!r}; cannot size it") from None


def lora_params(arch: Arch, r: int, targets: tuple[str, ...] | str) -> int:
    """LoRA's A (r × in) and B (out × r) for every adapted linear layer of every layer."""
    shapes = arch.linears()
    names = list(shapes) if targets == "all-linear" else list(targets)
    unknown = [n for n in names if n not in shapes]
    if unknown:
        raise PlanError(f"lora target {unknown[0]!r}: expected some of {', '.join(shapes)} or all-linear")
    per_layer = sum(r * (shapes[n][0] + shapes[n][1]) for n in names)
    return per_layer * (arch.layers + arch.encoder_layers)


def activation_elements_per_token_layer(arch: Arch) -> int:
    h, i = arch.hidden, arch.intermediate
    attention = 2 * h + 2 * arch.q_width + 2 * arch.kv_width
    mlp = 2 * h + (4 * i if arch.gated_mlp else 2 * i)
    return attention + mlp


def memory_breakdown(arch: Arch, s: Setup) -> dict[str, float]:
    """Peak training memory per GPU in bytes, by component, with and without checkpointing."""
    s.check()
    params, linear = arch.params(), arch.layer_linear_params()
    weight_bytes = {"bf16": 2, "fp16": 2, "fp32": 4, "mixed": 4}[s.precision]
    act_bytes = 4 if s.precision == "fp32" else 2
    if s.method == QLORA:
        weights = linear * NF4_BYTES + (params - linear) * 2
    else:
        weights = params * weight_bytes
    if s.method == FULL:
        trainable, train_bytes = params, weight_bytes
    else:
        # PEFT keeps adapter weights in fp32 even on a 16-bit base model, for stable updates.
        trainable, train_bytes = lora_params(arch, s.lora_r, s.lora_targets), 4
    if s.method == FULL and s.precision == "mixed":
        weights += params * 2  # autocast caches a 16-bit copy of every trainable weight for the forward pass
    largest = arch.vocab * arch.hidden if s.method == FULL else trainable
    grads = (largest if s.optimizer_in_backward else trainable) * train_bytes
    optimizer = {"adamw": 2 * train_bytes, "adamw8bit": 2, "paged_adamw8bit": 0, "sgd": 0}[s.optimizer] * trainable
    tokens = s.batch * s.seq_len
    out_tokens = s.batch * (s.target_len or s.seq_len) if arch.encoder_layers else tokens
    per_token = activation_elements_per_token_layer(arch) * act_bytes
    layer_tokens = arch.encoder_layers * tokens + arch.layers * out_tokens
    out = {
        "weights": weights,
        "gradients": grads,
        "optimizer": optimizer,
        "optimizer_on_host": 2 * trainable if s.optimizer == "paged_adamw8bit" else 0,
        "activations": layer_tokens * per_token,
        "activations_checkpointed": layer_tokens * arch.hidden * act_bytes + max(tokens, out_tokens) * per_token,
        "logits": out_tokens * arch.vocab * (act_bytes + 4 / s.loss_chunks),
        "cuda_context": CUDA_CONTEXT_GIB * GIB,
        "trainable_params": trainable,
        "params": params,
    }
    for suffix, act in (("", out["activations"]), ("_checkpointed", out["activations_checkpointed"])):
        tensors = weights + grads + optimizer + act + out["logits"]
        out[f"allocator_overhead{suffix}"] = ALLOCATOR_SHARE * tensors
        out[f"peak{suffix}"] = tensors * (1 + ALLOCATOR_SHARE) + out["cuda_context"]
    return out


def flops_per_token(arch: Arch, s: Setup, checkpointing: bool) -> float:
    """Training FLOPs per token: the weights the token passes through (the embedding lookup is free) at
    the ladder's passes per weight (tunewise.evaluate.cost.training_flops), one more forward pass when
    activations are recomputed."""
    matmul_params = arch.layer_linear_params() + arch.vocab * arch.hidden
    passes = FORWARD_BACKWARD if s.method == FULL else FORWARD_BACKWARD_FROZEN
    return training_flops(matmul_params, 1, passes + (FORWARD if checkpointing else 0))


@dataclass
class Estimate:
    model: str
    setup: dict
    memory_gib: dict[str, float]
    gpu: str
    gpu_memory_gib: float
    fits: bool
    fits_checkpointed: bool
    smallest_gpu: str | None
    smallest_gpu_checkpointed: str | None
    tokens_per_second: float
    mfu: float
    notes: list[str] = field(default_factory=list)
    examples: int | None = None
    epochs: float | None = None
    hours: float | None = None
    cost_usd: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def estimate(model: str, setup: Setup, gpu: str = "A100-80GB", examples: int | None = None,
             epochs: float = 1.0, gpus_path: Path | None = None, arch: Arch | None = None) -> Estimate:
    """Memory, fit, throughput, time and cost of fine-tuning ``model`` with ``setup`` on ``gpu``."""
    arch = arch or resolve_arch(model)
    catalogue = load_gpus(gpus_path)
    chosen = find_gpu(gpu, catalogue)
    mem = memory_breakdown(arch, setup)
    peak, peak_ckpt = mem["peak"] / GIB, mem["peak_checkpointed"] / GIB
    by_size = sorted(catalogue.values(), key=lambda g: (g.memory_gib, g.hourly_usd))
    smallest = next((g.name for g in by_size if peak <= g.memory_gib), None)
    smallest_ckpt = next((g.name for g in by_size if peak_ckpt <= g.memory_gib), None)
    fits, fits_ckpt = peak <= chosen.memory_gib, peak_ckpt <= chosen.memory_gib
    # Checkpointing costs one more forward pass; use it only when it is needed to fit.
    checkpointing = fits_ckpt and not fits
    machine = gpu_machine(chosen, gpus_path)  # the cost model's GPU: the ladder prices training on it too
    speed = machine["flops_per_second"] * (FP32_SPEED if setup.precision == "fp32" else 1)
    tps = setup.gpus * speed / flops_per_token(arch, setup, checkpointing)
    notes = []
    if setup.precision == "bf16" and not chosen.bf16:
        notes.append(f"{chosen.name} has no bf16: train in fp16 (same memory)")
    if setup.method == QLORA:
        notes.append("QLoRA needs a CUDA GPU and bitsandbytes")
    if not fits_ckpt:
        notes.append(f"does not fit on one {chosen.name} even with activation checkpointing")
    elif checkpointing:
        notes.append("fits only with activation checkpointing; time assumes it is on")
    if setup.optimizer == "paged_adamw8bit":
        notes.append("paged optimizer states live in CUDA unified memory and page to the host under pressure")
    result = Estimate(
        model=arch.name, setup={**asdict(setup), "lora_targets": _targets(setup.lora_targets)},
        memory_gib={k: round(v / GIB, 3) for k, v in mem.items() if k not in ("params", "trainable_params")}
        | {"params_billion": round(mem["params"] / 1e9, 4),
           "trainable_params_million": round(mem["trainable_params"] / 1e6, 3)},
        gpu=chosen.name, gpu_memory_gib=chosen.memory_gib, fits=fits, fits_checkpointed=fits_ckpt,
        smallest_gpu=smallest, smallest_gpu_checkpointed=smallest_ckpt,
        tokens_per_second=round(tps, 1), mfu=machine["mfu"], notes=notes,
    )
    if examples is not None:
        if examples <= 0 or epochs <= 0:
            raise PlanError(f"--examples {examples} --epochs {epochs}: both must be positive")
        # Every example counts as seq_len tokens: batches pad to their longest sequence.
        hours = examples * epochs * setup.seq_len / tps / 3600
        result.examples, result.epochs = examples, epochs
        result.hours = round(hours, 4)
        result.cost_usd = round(hours * setup.gpus * chosen.hourly_usd, 2)
    return result


def _targets(t: tuple[str, ...] | str) -> str | list[str]:
    return t if isinstance(t, str) else list(t)


def render_text(e: Estimate) -> list[str]:
    """The estimate as plain lines for the terminal."""
    m, s = e.memory_gib, e.setup
    lines = [
        f"{e.model}: {m['params_billion']:.2f}B parameters, {s['method']} ({m['trainable_params_million']:.1f}M "
        f"trainable), {s['precision']}, {s['optimizer']}, batch {s['batch']} × seq {s['seq_len']}",
        "",
        f"{'peak memory per GPU (GiB)':<34}{'no checkpointing':>18}{'checkpointing':>16}",
    ]
    rows = [("weights", "weights", "weights"), ("gradients", "gradients", "gradients"),
            ("optimizer state", "optimizer", "optimizer"), ("activations", "activations", "activations_checkpointed"),
            ("logits + loss", "logits", "logits"),
            ("allocator overhead (5%)", "allocator_overhead", "allocator_overhead_checkpointed"),
            ("CUDA context", "cuda_context", "cuda_context"), ("total", "peak", "peak_checkpointed")]
    for label, a, b in rows:
        lines.append(f"  {label:<32}{m[a]:>18.2f}{m[b]:>16.2f}")
    if m["optimizer_on_host"]:
        lines.append(f"  (paged optimizer state on the host: {m['optimizer_on_host']:.2f} GiB)")
    yes = {True: "yes", False: "no"}
    lines += [
        "",
        f"fits on {e.gpu} ({e.gpu_memory_gib:g} GiB): {yes[e.fits]} (with checkpointing: {yes[e.fits_checkpointed]})",
        f"smallest catalogued GPU: {e.smallest_gpu or 'none'} "
        f"(with checkpointing: {e.smallest_gpu_checkpointed or 'none'})",
        f"throughput: {e.tokens_per_second:,.0f} tokens/s on {s['gpus']} × {e.gpu} at {e.mfu:.0%} of the 16-bit peak",
    ]
    if e.hours is not None:
        lines.append(f"{e.examples:,} examples × {e.epochs:g} epochs: {_duration(e.hours)}, ${e.cost_usd:,.2f} "
                     f"at the catalogue's hourly price")
    lines += [f"note: {n}" for n in e.notes]
    return lines


def _duration(hours: float) -> str:
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
