"""Evaluating an uploaded .zip in a real browser: progress, cancel, and the run opening in the explorer.

Playwright drives Debian's Chromium; skipped where either is missing. Screenshots go to
test-artifacts/.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from poster.data import sample_faces as _data
from tests._app import RAF_FOLDERS, RUN_LABELS, app_store, checkpoint_dir, served  # noqa: F401

from tests._browser import ARTIFACTS, BASE_ARGS, CHROMIUM, playwright_api
from tests._browser import wait_for_text as wait_for_any_text

pytestmark = pytest.mark.slow  # a real Chromium against a served app

TIMEOUT_MS = 180_000


def labeled_zip(folder: Path, labels: list[int], name: str) -> Path:
    data = folder / f"{name}-data"
    _data.write_imagefolder(data, labels, RAF_FOLDERS)
    _data.save_jpeg(_data.face(0), data / "test" / "9" / "stray.jpg")  # an unknown class folder
    archive = folder / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(data.rglob("*.jpg")):
            zf.write(path, path.relative_to(data).as_posix())
    return archive


@pytest.fixture(scope="module")
def page(app_store, tmp_path_factory):  # noqa: F811
    import os

    os.environ.pop("POSTER_RUNS_DIR", None)  # runs stay private to the session
    ARTIFACTS.mkdir(exist_ok=True)
    with served(app_store) as url, playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=BASE_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url, wait_until="load")
        page.get_by_role("tab", name="Explorer").click()
        page.get_by_text("Evaluate a labeled set (.zip)").click()
        yield page
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def wait_for_text(page, selector: str, pattern: str) -> str:
    return wait_for_any_text(page, selector, pattern, TIMEOUT_MS)


def upload(page, archive: Path) -> None:
    page.locator("#evaluate-archive input[type=file]").set_input_files(str(archive))
    # Gradio renders the name as stem and extension in separate spans ("big-set .zip").
    shown = re.compile(re.escape(archive.stem) + r"\s*" + re.escape(archive.suffix))
    playwright_api.expect(page.locator("#evaluate-archive")).to_contain_text(shown, timeout=TIMEOUT_MS)


def test_caps_and_where_runs_go_are_on_screen(page):
    text = page.locator("#evaluate-caps").inner_text()
    for words in ("POSTER_EVAL_MAX_ARCHIVE_MB", "POSTER_EVAL_MAX_FILES", "POSTER_EVAL_MAX_UNPACKED_MB",
                  "POSTER_EVAL_MAX_PIXELS", "private to this browser session", "POSTER_RUNS_DIR"):
        assert words in text


def test_cancel_stops_an_evaluation(page, tmp_path):
    upload(page, labeled_zip(tmp_path, [i % 7 for i in range(96)], "big-set"))
    page.locator("#evaluate-start").click()
    wait_for_text(page, "#evaluate-progress", r"\d+ of 96 images")
    page.locator("#evaluate-cancel").click()
    wait_for_text(page, "#evaluate-progress", r"Cancelled")
    page.wait_for_timeout(1500)
    assert "Cancelled" in page.locator("#evaluate-progress").inner_text()  # no result arrived after all
    page.locator("#evaluate-archive button[aria-label='Clear']").first.click()


def test_an_uploaded_set_is_evaluated_and_opens_in_the_explorer(page, tmp_path):
    upload(page, labeled_zip(tmp_path, RUN_LABELS, "my-faces"))
    page.locator("#evaluate-start").click()
    done = wait_for_text(page, "#evaluate-progress", r"Done: accuracy")
    assert "95 % CI" in done and "on 16 images" in done and "Skipped 1" in done and "test/9" in done
    playwright_api.expect(page.locator("#explorer-run input")).to_have_value(
        re.compile(r"raf-db-my-faces-.* \(yours, this session\)"), timeout=TIMEOUT_MS)
    summary = wait_for_text(page, "#explorer-summary", r"95 % CI")
    assert "16" in summary
    page.screenshot(path=str(ARTIFACTS / "explorer-evaluate.png"), full_page=True)
