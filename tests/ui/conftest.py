"""A tiny project that was audited and climbed a tiny ladder (zero-shot, lora), and a real
`tunewise ui` server (uvicorn in a thread on 127.0.0.1) over it."""

from __future__ import annotations

import httpx
import pytest
import torch
from tiny import write_tiny_project
from ui_helpers import FAST, Server

from tunewise.config import load_config
from tunewise.data.audit import audit_project
from tunewise.ladder import run_ladder


@pytest.fixture(scope="session")
def ui_project(tmp_path_factory, tiny_model_dir):
    torch.set_num_threads(1)
    folder = write_tiny_project(tmp_path_factory.mktemp("ui") / "tiny", tiny_model_dir)
    audit_project(folder)
    run_ladder(load_config(folder, FAST), folder, ["zero-shot", "lora"])
    return folder


@pytest.fixture(scope="session")
def ui_server(ui_project):
    from tunewise.ui.app import create_app, project_names

    with Server(create_app(project_names([ui_project]))) as s:
        yield s


@pytest.fixture
def client(ui_server):
    with httpx.Client(base_url=ui_server.root, timeout=120) as c:
        yield c
