"""The app in a real browser: Playwright driving Debian's Chromium, with a fake webcam.

Screenshots of every tab go to test-artifacts/ (look at them after a change to the UI).
Skipped where Chromium or Playwright is missing; never runs `playwright install`.
"""
from __future__ import annotations

import io
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from tests._app import (RAF_CLASSES, app_store, architectures_dir, astronaut_path, checkpoint_dir,  # noqa: F401
                        empty_store, served, write_run)

from tests._browser import ARTIFACTS, BASE_ARGS, CHROMIUM, playwright_api
from tests._browser import wait_for_text as wait_for_any_text

pytestmark = pytest.mark.slow  # a real Chromium against a served app

BOX_COLOR = np.array([0x4E, 0x79, 0xA7])  # poster.inference.draw.PALETTE[0]: the first face's box and label
TIMEOUT_MS = 90_000


def write_y4m(path: Path, image: np.ndarray, frames: int = 5, size: tuple[int, int] = (640, 480)) -> Path:
    """A short 4:2:0 YUV4MPEG2 video of one still photo, for Chromium's fake camera (it loops)."""
    y, cb, cr = Image.fromarray(image).resize(size).convert("YCbCr").split()
    half = (size[0] // 2, size[1] // 2)
    frame = b"FRAME\n" + y.tobytes() + cb.resize(half).tobytes() + cr.resize(half).tobytes()
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{size[0]} H{size[1]} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(frame)
    return path


def box_pixels(image: np.ndarray, tolerance: int = 28) -> int:
    """How many pixels have the first face's box/label color."""
    return int((np.abs(image.astype(int) - BOX_COLOR).max(axis=2) <= tolerance).sum())


def shown_image(page, selector: str) -> np.ndarray:
    """The picture an <img> inside ``selector`` shows, fetched from the server."""
    src = page.locator(f"{selector} img").first.get_attribute("src")
    body = page.request.get(src).body()
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser-runs") / "runs"
    write_run(root)
    return root


@pytest.fixture(scope="module")
def app_url(app_store, runs_root):  # noqa: F811
    app_store.predictor("raf-db")  # loaded before the browser starts waiting
    with served(app_store, runs_root) as url:
        yield url


@pytest.fixture(scope="module")
def fake_camera(tmp_path_factory, ) -> Path:
    from skimage import data

    return write_y4m(tmp_path_factory.mktemp("camera") / "astronaut.y4m", data.astronaut())


@pytest.fixture(scope="module")
def browser(fake_camera):
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as p:
        args = BASE_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                            f"--use-file-for-fake-video-capture={fake_camera}"]
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    failed_before = request.session.testsfailed
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(app_url, wait_until="load")
    page.get_by_role("tab", name="Photo").wait_for()
    playwright_api.expect(page.locator("#active-checkpoint")).to_contain_text("Active checkpoint", timeout=TIMEOUT_MS)
    yield page
    if request.session.testsfailed > failed_before:  # keep what the page showed when the test failed
        page.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def wait_for_text(page, selector: str, pattern: str) -> str:
    return wait_for_any_text(page, selector, pattern, TIMEOUT_MS)


@contextmanager
def page_of(browser, store) -> Iterator:
    """A page of the app served with ``store`` (a server of its own, closed after the block)."""
    with served(store) as url:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url, wait_until="load")
        try:
            yield page
        finally:
            context.close()


def test_photo_upload_shows_the_labeled_result(page):
    assert "RAF-DB" in page.locator("#active-checkpoint").inner_text()
    page.locator("#photo-input input[type=file]").set_input_files(str(astronaut_path()))
    summary = wait_for_text(page, "#photo-summary", r"1 face found")
    assert "RAF-DB" in summary
    bars = page.locator("#photo-bars .poster-bar-row")
    assert bars.count() == len(RAF_CLASSES)
    title = page.locator("#photo-bars .poster-card-title").inner_text()
    assert any(name in title for name in RAF_CLASSES)
    image = shown_image(page, "#photo-output")
    assert image.shape[:2] == (512, 512) and box_pixels(image) > 200  # the box and its filled label
    wait_for_text(page, "#photo-explain-status", r"explaining '")
    playwright_api.expect(page.locator("#photo-gradcam_image img")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "photo.png"), full_page=True)

    # Click a point on the face: the attention view follows.
    before = shown_image(page, "#photo-point")
    before_src = page.locator("#photo-point img").get_attribute("src")
    page.locator("#photo-crop img").click(position={"x": 40, "y": 40})
    page.wait_for_function("src => document.querySelector('#photo-point img').getAttribute('src') !== src",
                           arg=before_src, timeout=TIMEOUT_MS)
    assert not np.array_equal(before, shown_image(page, "#photo-point"))


