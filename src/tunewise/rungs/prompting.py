"""Prompting rungs: the base model with the task instruction, no training."""

from __future__ import annotations

from tunewise.core import Record
from tunewise.rungs.base import LabelScorer


class ZeroShot(LabelScorer):
    """The instruction and the input through the model's chat template; labels scored by likelihood."""

    name = "zero-shot"

    def fit(self, train: list[Record], val: list[Record]) -> ZeroShot:
        self.builder().check_template()
        return self
