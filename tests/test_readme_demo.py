"""The README's demo section is what docs/readme_demo.py renders from a real `make demo` run's ladder.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("readme_demo", ROOT / "docs" / "readme_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_demo_section_is_rendered_from_the_saved_run():
    script = _script()
    ladder = json.loads((ROOT / "docs" / "demo" / "ladder.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert script.render_section(ladder) in readme, (
        "README's demo section differs from docs/demo/ladder.json: run `make demo`, then docs/readme_demo.py")
    assert (ROOT / "docs" / "demo" / "report.png").stat().st_size > 10_000
    # The figures in it are the run's own: every rung and the recommendation.
    for rung in ladder["rungs"]:
        assert f"| {rung['name']} |" in readme
    assert f"**Recommendation: {ladder['recommendation']['rung']}**" in readme
