"""The HTML report of the tiny demo: every section filled, plotly.js inlined once, nothing fetched from anywhere,
images as WebP data URIs, user strings escaped, under the size budget, and rebuilt from its JSON alone."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import re
from html import unescape
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from plotly.offline import get_plotlyjs

from kdscope import Subject, zoo
from kdscope.audit import Plan, audit
from kdscope.cli.main import main
from kdscope.reports import SIZE_BUDGET_BYTES, findings, render_html, write_report
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
    from kdscope.reports.notebook import show

    shown = show(tiny_demo.results)._repr_html_()
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


def _results_file(tiny_demo, folder):
    """A copy of the demo's results.json in its own folder, so a test may write beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.json"
    path.write_bytes((tiny_demo.html.parent / "results.json").read_bytes())
    return path


def test_report_never_replaces_a_json_it_did_not_write_without_force(tiny_demo, tmp_path):
    source = _results_file(tiny_demo, tmp_path / "audit")
    metadata = tmp_path / "teacher.json"
    metadata.write_text('{"format": "kdscope-checkpoint", "name": "teacher"}')
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.json").write_text(tiny_demo.results.to_json().replace('"kd_student"', '"another"'))
    for out, kept in ((tmp_path / "teacher.html", metadata), (other, other / "results.json")):
        before = kept.read_bytes()
        refused = CliRunner().invoke(main, ["report", str(source), "--out", str(out)])
        assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit)
        assert str(kept) in refused.output and "--force" in refused.output and "--out" in refused.output
        assert kept.read_bytes() == before and not (tmp_path / "teacher.html").exists()
    forced = CliRunner().invoke(main, ["report", str(source), "--out", str(tmp_path / "teacher.html"), "--force"])
    assert forced.exit_code == 0, forced.output
    assert metadata.read_bytes() == source.read_bytes()


def test_report_rebuilt_in_the_folder_of_its_json_leaves_the_json_alone(tiny_demo, tmp_path):
    source = _results_file(tiny_demo, tmp_path)
    before = source.stat().st_mtime_ns
    result = CliRunner().invoke(main, ["report", str(source), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "index.html").read_text() == tiny_demo.html.read_text()
    assert source.stat().st_mtime_ns == before


@pytest.mark.parametrize("failing", [".html", ".json"])
def test_a_full_disk_leaves_neither_file_half_written_nor_alone(tiny_demo, tmp_path, monkeypatch, failing):
    from kdscope.core import io

    staged = io._staged

    def full_disk(path, write):
        if path.suffix == failing:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return staged(path, write)

    monkeypatch.setattr(io, "_staged", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_report(tiny_demo.results, tmp_path / "report.html")
    assert list(tmp_path.iterdir()) == []


def test_the_csp_runs_only_the_pages_own_scripts_by_hash(tiny_demo):
    html = tiny_demo.html.read_text()
    policy = dict(directive.strip().split(" ", 1) for directive in
                  re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1).split(";"))
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 2 and "Plotly.newPlot" in scripts[1]
    own = {f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts}
    assert set(policy["script-src"].split()) == own
    assert "unsafe" not in policy["script-src"] and "nonce" not in policy["script-src"]
    injected = f"'sha256-{base64.b64encode(hashlib.sha256(b'alert(1)').digest()).decode()}'"
    assert injected not in policy["script-src"]
    assert policy["default-src"] == policy["base-uri"] == policy["form-action"] == "'none'"


def test_report_on_results_with_missing_keys_says_which_key(tiny_demo, tmp_path):
    record = json.loads(tiny_demo.results.to_json())
    del record["stages"]["predictions"]["versus_teacher"]
    (tmp_path / "stage.json").write_text(json.dumps(record))
    del record["models"]
    (tmp_path / "top.json").write_text(json.dumps(record))
    for name, key in (("stage.json", "the stage 'predictions' lacks the key 'versus_teacher'"),
                      ("top.json", "'models'")):
        result = CliRunner().invoke(main, ["report", str(tmp_path / name), "--out", str(tmp_path / "out.html")])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert key in result.output and "rerun the audit" in result.output
    assert not (tmp_path / "out.html").exists()


def test_the_headline_counts_the_images_audited_not_the_plans_cap(trained_tiny_teacher, tiny_world):
    teacher = trained_tiny_teacher
    student = Subject(zoo.build("student", 10, seed=1, width=2), name="student", mean=teacher.mean.flatten().tolist(),
                      std=teacher.std.flatten().tolist())
    results = audit([teacher, student], tiny_world[1].subset(range(10)),
                    Plan(images=100_000, stages=("predictions",)), progress=False)
    assert results.stages["predictions"].images == 10
    assert findings(results)[0].endswith("on 10 audit images.")
    assert "100000" not in " ".join(findings(results))


def test_report_rebuilds_a_version_2_results_file_and_leaves_it_as_it_is(tmp_path):
    source = tmp_path / "results.json"
    source.write_bytes((Path(__file__).parent.parent / "results" / "demo_v2.json").read_bytes())
    before = source.read_bytes()
    result = CliRunner().invoke(main, ["report", str(source), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    page = unescape((tmp_path / "index.html").read_text())
    assert "Ojha et al.'s test" in page and "not measured: version-2 results predate it" in page
    assert source.read_bytes() == before
    elsewhere = CliRunner().invoke(main, ["report", str(source), "--out", str(tmp_path / "new")])
    assert elsewhere.exit_code == 0, elsewhere.output
    assert json.loads((tmp_path / "new" / "results.json").read_text())["schema_version"] == 3
