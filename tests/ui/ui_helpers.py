"""Helpers of the ui tests: a real uvicorn server in a thread, the fast ladder settings, the CSRF
token of a page (a module of its own: every test folder has a conftest.py)."""

from __future__ import annotations

import re

from loopback import Server, free_port  # noqa: F401 (the ui tests import them from here)

FAST = ["train.max_steps=2", "train.eval_steps=2", "train.batch_size=4", "train.max_val_examples=4",
        "train.max_train_examples=12", "eval.max_test_examples=6", "eval.bootstrap=100"]


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" content="([0-9a-f]+)"', html).group(1)
