"""Fine-tuned LLM rungs: train an adapter on the train split, then score labels like the prompts do."""

from __future__ import annotations

from tunewise.core import Record
from tunewise.rungs.base import LabelScorer


class LoraRung(LabelScorer):
    """PEFT LoRA on the train split; the checkpoint with the best val loss is kept."""

    name = "lora"

    def fit(self, train: list[Record], val: list[Record]) -> LoraRung:
        from tunewise.train.sft import train_adapter

        result = train_adapter(
            self.model, self.tokenizer, self.config, train, val, self.run_dir, progress=self.progress
        )
        self.model = result.model
        self.train_result = result
        self.cost.train_seconds += result.seconds
        self.cost.train_tokens += result.tokens
        return self