def test_example_photo_is_one_click_away(page):
    page.get_by_text("Grace Hopper (matplotlib)").click()
    wait_for_text(page, "#photo-summary", r"1 face found")
    image = shown_image(page, "#photo-output")
    assert image.shape[:2] == (600, 512) and box_pixels(image) > 200


def test_a_bad_upload_shows_a_message_and_the_app_keeps_working(page, tmp_path):
    page.locator("#photo-input input[type=file]").set_input_files(str(astronaut_path()))
    wait_for_text(page, "#photo-summary", r"1 face found")
    bad = tmp_path / "holiday.jpg"
    bad.write_text("not a picture at all")
    page.locator("#photo-input button[aria-label='Remove Image']").first.click()
    page.locator("#photo-input input[type=file]").set_input_files(str(bad))
    toast = page.locator(".toast-body, [data-testid=toast-body]").first
    playwright_api.expect(toast).to_contain_text("Not an image", timeout=TIMEOUT_MS)
    playwright_api.expect(page.locator("#photo-summary")).to_have_text("")  # no stale result
    assert "Traceback" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "photo-bad-upload.png"), full_page=True)
    page.locator("#photo-input button[aria-label='Remove Image']").first.click()
    page.locator("#photo-input input[type=file]").set_input_files(str(astronaut_path()))
    wait_for_text(page, "#photo-summary", r"1 face found")


LIVE = "#webcam-live .poster-live"
RATE = re.compile(r"(\d+\.\d) results/s · (\d+) ms")


def start_camera(page) -> None:
    page.get_by_role("tab", name="Webcam").click()
    page.locator(f"{LIVE} .poster-live-start").click()


def live_message(page) -> str:
    return page.locator(f"{LIVE} .poster-live-message").inner_text()


def overlay_pixels(page) -> int:
    """Pixels of the overlay canvas that something was drawn on (not transparent)."""
    return page.evaluate("""() => {
        const c = document.querySelector('#webcam-live canvas');
        if (!c.width || !c.height) return 0;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n;
    }""")


def test_webcam_draws_live_results_over_the_camera_picture(page, tmp_path):
    start_camera(page)
    rate = page.locator(f"{LIVE} .poster-live-rate")
    playwright_api.expect(rate).to_have_text(RATE, timeout=TIMEOUT_MS)
    first = rate.inner_text()
    page.wait_for_function("() => document.querySelector('#webcam-live .poster-live').posterStats.results >= 8",
                           timeout=TIMEOUT_MS)
    page.wait_for_function("text => document.querySelector('#webcam-live .poster-live-rate').textContent !== text",
                           arg=first, timeout=TIMEOUT_MS)
    assert RATE.search(rate.inner_text())
    from demo.webcam.precision import default

    assert rate.inner_text().endswith(default(on_gpu=False))  # the tab says which precision runs
    assert overlay_pixels(page) > 2000  # the box, its label and the probability bars
    stats = page.evaluate("() => document.querySelector('#webcam-live .poster-live').posterStats")
    assert stats["results"] >= 8 and len(stats["serverMs"]) == stats["results"]
    # No annotated frame travels back: the page holds no picture of the result.
    assert page.locator("#webcam-live img").count() == 0
    page.screenshot(path=str(ARTIFACTS / "webcam.png"), full_page=True)

    page.locator("#webcam-freeze").click()
    wait_for_text(page, "#webcam-explain-status", r"explaining '")
    assert shown_image(page, "#webcam-frozen").shape[:2] == (360, 480)  # the newest frame the server got

    page.locator("#webcam-download").click()
    link = page.locator("#webcam-results a").first
    playwright_api.expect(link).to_be_visible(timeout=TIMEOUT_MS)
    with page.expect_download() as info:
        link.click()
    table = Path(info.value.path()).read_text().splitlines()
    assert table[0].startswith("time,track,x1,y1,x2,y2,label,p_") and len(table) > stats["results"]

    page.locator(f"{LIVE} .poster-live-stop").click()
    assert "Stopped" in live_message(page)
    page.screenshot(path=str(ARTIFACTS / "webcam-frozen.png"), full_page=True)


