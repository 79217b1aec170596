"""Every example project's config loads, names known rungs, and its data is where it says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunewise.config import load_config
from tunewise.ladder import check_rungs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["bbc-news", "support-chat"])
def test_example_config_loads_with_known_rungs(name):
    config = load_config(EXAMPLES / name)
    check_rungs(list(config.rungs), config, EXAMPLES / name)


def test_bbc_runs_the_full_ladder():
    config = load_config(EXAMPLES / "bbc-news")
    assert config.rungs == ["zero-shot", "few-shot", "embedding-classifier", "encoder-finetune", "lora"]
    assert config.few_shot.selection == "random"  # the shared-prefix cache keeps it inside the CPU budget


def test_support_chat_data_is_openai_chat_format_and_matches_its_generator():
    import importlib.util

    folder = EXAMPLES / "support-chat"
    rows = [json.loads(line) for line in (folder / "data" / "chats.jsonl").read_text().splitlines()]
    assert len(rows) >= 90 and all([m["role"] for m in r["messages"]] == ["system", "user", "assistant"] for r in rows)
    spec = importlib.util.spec_from_file_location("make_data", folder / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.rows() == rows
