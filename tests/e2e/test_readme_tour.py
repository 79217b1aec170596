"""The README's "own data in five minutes" block runs as printed, in order, on a fresh folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ISSUES = {
    "billing": ["I was charged twice for my order", "the invoice shows the wrong amount",
                "please refund the extra payment", "my card was billed after I cancelled",
                "why is there a fee on my statement"],
    "bug": ["the app crashes when I open settings", "the page shows an error after login",
            "search returns nothing since the update", "the export button does nothing",
            "images do not load on my phone"],
    "account": ["I cannot reset my password", "how do I change the email on my account",
                "please delete my account", "my account is locked after three tries",
                "I want to add a second user to my account"],
}


def tour_block() -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- tour:start -->", 1)[1].split("<!-- tour:end -->", 1)[0]
    return re.search(r"```bash\n(.*?)```", block, flags=re.DOTALL).group(1)


@pytest.mark.e2e
def test_readme_tour_runs_as_printed(tmp_path):
    rows = [{"id": f"{label}-{i}-{j}", "text": f"{text} (ticket {i * 5 + j})", "label": label}
            for label, texts in ISSUES.items() for i in range(2) for j, text in enumerate(texts)]
    (tmp_path / "myproject" / "data").mkdir(parents=True)
    (tmp_path / "myproject" / "data" / "tickets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", tour_block()], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    # No stray library lines: everything on stderr is ours (log lines, warnings we chose to print).
    stray = [line for line in done.stderr.splitlines() if re.search(r"Warning:|kernels|it/s\]", line)]
    assert not stray, stray
    assert "recommendation:" in done.stdout and "report.html" in done.stdout
    reports = list((tmp_path / "myproject" / ".tunewise" / "reports").glob("*/ladder.json"))
    ladder = json.loads(reports[0].read_text())
    assert [r["name"] for r in ladder["rungs"]] == ["zero-shot", "few-shot", "embedding-classifier"]
