"""A tiny project whose ladder ran (zero-shot, lora, dora; and a generation project), and a real
uvicorn server on 127.0.0.1 for the tests to talk to."""

from __future__ import annotations

import pytest
import torch
from loopback import Server, free_port  # noqa: F401 (tests import Server from here)
from serve_projects import FAST, _generation_project
from tiny import write_tiny_project

from tunewise.config import ServeConfig, load_config
from tunewise.ladder import run_ladder


@pytest.fixture(scope="session")
def served_projects(tmp_path_factory, tiny_model_dir):
    """(classification project, generation project), each with a finished ladder."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("serve")
    cls = write_tiny_project(root / "cls", tiny_model_dir)
    run_ladder(load_config(cls, FAST), cls, ["zero-shot", "lora", "dora"])
    gen = _generation_project(root / "gen", tiny_model_dir)
    run_ladder(load_config(gen), gen, ["zero-shot"])
    return cls, gen


@pytest.fixture(scope="session")
def served(served_projects):
    """The loaded rungs of both projects (one shared base for lora + dora + zero-shot)."""
    from tunewise.serve.registry import load_served

    return load_served(list(served_projects))


@pytest.fixture(scope="session")
def server(served, tmp_path_factory):
    from tunewise.serve.app import create_app

    log = tmp_path_factory.mktemp("log") / "requests.sqlite"
    app = create_app(served, ServeConfig(redact_pii=True), log)
    with Server(app) as s:
        s.log = log
        yield s
