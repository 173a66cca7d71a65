"""Render Results as one self-contained HTML page: plotly.js inlined once, figures as JSON drawn by one script,
images as base64 WebP, every string escaped by Jinja's autoescape. Nothing on the page asks the network."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import plotly
from plotly.offline import get_plotlyjs
from plotly.utils import PlotlyJSONEncoder

from kdscope import __version__
from kdscope.checkpoint import atomic_write
from kdscope.reports import sections
from kdscope.reports.findings import findings
from kdscope.results import Results

SIZE_BUDGET_BYTES = 8 * 1024 * 1024


def _script_json(value: object) -> str:
    """JSON that is safe inside a <script> element: no '<', '>' or '&' can close it or open a comment."""
    text = json.dumps(value, cls=PlotlyJSONEncoder, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _number_figures(blocks: list[dict], figures: list[dict]) -> None:
    for block in blocks:
        if block["kind"] == "figure":
            block["index"] = len(figures)
            figures.append(block["spec"])
        elif block["kind"] == "details":
            _number_figures(block["blocks"], figures)


def render_html(results: Results) -> str:
    """The report page for `results` (from an audit or from its JSON)."""
    headline = findings(results)
    page = [("summary", "Summary", sections.summary(results, headline)),
            ("models", "Models and lineage", sections.models(results)),
            ("agreement", "Agreement with the teacher", sections.agreement(results)),
            ("explanations", "Explanations side by side", sections.explanations(results)),
            ("sanity", "Sanity checks of the saliency methods", sections.sanity(results)),
            ("attacks", "Attacks, robustness and transfer", sections.attacks(results)),
            ("cka", "Representation similarity (CKA)", sections.cka(results)),
            ("probes", "Knowledge-transfer probes", sections.probes(results)),
            ("plan", "Plan and data", sections.plan(results))]
    figures: list[dict] = []
    for _, _, blocks in page:
        _number_figures(blocks, figures)
    environment = jinja2.Environment(loader=jinja2.PackageLoader("kdscope.reports", "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    template = environment.get_template("report.html.j2")
    return template.render(
        sections=[{"id": i, "title": t, "blocks": b} for i, t, b in page], figures_json=_script_json(figures),
        plotly_js=get_plotlyjs(), plotly_version=plotly.__version__, kdscope_version=__version__,
        models=[m["name"] for m in results.models], data=results.data, meta=results.meta)


def report_paths(out: str | Path) -> tuple[Path, Path]:
    """(HTML, JSON) for OUT: OUT/index.html and OUT/results.json for a folder, OUT and its .json twin for a file."""
    out = Path(out)
    if out.suffix in (".html", ".htm"):
        return out, out.with_suffix(".json")
    return out / "index.html", out / "results.json"


def write_report(results: Results, out: str | Path) -> Path:
    """Write the page and the JSON beside it (see `report_paths`); returns the HTML path. A JSON file that already
    holds these very results (a page rebuilt in place) is left as it is."""
    html_path, json_path = report_paths(out)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    if not _holds(json_path, results):
        results.save(json_path)
    atomic_write(html_path, lambda f: f.write(render_html(results).encode("utf-8")))
    return html_path


def _holds(path: Path, results: Results) -> bool:
    try:
        return path.exists() and Results.load(path).to_json() == results.to_json()
    except (ValueError, TypeError):
        return False
