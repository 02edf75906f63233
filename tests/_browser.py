"""What the browser tests share: Debian's Chromium (a module importing this is skipped without it or
without Playwright), its flags, where failure screenshots go, and waiting for a text to appear."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
BASE_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-dev-shm-usage"]


def wait_for_text(page, selector: str, pattern: str, timeout_ms: int) -> str:
    """The element's text once it matches ``pattern`` (a regular expression)."""
    locator = page.locator(selector)
    playwright_api.expect(locator).to_contain_text(re.compile(pattern), timeout=timeout_ms)
    return locator.inner_text()
