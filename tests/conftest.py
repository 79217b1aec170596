"""Shared fixtures: tiny config-built models and projects (see tiny.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import build_tiny_encoder, build_tiny_model, write_tiny_project


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def tiny_project(tmp_path, tiny_model_dir) -> Path:
    return write_tiny_project(tmp_path / "proj", tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))