def test_a_second_visitor_waits_for_the_camera_slot(browser, app_url, page, monkeypatch):
    # Camera turns go by client address; on loopback a trusted proxy's header makes the second
    # browser another client (the first one's requests carry none: 127.0.0.1).
    monkeypatch.setenv("POSTER_TRUSTED_PROXY", "1")
    start_camera(page)
    playwright_api.expect(page.locator(f"{LIVE} .poster-live-rate")).to_have_text(RATE, timeout=TIMEOUT_MS)
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"],
                                  extra_http_headers={"X-Forwarded-For": "10.7.0.2"})
    other = context.new_page()
    other.set_default_timeout(TIMEOUT_MS)
    other.goto(app_url, wait_until="load")
    start_camera(other)
    message = other.locator(f"{LIVE} .poster-live-message")
    playwright_api.expect(message).to_have_text(re.compile(r"waiting for the camera slot, [1-9]\d* s"),
                                                timeout=TIMEOUT_MS)
    other.screenshot(path=str(ARTIFACTS / "webcam-waiting.png"), full_page=True)
    page.locator(f"{LIVE} .poster-live-stop").click()  # the first visitor leaves: the second gets the camera
    playwright_api.expect(other.locator(f"{LIVE} .poster-live-rate")).to_have_text(RATE, timeout=TIMEOUT_MS)
    other.locator(f"{LIVE} .poster-live-stop").click()
    context.close()


