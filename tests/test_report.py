"""The HTML report of the tiny demo: every section filled, plotly.js inlined once, nothing fetched from anywhere,
images as WebP data URIs, user strings escaped, under the size budget, and rebuilt from its JSON alone."""

from __future__ import annotations

import base64
import json
import re
from html import unescape

import cv2
import numpy as np
from click.testing import CliRunner
from plotly.offline import get_plotlyjs

from kdscope.cli import main
from kdscope.reports import SIZE_BUDGET_BYTES, render_html
from kdscope.reports.images import overlay, shared_scale
from kdscope.results import Results


def _page_without_plotly(html: str) -> str:
    return html.replace(get_plotlyjs(), "")


def test_every_section_is_filled_and_plotly_is_inlined_once(tiny_demo):
    html = tiny_demo.html.read_text()
    assert html.count(get_plotlyjs()[:300]) == 1
    page = unescape(_page_without_plotly(html))
    assert "not in this audit's plan" not in page and "skipped" not in page
    for section in ("summary", "models", "agreement", "explanations", "sanity", "attacks", "cka", "probes"):
        assert f'<section id="{section}">' in html
    figures = json.loads(re.search(r'id="kd-figures">(.*?)</script>', html, re.S).group(1))
    assert html.count('class="kd-plot"') == len(figures) >= 8


def test_nothing_on_the_page_points_outside_it(tiny_demo):
    page = _page_without_plotly(tiny_demo.html.read_text())
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "http://" not in page and "https://" not in page
    assert "default-src 'none'" in page


def test_images_are_webp_data_uris_and_the_page_fits_the_budget(tiny_demo):
    html = tiny_demo.html.read_text()
    sources = re.findall(r'<img alt="[^"]*" src="([^"]+)"', html)
    assert len(sources) > 3 * 5
    for source in sources:
        assert source.startswith("data:image/webp;base64,")
        pixels = cv2.imdecode(np.frombuffer(base64.b64decode(source.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        assert pixels is not None and pixels.shape[2] == 3
    assert tiny_demo.html.stat().st_size < SIZE_BUDGET_BYTES


def test_user_strings_are_escaped_in_text_and_in_figures(tiny_demo):
    evil = "<img src=x onerror=alert(1)>"
    text = tiny_demo.results.to_json().replace('"kd_student"', json.dumps(evil))
    html = render_html(Results.from_json(text))
    assert evil not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    figures = re.search(r'id="kd-figures">(.*?)</script>', html, re.S).group(1)
    assert "<" not in figures and "&lt;img" in json.loads(figures)[0]["data"][0]["x"][1]
    assert evil not in json.dumps(json.loads(figures), ensure_ascii=False)


def test_the_page_is_rebuilt_from_its_json_alone(tiny_demo, tmp_path):
    out = tmp_path / "again.html"
    result = CliRunner().invoke(main, ["report", str(tiny_demo.html.parent / "results.json"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == tiny_demo.html.read_text()


def test_a_notebook_shows_the_report_in_an_iframe(tiny_demo):
    shown = tiny_demo.results._repr_html_()
    assert shown.startswith("<iframe srcdoc=") and "<script" not in shown and "&lt;script" in shown


def test_one_colour_scale_per_row_keeps_differences_between_models():
    image = np.full((8, 8, 3), 128, np.uint8)
    weak, strong = np.full((8, 8), 1.0), np.full((8, 8), 4.0)
    scale = shared_scale([weak, strong])
    assert scale == 4.0
    assert overlay(image, weak, scale).mean() < overlay(image, strong, scale).mean()
    assert np.array_equal(overlay(image, weak, shared_scale([weak])), overlay(image, strong, shared_scale([strong])))


def test_a_partial_audit_still_renders_and_says_what_did_not_run(tiny_demo):
    partial = Results.from_json(tiny_demo.results.to_json())
    partial.stages = {"predictions": partial.stages["predictions"]}
    partial.checks = []
    page = unescape(_page_without_plotly(render_html(partial)))
    for stage in ("cams", "gallery", "sanity", "attacks", "cka", "probes"):
        assert f"The '{stage}' stage was not in this audit's plan." in page
    assert "No pass/fail checks were given" in page
