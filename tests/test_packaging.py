"""The package installs from its own metadata: every third-party import in src/ is declared."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> dict[str, str]:
    """Normalised distribution name -> where it is declared ('dependencies' or 'extra NAME')."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = {_norm(Requirement(r).name): "dependencies" for r in project["dependencies"]}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        for r in reqs:
            out.setdefault(_norm(Requirement(r).name), f"extra {extra}")
    return out


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module name -> the src files that import it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "tunewise":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_declared():
    dists = packages_distributions()
    have = declared()
    missing = []
    for module, files in sorted(third_party_imports().items()):
        names = [_norm(d) for d in dists.get(module, [module])]
        if not any(n in have for n in names):
            missing.append(f"{module} ({', '.join(names)}) imported in {', '.join(sorted(files))}")
    assert not missing, "undeclared in pyproject.toml: " + "; ".join(missing)


def test_the_declaration_check_can_fail(tmp_path, monkeypatch):
    # The check above must see an import that nothing declares.
    fake = tmp_path / "src" / "tunewise"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text("import yaml\nfrom surely_not_declared_pkg import thing\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert set(third_party_imports()) == {"yaml", "surely_not_declared_pkg"}
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["PyYAML"]\n')
    assert "surely-not-declared-pkg" not in declared() and "pyyaml" in declared()


def test_makefile_installs_our_package_with_its_dependencies():
    make = (ROOT / "Makefile").read_text()
    own = [line for line in make.splitlines() if "-e " in line and "pip install" in line]
    assert own and all("--no-deps" not in line for line in own)
