"""The few plain types every stage shares."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from tunewise.interrupt import check as check_interrupt

ProgressFn = Callable[[str, int], Callable[..., None]]
"""``progress(description, total)`` returns an ``advance(n, **fields)`` callback (fields: e.g. rate).

Every long step of the library takes one, defaulting to ``no_progress``; the CLI passes Rich bars."""


def no_progress(description: str, total: int) -> Callable[..., None]:
    # No bar, but each tick still honours a pending Ctrl-C (see tunewise.interrupt).
    return lambda n, **fields: check_interrupt()


def canonical_json(value: Any) -> str:
    """The one serialisation of a JSON target (extraction fields) everywhere: loading, few-shot
    examples, training targets and scoring all see the same text for the same value."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@dataclass
class Record:
    """One example: a stable id, the model input, the expected target, and where it came from."""

    id: str
    input: str
    target: str | None
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # "file:line"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict) -> Record:
        return cls(**{k: row[k] for k in ("id", "input", "target", "meta", "source") if k in row})


@dataclass
class Prediction:
    """A rung's answer for one record; ``scores`` maps each label to its log-likelihood. A plain-text
    document (task.type text) has no answer: ``nll`` is its summed negative log-likelihood over its
    ``scored_tokens`` predicted tokens (tunewise.evaluate.perplexity)."""

    id: str
    output: str
    scores: dict[str, float] | None = None
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    nll: float | None = None
    scored_tokens: int = 0

    def to_json(self) -> dict:
        out = asdict(self)
        if self.nll is None:  # only a scored document has them
            del out["nll"], out["scored_tokens"]
        return out


@dataclass
class Cost:
    """What a rung spent: training wall time, tokens and FLOPs; inference wall time, prompt tokens and FLOPs."""

    train_seconds: float = 0.0
    train_tokens: int = 0
    predict_seconds: float = 0.0
    predict_examples: int = 0
    prompt_tokens: int = 0
    train_flops: float = 0.0
    """FLOPs of training (see tunewise.evaluate.cost); what training is priced by."""
    train_eval_tokens: int = 0
    """Val tokens evaluated during training to choose the checkpoint (forward only; in ``train_flops``)."""
    predict_flops: float = 0.0
    """Forward FLOPs of the requests predicted (generated tokens included); what a request is priced by."""
    decode_tokens: int = 0
    """Tokens generated one at a time (after the prompt's forward pass)."""
    decode_flops: float = 0.0
    """The part of ``predict_flops`` spent generating those tokens."""
    decode_bytes: float = 0.0
    """Bytes those tokens read in 16-bit: weights once per token plus the KV cache; a GPU's decode time."""

    @property
    def ms_per_example(self) -> float:
        return 1000.0 * self.predict_seconds / max(self.predict_examples, 1)

    @property
    def train_tokens_per_second(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds else 0.0


def chat_text(message: dict) -> str:
    """An assistant turn as plain text: its content, then its tool calls (if any) as one JSON line
    ``{"tool_calls": [{"name": ..., "arguments": ...}]}`` (arguments parsed when they are JSON text).

    This is the evaluation target of a tool-call turn and how a template without tool support sees it.
    """
    import json

    content = message.get("content") or ""
    calls = message.get("tool_calls") or []
    if not calls:
        return content
    shown = []
    for call in calls:
        fn = call.get("function") or {}
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                pass
        shown.append({"name": fn.get("name"), "arguments": args})
    text = json.dumps({"tool_calls": shown}, ensure_ascii=False)
    return f"{content}\n{text}" if content else text