def test_the_live_view_recovers_when_the_server_does_not_answer(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url, wait_until="load")
    message = page.locator(f"{LIVE} .poster-live-message")
    page.route("**/component_server/**", lambda route: route.abort())  # frames get no answer
    start_camera(page)
    playwright_api.expect(message).to_contain_text("The server did not answer", timeout=TIMEOUT_MS)
    page.unroute("**/component_server/**")
    playwright_api.expect(page.locator(f"{LIVE} .poster-live-rate")).to_have_text(RATE, timeout=TIMEOUT_MS)
    held: list = []
    page.route("**/component_server/**", lambda route: held.append(route))  # the next frame's answer is held back
    for _ in range(TIMEOUT_MS // 50):
        if held:
            break
        page.wait_for_timeout(50)
    page.locator(f"{LIVE} .poster-live-stop").click()
    # Start's event is taken in but never answered (a refused one would make Gradio reload the page).
    page.route("**/queue/join**", lambda route: route.fulfill(status=200, content_type="application/json",
                                                             body='{"event_id": "never-answered"}'))
    page.locator(f"{LIVE} .poster-live-start").click()
    playwright_api.expect(message).to_contain_text("connecting to the server", timeout=TIMEOUT_MS)
    for route in held:  # the stopped run's frame is answered now, in the new run: dropped, not drawn
        route.continue_()
    playwright_api.expect(message).to_contain_text("did not open the camera channel", timeout=TIMEOUT_MS)
    playwright_api.expect(page.locator(f"{LIVE} .poster-live-start")).to_be_enabled()
    context.close()


@pytest.mark.parametrize("camera, expected", [
    ("navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('no', 'NotAllowedError'));",
     "The camera was refused"),
    ("navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('none', 'NotFoundError'));",
     "No camera found"),
    ("Object.defineProperty(navigator, 'mediaDevices', {value: undefined});", "No camera available"),
])
def test_a_refused_or_missing_camera_gets_a_message(browser, app_url, camera, expected):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(camera)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(app_url, wait_until="load")
    start_camera(page)
    playwright_api.expect(page.locator(f"{LIVE} .poster-live-message")).to_contain_text(expected, timeout=TIMEOUT_MS)
    playwright_api.expect(page.locator(f"{LIVE} .poster-live-start")).to_be_enabled()  # it can be tried again
    context.close()
    assert not errors


def test_explorer_cell_click_shows_that_cells_images(page, runs_root):
    from demo.explorer.runs import get_run

    run = get_run("raf-db-test", runs_root)
    counts = run.predictions.groupby(["label", "pred"]).size()
    true, pred = counts.idxmax()
    expected = run.predictions[(run.predictions.label == true) & (run.predictions.pred == pred)]
    expected = expected.sort_values("confidence", ascending=False)

    page.get_by_role("tab", name="Explorer").click()
    wait_for_text(page, "#explorer-summary", r"accuracy")
    columns = len(RAF_CLASSES) + 1
    page.locator("#explorer-matrix [role=gridcell]").nth(true * columns + pred + 1).click()
    caption = wait_for_text(page, "#explorer-cell-caption", rf"true {RAF_CLASSES[true]}, predicted {RAF_CLASSES[pred]}")
    assert f"{len(expected)} image" in caption
    thumbs = page.locator("#explorer-cell-gallery .thumbnail-item")
    playwright_api.expect(thumbs).to_have_count(len(expected), timeout=TIMEOUT_MS)
    captions = page.locator("#explorer-cell-gallery .caption-label").all_inner_texts()
    from demo.explorer.views import gallery_caption

    assert captions == [gallery_caption(row) for _, row in expected.iterrows()]
    page.screenshot(path=str(ARTIFACTS / "explorer.png"), full_page=True)

    thumbs.first.click()
    card = wait_for_text(page, "#explorer-card", r"labeled")
    assert f"labeled {expected.iloc[0].label_name}" in card
    wait_for_text(page, "#explorer-explain-status", r"explaining '")
    page.screenshot(path=str(ARTIFACTS / "explorer-image.png"), full_page=True)


def test_model_tab_shows_the_active_checkpoint(page, app_store):  # noqa: F811
    page.get_by_role("tab", name="Model").click()
    facts = wait_for_text(page, "#model-facts", r"sha256")
    assert app_store.predictor("raf-db").model.info.sha256 in facts and "92.21 %" in facts
    assert "Not for decisions about people" in page.locator("body").inner_text()
    page.screenshot(path=str(ARTIFACTS / "model.png"), full_page=True)


def test_poster_v1_explanation_shows_what_the_model_has(browser, architectures_dir, monkeypatch):
    from demo.serving.store import ModelStore
    from poster.weights import locate

    monkeypatch.setenv(locate.ENV_CHECKPOINT, "poster-v1-raf-db")
    store = ModelStore(device="cpu", checkpoint_dirs=[architectures_dir])
    store.predictor("poster-v1-raf-db")
    with page_of(browser, store) as page:
        wait_for_text(page, "#active-checkpoint", r"Active checkpoint: POSTER · RAF-DB")
        page.locator("#photo-input input[type=file]").set_input_files(str(astronaut_path()))
        assert "POSTER · RAF-DB" in wait_for_text(page, "#photo-summary", r"1 face found")
        wait_for_text(page, "#photo-explain-status", r"explaining '")
        wait_for_text(page, "#photo-gradcam_image-title", r"IR-50 stages and MobileFaceNet")
        wait_for_text(page, "#photo-gradcam_landmark-title", r"each landmark position \(7x7")
        notes = wait_for_text(page, "#photo-explain-notes", r"no spatial picture")
        assert "image tokens" in notes
        playwright_api.expect(page.locator("#photo-gradcam_image img")).to_be_visible()
        playwright_api.expect(page.locator("#photo-gradcam_landmark img")).to_be_visible()
        playwright_api.expect(page.locator("#photo-cross_attention")).to_be_hidden()
        playwright_api.expect(page.locator("#photo-crop")).to_be_hidden()
        page.screenshot(path=str(ARTIFACTS / "photo-poster-v1.png"), full_page=True)
        page.get_by_role("tab", name="Model").click()
        wait_for_text(page, "#model-facts", r"BGR")
        body = page.locator("body").inner_text()
        for words in ("arXiv 2204.04083", "arXiv 2103.10189", "classified alone", "90.42 %"):
            assert words in body
        page.screenshot(path=str(ARTIFACTS / "model-architectures.png"), full_page=True)


def test_without_a_checkpoint_the_page_says_what_is_missing_and_still_boxes(browser, empty_store):  # noqa: F811
    with page_of(browser, empty_store) as page:
        banner = wait_for_text(page, "#missing-banner", r"No POSTER\+\+ checkpoint")
        for words in ("checkpoints/", "POSTER_CHECKPOINT_DIR", "POSTER_HUB_REPO", "Model tab"):
            assert words in banner
        playwright_api.expect(page.locator("#banner-download")).to_be_visible()
        page.locator("#photo-input input[type=file]").set_input_files(str(astronaut_path()))
        wait_for_text(page, "#photo-summary", r"1 face found, not classified")
        assert box_pixels(shown_image(page, "#photo-output")) > 100
        page.screenshot(path=str(ARTIFACTS / "no-checkpoint.png"), full_page=True)
        for tab in ("Webcam", "Explorer", "Model"):
            page.get_by_role("tab", name=tab).click()
            playwright_api.expect(page.locator("#missing-banner")).to_be_visible()


def pick(page, selector: str, option: str) -> None:
    """Choose the option that starts with ``option`` in the Gradio dropdown at ``selector``."""
    page.locator(f"{selector} input").click()
    page.get_by_role("option", name=re.compile("^" + re.escape(option))).click()


def test_photo_target_comparison_and_checkpoint_switch(browser, architectures_dir):  # noqa: F811
    from demo.serving.store import ModelStore

    store = ModelStore(device="cpu", checkpoint_dirs=[architectures_dir])
    store.predictor("raf-db")
    with page_of(browser, store) as page:
        wait_for_text(page, "#active-checkpoint", r"Active checkpoint: POSTER\+\+ · RAF-DB")
        page.locator("#photo-input input[type=file]").set_input_files(str(astronaut_path()))
        wait_for_text(page, "#photo-summary", r"1 face found")
        wait_for_text(page, "#photo-explain-status", r"explaining '")
        # Grad-CAM of another class.
        pick(page, "#photo-target", "Anger")
        wait_for_text(page, "#photo-explain-status", r"explaining 'Anger'")
        # Every architecture on the same face.
        page.get_by_text("Compare every checkpoint on this face").click()
        page.locator("#compare-button").click()
        table = wait_for_text(page, "#compare-table", r"ARM · RAF-DB")
        assert "POSTER++ · RAF-DB" in table and "POSTER · RAF-DB" in table
        playwright_api.expect(page.locator("#compare-gallery img")).to_have_count(3, timeout=TIMEOUT_MS)
        # Switching checkpoints analyzes and explains the photo again with the new one.
        page.get_by_role("tab", name="Model").click()
        pick(page, "#model-choice", "ARM · RAF-DB")
        wait_for_text(page, "#active-checkpoint", r"ARM · RAF-DB")
        page.get_by_role("tab", name="Photo").click()
        wait_for_text(page, "#photo-summary", r"checkpoint ARM · RAF-DB")
        wait_for_text(page, "#photo-explain-status", r"with ARM · RAF-DB")
        wait_for_text(page, "#photo-gradcam_image-title", r"ResNet-18")
        page.screenshot(path=str(ARTIFACTS / "photo-compare-switch.png"), full_page=True)


def test_picking_or_clicking_a_face_explains_it(page, app_store, tmp_path, astronaut, grace_hopper):  # noqa: F811
    from demo.photo.tab import analyze_photo

    left = np.asarray(Image.fromarray(astronaut).resize((400, 400)))
    right = np.asarray(Image.fromarray(grace_hopper).resize((int(400 * grace_hopper.shape[1] / grace_hopper.shape[0]),
                                                             400)))
    path = tmp_path / "two.png"
    Image.fromarray(np.concatenate([left, right], axis=1)).save(path)
    faces = analyze_photo(str(path), "raf-db", store=app_store).result.faces
    assert len(faces) == 2
    page.locator("#photo-input input[type=file]").set_input_files(str(path))
    wait_for_text(page, "#photo-summary", r"2 faces found")
    wait_for_text(page, "#photo-explain-status", r"Face 1 · .* explaining '")
    # The picker names both faces; picking the second explains it.
    page.locator("#photo-faces label", has_text="2:").click()
    wait_for_text(page, "#photo-explain-status", r"Face 2 · .* explaining '")
    # A click on the first face's box in the photo selects and explains it again.
    image = page.locator("#photo-output img").first
    shown = image.bounding_box()
    natural = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    scale = min(shown["width"] / natural[0], shown["height"] / natural[1])  # the picture is fit, centred
    left, top = (shown["width"] - natural[0] * scale) / 2, (shown["height"] - natural[1] * scale) / 2
    x1, y1, x2, y2 = faces[0].box
    image.click(position={"x": left + (x1 + x2) / 2 * scale, "y": top + (y1 + y2) / 2 * scale})
    wait_for_text(page, "#photo-explain-status", r"Face 1 · .* explaining '")
    playwright_api.expect(page.locator("#photo-faces input[type=radio]").first).to_be_checked()
