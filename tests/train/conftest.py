"""Fixtures for training tests: a tiny project config with few, fast steps, and its splits."""

from __future__ import annotations

import pytest
import torch

from tunewise.config import load_config
from tunewise.data.resolve import resolve_splits

FAST = ["train.max_steps=2", "train.eval_steps=2", "train.batch_size=4", "train.max_val_examples=4"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def make_config(tiny_project):
    """``make_config("train.method=dora", ...)``: the tiny project's config with fast settings."""
    return lambda *overrides: load_config(tiny_project, [*FAST, *overrides])


@pytest.fixture
def splits(tiny_project):
    return resolve_splits(load_config(tiny_project), tiny_project)
