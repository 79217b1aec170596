"""The project workspace: folder layout, atomic writes, hashes and lineage.

Every stage reads and writes files under ``<project>/.tunewise/`` so each can be re-run and
inspected alone. Writes go to a temporary file in the same folder and are renamed into place, so an
interrupted process never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

WORKSPACE = ".tunewise"
LINEAGE_PACKAGES = ("tunewise", "torch", "transformers", "peft", "trl", "accelerate", "numpy")


def timestamp() -> str:
    """A sortable, filesystem-safe UTC time with microseconds, so two runs never collide."""
    now = time.time()
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f"-{int(now * 1e6) % 1_000_000:06d}"


def workspace(project: Path) -> Path:
    return Path(project) / WORKSPACE


def ensure_writable(project: Path) -> None:
    """Raise OSError naming the folder when the project's workspace cannot be written (checked up front)."""
    root = workspace(project)
    root.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=root)
    os.close(fd)
    os.unlink(probe)


def new_dir(project: Path, kind: str, name: str | None = None) -> Path:
    """Create ``.tunewise/<kind>/<name or time>/`` and return it."""
    path = workspace(project) / kind / (name or timestamp())
    path.mkdir(parents=True, exist_ok=True)
    return path


def stored(project: Path, path: Path | str) -> str:
    """``path`` as an artefact records it: relative to the project (``.tunewise/runs/lora-…``) when it lies
    inside it, so a project moved or copied elsewhere still finds its runs; absolute otherwise (a log
    or an export outside the project). ``resolve`` reads it back."""
    path, root = Path(path).resolve(), Path(project).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def resolve(project: Path, recorded: Path | str) -> Path:
    """A path an artefact recorded, as a path to open now; the one place recorded paths are read.

    A path into a workspace (anything under a ``.tunewise`` folder) is looked up under this project's
    own workspace: a relative one as ``stored`` writes it, and also those older artefacts wrote: an
    absolute path (the project has since moved or been copied, and the old copy may still exist) or
    one relative to the folder the command ran in (``bbc/.tunewise/runs/x`` for ``tunewise ladder bbc``).
    Any other relative path is relative to the project; an absolute one is kept."""
    parts = Path(recorded).parts
    if WORKSPACE in parts:
        at = len(parts) - 1 - parts[::-1].index(WORKSPACE)
        return workspace(project).joinpath(*parts[at + 1:])
    return Path(recorded) if Path(recorded).is_absolute() else Path(project) / recorded


# Temporary files and folders of writes in progress: removed by tunewise.interrupt when the process
# has to end in the middle of one, so an interrupted command never leaves a half-written file.
_IN_FLIGHT: set[str] = set()


def discard_in_flight() -> None:
    for tmp in list(_IN_FLIGHT):
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    _IN_FLIGHT.clear()


def _in_flight_name(path: Path) -> str:
    """A fresh temporary name next to ``path``, registered in _IN_FLIGHT before anything is created
    under it (a signal between creating a file and registering it would leave the file behind)."""
    tmp = os.path.join(path.parent, f".{path.name}.{secrets.token_hex(6)}.tmp")
    _IN_FLIGHT.add(tmp)
    return tmp


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _in_flight_name(path)
    try:  # created inside the try, named in _IN_FLIGHT before: a signal at any bytecode leaves nothing behind
        # The OS applies the umask: outputs follow it like any other tool's (0644 by default).
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        yield Path(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        _IN_FLIGHT.discard(tmp)


def _fsync(path: str | Path) -> None:
    """Flush a file's or a folder's entries to disk: a rename alone survives a crash only when both the
    file's bytes and the folder that now names it are on disk (decisions and datasets must)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(path: Path, keep_others: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; it replaces ``path`` only if the block succeeds.

    With ``keep_others`` an existing ``path`` is kept: only the entries the block wrote replace the
    same-named ones in it, each by one rename, and everything else in it stays (a user's folder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(_in_flight_name(path))
    try:  # as atomic_path: named in _IN_FLIGHT before it exists
        tmp.mkdir(mode=0o777)  # less the umask, as os.mkdir applies it
        yield tmp
        for folder, _, files in os.walk(tmp):
            for name in files:
                if not os.path.islink(os.path.join(folder, name)):
                    _fsync(os.path.join(folder, name))
            _fsync(folder)
        if keep_others and path.is_dir():
            _move_entries(tmp, path)
            _fsync(path)
            return
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        _IN_FLIGHT.discard(str(tmp))


def _move_entries(src: Path, dest: Path) -> None:
    for entry in sorted(src.iterdir()):
        target = dest / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(entry, target)


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_jsonable) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False, default=_jsonable) + "\n" for row in rows)
    return Path(path)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def package_versions(names: Iterable[str] = LINEAGE_PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


_URL_CREDENTIALS = re.compile(r"(\b[a-zA-Z][\w+.-]*://)[^/@\s:]+(:[^/@\s]*)?@")


def redact_secrets(obj: Any) -> Any:
    """``obj`` with every user:password@ of a URL (an MLflow or database URI, say) replaced by ***@:
    configs and lineage are written next to outputs that other people read."""
    if isinstance(obj, str):
        return _URL_CREDENTIALS.sub(r"\1***@", obj)
    if isinstance(obj, dict):
        return {k: redact_secrets(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(redact_secrets(v) for v in obj)
    return obj


def lineage(config: Any, data_hash: str | None = None) -> dict:
    """What produced an output: the resolved config, the data's hash and the environment."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": redact_secrets(config.model_dump(mode="json") if hasattr(config, "model_dump") else config),
        "data_hash": data_hash,
        "packages": package_versions(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
