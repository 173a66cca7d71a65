"""The demo report in a real browser: Debian's Chromium, headless, with networking off. No console error, no
request beyond the file itself, every plot drawn, and a screenshot to look at (runs/test-report/report.png).

`make test` installs Chromium when it is missing (scripts/ensure-chromium)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SCREENSHOT = Path("runs/test-report/report.png")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                  "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("Chromium is not installed: run `make test` (it installs Debian's chromium) or "
                    "`apt-get install chromium`")
    return found


def test_the_report_renders_offline_in_chromium(tiny_demo):
    from playwright.sync_api import sync_playwright

    errors, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(tiny_demo.html.resolve().as_uri(), wait_until="load")
            page.wait_for_function(
                "document.querySelectorAll('.kd-plot').length > 0 && document.querySelectorAll('.kd-plot').length"
                " === document.querySelectorAll('.kd-plot[data-rendered=\"true\"]').length", timeout=60_000)
            plots = page.eval_on_selector_all(
                ".kd-plot", "divs => divs.map(d => d.querySelectorAll('svg.main-svg').length > 0 && "
                            "d.getBoundingClientRect().height > 100)")
            images = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert [url for url in requests if not url.startswith(("file://", "data:"))] == []
    assert plots and all(plots)
    assert images and all(images)
    assert SCREENSHOT.stat().st_size > 10_000
