"""Architecture shapes: standard model families by size, and any local Hugging Face config.

It sits below every stage, beside the GPU catalogue (tunewise.gpus), because several read it:
`tunewise estimate` (tunewise.plan) and `tunewise inspect-model` (tunewise.models.inspect).
Only the numbers that decide memory and FLOPs are kept. Parameter counts are derived from the
shapes (never typed in), so a family and a local folder go through the same arithmetic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Arch:
    name: str
    hidden: int
    layers: int  # decoder layers
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied_embeddings: bool = False
    gated_mlp: bool = True  # SwiGLU/GeGLU: gate, up and down projections
    head_dim: int | None = None  # None: hidden // heads
    encoder_layers: int = 0  # encoder-decoder models (T5): encoder layers; decoder layers add cross-attention
    context: int = 4096
    bias: bool = False  # biases on every linear layer (BLOOM)

    @property
    def dim(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_width(self) -> int:
        return self.heads * self.dim

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.dim

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer in one decoder layer, keyed by the usual PEFT module name."""
        h, i = self.hidden, self.intermediate
        shapes = {"q_proj": (h, self.q_width), "k_proj": (h, self.kv_width), "v_proj": (h, self.kv_width),
                  "o_proj": (self.q_width, h)}
        if self.gated_mlp:
            shapes |= {"gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
        else:
            shapes |= {"up_proj": (h, i), "down_proj": (i, h)}
        return shapes

    def layer_linear_params(self) -> int:
        """Linear weights of all transformer layers (what QLoRA quantises and LoRA adapts)."""
        per_decoder = sum(a * b for a, b in self.linears().values())
        attention = 2 * self.hidden * (self.q_width + self.kv_width)
        # A decoder layer of an encoder-decoder model also has cross-attention; an encoder layer has none.
        cross = attention if self.encoder_layers else 0
        return self.layers * (per_decoder + cross) + self.encoder_layers * per_decoder

    def params(self) -> int:
        """Total parameters: embeddings, layers (linears, norms, biases), final norm, LM head."""
        embed = self.vocab * self.hidden
        head = 0 if self.tied_embeddings else embed
        n_layers = self.layers + self.encoder_layers
        # Two norms per layer, a third in a decoder layer with cross-attention, and one final norm per stack.
        stacks = 2 if self.encoder_layers else 1
        norms = (2 * n_layers + (self.layers if self.encoder_layers else 0) + stacks) * self.hidden
        biases = n_layers * sum(out for _, out in self.linears().values()) if self.bias else 0
        return embed + head + self.layer_linear_params() + norms + biases


def _llama(name: str, hidden: int, layers: int, heads: int, kv: int, inter: int, vocab: int, ctx: int,
           tied: bool = False) -> Arch:
    return Arch(name, hidden, layers, heads, kv, inter, vocab, tied_embeddings=tied, context=ctx)


# Shapes from each model's published config.json on the Hugging Face Hub.
FAMILIES: dict[str, Arch] = {a.name: a for a in (
    _llama("llama-3.2-1b", 2048, 16, 32, 8, 8192, 128256, 131072, tied=True),
    _llama("llama-3.2-3b", 3072, 28, 24, 8, 8192, 128256, 131072, tied=True),
    _llama("llama-2-7b", 4096, 32, 32, 32, 11008, 32000, 4096),
    _llama("llama-3.1-8b", 4096, 32, 32, 8, 14336, 128256, 131072),
    _llama("llama-2-13b", 5120, 40, 40, 40, 13824, 32000, 4096),
    _llama("llama-3.1-70b", 8192, 80, 64, 8, 28672, 128256, 131072),
    _llama("mistral-7b", 4096, 32, 32, 8, 14336, 32768, 32768),
    _llama("qwen2.5-0.5b", 896, 24, 14, 2, 4864, 151936, 32768, tied=True),
    _llama("qwen2.5-7b", 3584, 28, 28, 4, 18944, 152064, 32768),
    _llama("smollm2-135m", 576, 30, 9, 3, 1536, 49152, 8192, tied=True),
    # BLOOM: multi-head attention, a plain GELU MLP of 4x width, biases everywhere, tied embeddings.
    Arch("bloomz-7b1", 4096, 30, 32, 32, 16384, 250880, tied_embeddings=True, gated_mlp=False, bias=True,
         context=2048),
    # T0 (T5 v1.1 LM-adapted, XL): 24 encoder + 24 decoder layers, gated-GELU MLP, untied head.
    Arch("t0-3b", 2048, 24, 32, 32, 5120, 32128, encoder_layers=24, head_dim=64, context=512),
)}

# Size shorthands a user may type: `--model 8b`.
SIZES = {"1b": "llama-3.2-1b", "3b": "llama-3.2-3b", "7b": "llama-2-7b", "8b": "llama-3.1-8b",
         "13b": "llama-2-13b", "70b": "llama-3.1-70b"}


def family(name: str) -> Arch | None:
    key = name.strip().lower()
    return FAMILIES.get(SIZES.get(key, key))


def from_hf_config(config: dict, name: str) -> Arch:
    """Read the shape out of a Hugging Face config.json (Llama-style keys, with the usual aliases)."""
    def get(*keys: str, default=None):
        for k in keys:
            if config.get(k) is not None:
                return config[k]
        if default is None:
            raise KeyError(keys[0])
        return default

    hidden = get("hidden_size", "d_model", "n_embd")
    heads = get("num_attention_heads", "num_heads", "n_head")
    encoder_decoder = bool(config.get("is_encoder_decoder"))
    arch = Arch(
        name=name,
        hidden=hidden,
        layers=get("num_decoder_layers", "num_hidden_layers", "num_layers", "n_layer") if encoder_decoder
        else get("num_hidden_layers", "num_layers", "n_layer"),
        heads=heads,
        kv_heads=get("num_key_value_heads", default=heads),
        intermediate=get("intermediate_size", "d_ff", "n_inner", default=4 * hidden),
        vocab=get("vocab_size"),
        tied_embeddings=bool(config.get("tie_word_embeddings", True)),
        gated_mlp=config.get("hidden_act", "silu") in ("silu", "swiglu") or "gated" in str(
            config.get("feed_forward_proj", "")),
        head_dim=config.get("head_dim") or config.get("d_kv"),
        encoder_layers=get("num_layers", default=0) if encoder_decoder else 0,
        context=get("max_position_embeddings", "n_positions", "max_seq_len", default=2048),
    )
    return arch


def from_folder(folder: Path) -> Arch:
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    return from_hf_config(config, Path(folder).name)


def with_name(arch: Arch, name: str) -> Arch:
    return replace(arch, name=name)
