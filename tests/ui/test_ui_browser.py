"""The review flow by keyboard in a real browser (Playwright driving the Debian Chromium) against a
real `tunewise ui` server: the corrected label is in the review file and `prepare` applies it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tunewise import workspace as ws
from tunewise.config import load_config
from tunewise.data.prepare import prepare_project

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the Debian chromium at /usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


def decided(project: Path) -> dict[str, dict]:
    path = ws.workspace(project) / "reviews" / "ui-review.csv"
    return {r["id"]: r for r in csv.DictReader(path.open())} if path.exists() else {}


def test_review_by_keyboard_lands_in_the_review_file_and_prepare_applies_it(browser, ui_server, ui_project, tmp_path):
    page = browser.new_page()
    page.goto(f"{ui_server.root}/p/{ui_project.name}/review")
    labels = page.locator("#review").get_attribute("data-labels").split("|")
    first = page.locator("input[name=id]").input_value()
    current = page.locator("#current").inner_text()
    pick = next(i for i, lab in enumerate(labels) if lab != current)
    page.keyboard.press(str(pick + 1))  # pick another label by its number
    page.wait_for_url("**/review?after=*")
    assert decided(ui_project)[first]["corrected_target"] == labels[pick]
    second = page.locator("input[name=id]").input_value()
    assert second != first
    page.keyboard.press("s")  # skip: nothing recorded, the queue moves on
    page.wait_for_url(f"**after={second}")
    assert second not in decided(ui_project)
    third = page.locator("input[name=id]").input_value()
    page.keyboard.press("k")  # keep the current label
    page.wait_for_url(f"**after={third}")
    assert decided(ui_project)[third]["decision"] == "keep"
    shot = page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
    assert len(shot) > 5000 and page.locator("progress").count() == 1  # a page with content, not blank
    folder, _ = prepare_project(load_config(ui_project), ui_project)
    rows = {json.loads(line)["id"]: json.loads(line)
            for part in ("train", "val", "test") for line in (folder / f"{part}.jsonl").read_text().splitlines()}
    assert rows[first]["target"] == labels[pick]
    page.close()


def test_every_page_has_content_in_the_browser(browser, ui_server, ui_project, tmp_path):
    page = browser.new_page()
    blank = page.screenshot(path=str(tmp_path / "blank.png"))  # about:blank, for scale
    for path, text in [("/", ui_project.name), (f"/p/{ui_project.name}", "Datasets"),
                       (f"/p/{ui_project.name}/data", "rows.jsonl:"),
                       (f"/p/{ui_project.name}/ladder", "Ladder in use")]:
        page.goto(ui_server.root + path)
        assert text in page.locator("main").inner_text(), path
        shot = page.screenshot(path=str(tmp_path / f"{len(path)}.png"))
        assert len(shot) > 3 * len(blank), path  # a page with content compresses far worse than a blank one
    assert page.frame_locator("iframe#report").locator("body").inner_text().strip()
    page.goto(ui_server.root + f"/p/{ui_project.name}/compare")  # asking is a POST with the page's CSRF token
    page.fill("textarea[name=text]", "the market shares")
    page.click("text=Ask every rung")
    assert "lora" in page.locator("main").inner_text()
    page.close()


def test_a_ladder_started_in_the_browser_runs_to_completion_with_visible_progress(browser, tiny_project):
    from ui_helpers import FAST, Server

    from tunewise.ui.app import create_app, project_names

    with Server(create_app(project_names([tiny_project]))) as s:
        page = browser.new_page()
        page.goto(f"{s.root}/p/{tiny_project.name}/ladder")
        page.fill("input[name=rungs]", "zero-shot")
        page.fill("textarea[name=set]", "\n".join(FAST))
        page.click("text=Start the ladder")
        page.wait_for_selector("#log")
        page.wait_for_selector("iframe#report", timeout=240_000)  # the page reloads when the job ends
        assert page.locator("#state").inner_text() == "done"
        log = page.locator("#log").inner_text()
        assert "zero-shot: accuracy" in log and "ladder done (exit 0)" in log
        assert "zero-shot" in page.frame_locator("iframe#report").locator("body").inner_text()
        page.close()
