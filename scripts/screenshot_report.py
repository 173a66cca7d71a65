"""Screenshots of a report for the README: `python scripts/screenshot_report.py runs/demo/report/index.html docs`.
Writes docs/report.png (the top of the page) and docs/report-explanations.png (the explanations section)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", "--disable-sync"]


def main(html: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
        page = browser.new_context(offline=True, viewport={"width": 1280, "height": 1100}).new_page()
        page.goto(html.resolve().as_uri())
        page.wait_for_function("[...document.querySelectorAll('.kd-plot')].every(d => d.dataset.rendered)")
        page.screenshot(path=str(out / "report.png"))
        page.add_style_tag(content="nav { position: static; }")
        page.locator("#explanations").screenshot(path=str(out / "report-explanations.png"))
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
