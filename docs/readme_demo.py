"""Regenerate the README's "What the demo produces" section from a real `make demo` run.

    .venv/bin/python docs/readme_demo.py [REPORT_DIR]     # default: the newest demo-project report

copies that run's ladder.json to docs/demo/ladder.json, screenshots its report.html into
docs/demo/report.png with headless Chromium, and rewrites the README between the demo markers from
the copied ladder.json. tests/test_readme.py fails when the README's section is not exactly what this
script renders from docs/demo/ladder.json, so the figures cannot be edited by hand.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "docs" / "demo"
START, END = "<!-- demo:start (docs/readme_demo.py writes this section) -->", "<!-- demo:end -->"


def render_section(ladder: dict) -> str:
    from tunewise.report.build import rung_table

    rec = ladder["recommendation"]
    lines = [
        START,
        f"`make demo` on {ladder.get('ran_on', 'the project machine')}: the BBC News ladder, "
        f"{ladder['n_test']} frozen test articles (sha256 `{ladder['test_hash'][:12]}…`), "
        f"{ladder['n_train']} training articles.",
        "",
        *rung_table(ladder),
        "",
        f"**Recommendation: {rec['rung']}** — {rec['reason']}",
        "",
        "![The demo's report.html](docs/demo/report.png)",
        END,
    ]
    return "\n".join(lines)


def replace_section(readme: str, section: str) -> str:
    if START in readme and END in readme:
        head, rest = readme.split(START, 1)
        return head + section + rest.split(END, 1)[1]
    raise SystemExit(f"README.md has no {START} … {END} markers")


def screenshot(html: Path, png: Path) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1280,1600",
                        html.resolve().as_uri()], check=True, capture_output=True, timeout=120)


def main(argv: list[str]) -> None:
    import platform

    if argv:
        report = Path(argv[0])
    else:
        reports = sorted((ROOT / "demo-project" / ".tunewise" / "reports").glob("*/ladder.json"))
        if not reports:
            raise SystemExit("no demo report found: run `make demo` first")
        report = reports[-1].parent
    # Paths relative to the checkout: the copy describes the run, not the machine it ran on.
    # (the checkout the run was made in: demo-project/.tunewise/reports/<time> lies three folders below it).
    checkout = report.resolve().parents[3]
    ladder = json.loads((report / "ladder.json").read_text().replace(str(checkout) + "/", ""))
    # "machine" is the priced machine (tunewise.evaluate.cost); where the demo ran is a key of its own.
    ladder["ran_on"] = f"{platform.machine()}, {__import__('os').cpu_count()} cores, {platform.python_version()}"
    DEMO.mkdir(parents=True, exist_ok=True)
    (DEMO / "ladder.json").write_text(json.dumps(ladder, indent=2, ensure_ascii=False) + "\n")
    screenshot(report / "report.html", DEMO / "report.png")
    readme = ROOT / "README.md"
    readme.write_text(replace_section(readme.read_text(), render_section(ladder)))
    print(f"wrote {DEMO / 'ladder.json'}, {DEMO / 'report.png'} and README.md's demo section")


if __name__ == "__main__":
    main(sys.argv[1:])
