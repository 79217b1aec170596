"""The learning-curve section of the ladder report and the curve folder's own page (curve.html)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ladder_fixture import standard_curve, standard_ladder

from tunewise.report.build import render_html, render_markdown
from tunewise.report.curve_view import render_curve_html

CHROMIUM = Path("/usr/bin/chromium")


def test_learning_curve_section_in_both_reports():
    curve = standard_curve()
    emb = next(r for r in curve["rungs"] if r["name"] == "embedding-classifier")
    assert emb["fit"]["ok"] and emb["projection"]["gain"] > 0 and emb["overtakes"]["vs"] == "few-shot"
    ladder = standard_ladder() | {"curve": curve}
    md, html = render_markdown(ladder), render_html(ladder)
    assert "## How much data is enough" in md and 'id="learning-curve"' in html
    for line in curve["advice"]:
        assert line in md
    assert "embedding-classifier: with 300 more labelled rows (300 → 600)" in md
    section = html[html.index('id="learning-curve"'):]
    assert section.index("<svg") < section.index("</div>")  # the chart sits in the section
    assert "fill-opacity" in section[: section.index("</svg>")]  # the CI band, inside the chart
    assert "How much data" not in render_markdown(standard_ladder())  # no curve, no section


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (make test installs it: apt-get install -y chromium)")
def test_learning_curve_page_renders_in_headless_chromium(tmp_path):
    """The curve section on a page of its own (curve.html), so the chart is inside the screenshot."""
    from PIL import Image, ImageStat

    page = tmp_path / "curve.html"
    page.write_text(render_curve_html(standard_curve()))
    html = page.read_text()
    assert 'id="learning-curve"' in html and "<svg" in html
    png = tmp_path / "shot.png"
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1280,2000", page.as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
    image = Image.open(png).convert("L")
    assert image.size == (1280, 2000) and ImageStat.Stat(image).stddev[0] > 20, "the screenshot is blank"
    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=int)
    # The CI bands are light tints of the line colours (alpha 0.08-0.18): a low tint threshold sees them.
    tinted = (np.abs(rgb[..., 0] - rgb[..., 1]) > 15) | (np.abs(rgb[..., 1] - rgb[..., 2]) > 15)
    assert tinted.sum() > 5000, "no chart colours in the screenshot"
