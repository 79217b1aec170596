"""report.md and report.html from a ladder.json: content, self-containment, and a real browser render."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from ladder_fixture import standard_curve, standard_ladder

from tunewise.report.build import rebuild, render_html, render_markdown, write_report

CHROMIUM = Path("/usr/bin/chromium")


def test_markdown_has_every_rung_cost_and_recommendation():
    ladder = standard_ladder()
    md = render_markdown(ladder)
    for r in ladder["rungs"]:
        assert f"| {r['name']} |" in md
    assert "$ / 1k requests" in md and "break-even" in md
    assert ladder["recommendation"]["reason"] in md


def test_html_is_self_contained_with_chart_and_table():
    html = render_html(standard_ladder())
    assert html.count("<svg") >= 3  # ladder chart, quality vs cost, a training curve
    assert 'id="ladder-table"' in html and "<td class=\"l\">lora</td>" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "external resource in report.html"
    assert "<script" not in html and "<link" not in html and "@import" not in html
    # The only web addresses left are XML namespace names, which browsers never fetch.
    assert "http" not in re.sub(r'xmlns(:\w+)?="[^"]*"', "", html)
    # Inputs are escaped: a worst-error input cannot inject markup.
    assert "the &lt;b&gt;market&lt;/b&gt; &amp; shares" in html


def test_break_even_section_in_both_reports_matches_the_cli(tmp_path):
    """One cost model: report.md, report.html and `tunewise estimate --break-even` show the same figures."""
    from typer.testing import CliRunner

    from tunewise.cli import app

    ladder = standard_ladder()
    (lora,) = [c for c in ladder["break_even"]["comparisons"] if c["trained"] == "lora" and c["vs"] == "few-shot"]
    assert lora["break_even_requests"] == next(r for r in ladder["rungs"] if r["name"] == "lora")["break_even"]["requests"]
    md = render_markdown(ladder)
    html = render_html(ladder)
    assert "## Break-even" in md and 'id="break-even"' in html
    report = tmp_path / ".tunewise" / "reports" / "20260101-000000-000001"
    report.mkdir(parents=True)
    (report / "ladder.json").write_text(json.dumps(ladder))
    cli = CliRunner().invoke(app, ["estimate", "--break-even", str(tmp_path)])
    assert cli.exit_code == 0
    section = cli.stdout.strip()  # stderr says which ladder it priced
    assert section in md  # the whole section, character for character
    assert f"{lora['break_even_requests']:,}" in html
    # A ladder saved without the stored break-even (older runs) still renders the section.
    del ladder["break_even"]
    assert section in render_markdown(ladder)


def test_rebuild_from_saved_ladder(tmp_path):
    (tmp_path / "ladder.json").write_text(json.dumps(standard_ladder()))
    rebuild(tmp_path)
    assert (tmp_path / "report.html").stat().st_size > 5000 and (tmp_path / "report.md").exists()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (make test installs it: apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    from PIL import Image, ImageStat

    write_report(standard_ladder() | {"curve": standard_curve()}, tmp_path)  # with the learning-curve section
    assert 'id="learning-curve"' in (tmp_path / "report.html").read_text()
    png = tmp_path / "shot.png"
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1280,2000",
        (tmp_path / "report.html").as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
    image = Image.open(png).convert("L")
    assert image.size == (1280, 2000)
    stat = ImageStat.Stat(image)
    assert stat.stddev[0] > 20, "the screenshot is blank"
    # The ladder chart's bars (blue/green) rendered, not only black text on white.
    import numpy as np

    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=int)
    colored = (np.abs(rgb[..., 0] - rgb[..., 1]) > 40) | (np.abs(rgb[..., 1] - rgb[..., 2]) > 40)
    assert colored.sum() > 5000, "no chart colours in the screenshot"



def test_reports_show_the_margin_the_cost_spread_the_latency_and_too_small_to_decide():
    from ladder_fixture import fake_ladder, fake_rung

    ladder = fake_ladder([
        fake_rung("zero-shot", 0.3, 0, 30, 60, n=80, seed=7),
        fake_rung("few-shot", 0.84, 0, 40, 300, n=80, seed=1),
        fake_rung("lora", 0.88, 600, 40, 60, n=80, seed=1),
    ])
    md, html = render_markdown(ladder), render_html(ladder)
    rows = ladder["recommendation"]["undecided"][0]["rows_needed"]
    for text in (md, html):
        assert "too small to decide whether few-shot" in text and f"about {rows:,} test rows" in text
        assert "above -2 (" in text and "eval.margin: 0.02" in text
        assert "60.0 (48.0–76.0)" in text  # latency median (IQR) of the timing pass
        assert "50 GFLOP/s (IQR 45–55" in text and "Cost is computed, not timed" in text
    assert "Wilson" in md and "Holm" in md
    few = ladder["rungs"][1]
    lo, hi = few["cost_spread_per_1k"]
    assert lo < few["cost"]["usd_per_1k_requests"] < hi and f"({lo:.4f}–{hi:.4f})" in md
    assert 'class="verdict undecided"' in html


def test_a_ladder_saved_before_flops_and_the_margin_still_renders():
    ladder = standard_ladder()
    for key in ("throughput", "margin", "timing"):
        del ladder[key]
    for r in ladder["rungs"]:
        for key in ("compute", "latency", "cost_spread_per_1k"):
            del r[key]
    ladder["break_even"].pop("throughput")
    ladder["recommendation"] = {"rung": "lora", "reason": "old reason", "alpha": 0.05}
    md, html = render_markdown(ladder), render_html(ladder)
    assert "p ≥ 0.05" in md and "measured while scoring" in md and "old reason" in html


def test_a_report_on_a_fresh_split_says_comparisons_with_earlier_reports_are_void():
    ladder = standard_ladder()
    ladder["dataset"] = {"frozen_split": {"epoch": 0, "resplit": False}}
    assert "made afresh" not in render_markdown(ladder)
    ladder["dataset"] = {"frozen_split": {"epoch": 2, "resplit": True}}
    assert "comparisons with reports on an earlier split are void" in render_markdown(ladder)
    assert "Test split made afresh (split epoch 2" in render_html(ladder)


def test_a_withheld_recommendation_renders_as_withheld_and_not_measured_as_such():
    from ladder_fixture import fake_ladder, fake_rung

    nan_rung = fake_rung("zero-shot", 0.5, 0, 30, 60, n=1, seed=7)
    nan_rung["metrics"]["accuracy"] = float("nan")
    ladder = fake_ladder([nan_rung, fake_rung("few-shot", 1.0, 0, 40, 300, n=1, seed=1),
                          fake_rung("lora", 1.0, 600, 40, 60, n=1, seed=1)])
    md, html = render_markdown(ladder), render_html(ladder)
    for text in (md, html):
        assert "withheld" in text and "None" not in text.split("Recommendation")[1][:200]
        assert "not measured" in text and "nan" not in text
