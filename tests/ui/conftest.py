"""A tiny project that was audited and climbed a tiny ladder (zero-shot, lora), and a real
`tunewise ui` server (uvicorn in a thread on 127.0.0.1) over it."""

from __future__ import annotations

import re
import socket
import threading
import time

import httpx
import pytest
import torch
from tiny import write_tiny_project

from tunewise.config import load_config
from tunewise.data.audit import audit_project
from tunewise.ladder import run_ladder

FAST = ["train.max_steps=2", "train.eval_steps=2", "train.batch_size=4", "train.max_val_examples=4",
        "train.max_train_examples=12", "eval.max_test_examples=6", "eval.bootstrap=100"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"


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


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" content="([0-9a-f]+)"', html).group(1)
