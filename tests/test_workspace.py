import json
import os
import stat

import pytest

from tunewise import workspace as ws


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    ws.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), ws.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError), ws.atomic_dir(target) as tmp:
        (tmp / "weights").write_text("partial")
        raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with ws.atomic_dir(target) as tmp:
        (tmp / "weights").write_text("done")
    assert (target / "weights").read_text() == "done"


def test_lineage_names_versions_and_config(tiny_project):
    from tunewise.config import load_config

    lineage = ws.lineage(load_config(tiny_project), "abc")
    assert lineage["data_hash"] == "abc"
    assert lineage["packages"]["torch"].startswith("2.")
    assert lineage["config"]["task"]["type"] == "classification"


def test_timestamps_sort_and_differ():
    a, b = ws.timestamp(), ws.timestamp()
    assert a != b and sorted([b, a]) == [a, b]


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)])
def test_outputs_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    old = os.umask(mask)
    try:
        f = ws.write_json(tmp_path / "a" / "x.json", {"a": 1})
        with ws.atomic_dir(tmp_path / "d") as d:
            ws.write_text(d / "y.txt", "y")
    finally:
        os.umask(old)
    assert stat.S_IMODE(f.stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == dir_mode
    assert stat.S_IMODE((tmp_path / "d" / "y.txt").stat().st_mode) == file_mode


def test_credentials_in_urls_are_never_written(tiny_project):
    from tunewise.config import dump_config, load_config

    config = load_config(tiny_project, ["train.mlflow_uri=https://alice:s3cret@mlflow.example.org/"])
    for text in (dump_config(config), json.dumps(ws.lineage(config))):
        assert "s3cret" not in text and "alice" not in text and "https://***@mlflow.example.org/" in text
    assert ws.redact_secrets({"a": ["postgresql://u:p@db/x", "plain text"]}) == {"a": ["postgresql://***@db/x", "plain text"]}


def test_atomic_writes_flush_the_file_and_its_folder(tmp_path, monkeypatch):
    """A rename survives a power cut only when the file's bytes and the folder naming it are on disk."""
    flushed = []
    real = os.fsync

    def spy(fd):
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    ws.write_json(tmp_path / "decisions.json", {"a": 1})
    assert any(".decisions.json." in p for p in flushed) and str(tmp_path) in flushed
    flushed.clear()
    with ws.atomic_dir(tmp_path / "dataset") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "test.jsonl").write_text("{}\n")
    assert any(p.endswith("/sub/test.jsonl") for p in flushed) and str(tmp_path) in flushed


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_an_interrupt_right_after_the_temporary_is_created_leaves_nothing(tmp_path, monkeypatch, kind):
    """Ctrl-C raises KeyboardInterrupt at whatever bytecode runs: here the first call after the
    temporary file or folder exists. Nothing may be left next to the target, and nothing stays in flight."""
    real_close, real_mkdir = os.close, os.mkdir
    state = {"armed": True}

    def interrupted(*a, **k):
        (real_close if kind == "file" else real_mkdir)(*a, **k)
        # the temporary folder, not its parent
        if (kind == "file" or str(a[0]).endswith(".tmp")) and state.pop("armed", False):
            raise KeyboardInterrupt

    (tmp_path / "out").mkdir()
    monkeypatch.setattr(os, "close" if kind == "file" else "mkdir", interrupted)
    target = tmp_path / "out" / "report.json"
    with pytest.raises(KeyboardInterrupt):
        if kind == "file":
            ws.write_text(target, "{}")
        else:
            with ws.atomic_dir(target):
                pass
    monkeypatch.undo()
    assert not state
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []
    assert not ws._IN_FLIGHT
