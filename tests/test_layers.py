"""The import contracts of pyproject.toml ([tool.importlinter]) hold: imports point down the layers,
stages do not import each other, and no package has an import cycle.

A broken contract fails with import-linter's report, which names the importing module and line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` over the package under ``root/src`` with ``root/pyproject.toml``'s contracts."""
    # This checkout's src first: the package installed in the environment may be another copy.
    paths = [str(root / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    command = [str(Path(sys.executable).parent / "lint-imports"), "--config", str(root / "pyproject.toml"), "--no-cache"]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
    """The check can fail: the same tree with one module of `data` importing `report`."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    bad = tmp_path / "src" / "tunewise" / "data" / "split.py"
    bad.write_text(bad.read_text(encoding="utf-8") + "\nfrom tunewise.report import build  # noqa\n", encoding="utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "tunewise.data is not allowed to import tunewise.report" in result.stdout
    assert "tunewise.data.split -> tunewise.report.build" in result.stdout
