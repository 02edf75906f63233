"""The Video tab in Chromium: upload a clip, watch the progress, get the outputs, click the timeline.

ARM with deterministic weights (the quickest network) on a 1.5 s clip made from the astronaut photo.
Skipped where Chromium or Playwright is missing.
"""
from __future__ import annotations

import pytest

from demo.serving.store import ModelStore
from tests._app import served
from tests._browser import ARTIFACTS, BASE_ARGS, CHROMIUM, playwright_api, wait_for_text
from tests._checkpoints import checkpoint_file
from tests._video_clips import ASTRONAUT_FACE, face_patch, scene, write_clip

pytestmark = pytest.mark.slow  # a browser

TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def clip(tmp_path_factory, astronaut):
    face = face_patch(astronaut, ASTRONAUT_FACE)
    frames = [scene([(face, 20 + 10 * i, 40)]) for i in range(15)]
    return write_clip(tmp_path_factory.mktemp("browser-clip") / "interview.mp4", frames, audio=True)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("arm-only")
    (folder / "arm").mkdir()
    checkpoint_file(folder / "arm" / "epoch59_acc0.9205.pth", "arm")
    store = ModelStore(device="cpu", checkpoint_dirs=[folder])
    ARTIFACTS.mkdir(exist_ok=True)
    with served(store) as url, playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BASE_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url, wait_until="load")
        page.get_by_role("tab", name="Video").click()
        yield page
        page.screenshot(path=str(ARTIFACTS / "video.png"), full_page=True)
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def test_upload_progress_outputs_and_a_timeline_click(page, clip):
    assert "Clips up to" in page.locator("#video-caps").inner_text()
    page.locator("#video-input input[type=file]").set_input_files(str(clip))
    playwright_api.expect(page.locator("#video-input video")).to_be_attached(timeout=TIMEOUT_MS)
    page.locator("#video-start").click()
    # The progress bar shows while frames are analysed, then the outcome replaces it.
    playwright_api.expect(page.locator("#video-progress progress")).to_be_attached(timeout=TIMEOUT_MS)
    wait_for_text(page, "#video-progress", r"Done: 8 frames analysed", TIMEOUT_MS)
    playwright_api.expect(page.locator("#video-annotated video")).to_be_attached()
    assert "face 0" in page.locator("#video-summary").inner_text()
    downloads = page.locator("#video-downloads").inner_text().replace("\n", "")  # names are split in spans
    assert "faces.csv" in downloads and "faces.parquet" in downloads and "annotated.mp4" in downloads
    timeline = page.locator("#video-timeline img")
    playwright_api.expect(timeline).to_be_visible()
    box = timeline.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.55)  # inside the axes
    caption = wait_for_text(page, "#video-moment", r"\d+\.\d\d s: face 0: ", TIMEOUT_MS)
    assert "no face" not in caption
    playwright_api.expect(page.locator("#video-frame img")).to_be_visible()
    page.get_by_text("Why this expression? Explanation of the picked face").click()  # the panel's accordion
    page.locator("#video-faces label").first.click()
    wait_for_text(page, "#video-explain-status", r"explaining '", TIMEOUT_MS)
