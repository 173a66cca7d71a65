"""Render Results as one self-contained HTML page: plotly.js inlined once, figures as JSON drawn by one script,
images as base64 WebP, every string escaped by Jinja's autoescape. Nothing on the page asks the network."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import jinja2
import plotly
from plotly.offline import get_plotlyjs
from plotly.utils import PlotlyJSONEncoder

from kdscope.core.io import atomic_write_all
from kdscope.core.version import __version__
from kdscope.reports import sections
from kdscope.reports.findings import findings
from kdscope.results.schema import Results

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
    plotly_js, draw_js = get_plotlyjs(), environment.get_template("draw.js.j2").render()
    template = environment.get_template("report.html.j2")
    return template.render(
        sections=[{"id": i, "title": t, "blocks": b} for i, t, b in page], figures_json=_script_json(figures),
        plotly_js=plotly_js, draw_js=draw_js, content_security_policy=content_security_policy([plotly_js, draw_js]),
        plotly_version=plotly.__version__, kdscope_version=__version__,
        models=[m.name for m in results.models], data=results.data, meta=results.meta)


def content_security_policy(scripts: list[str]) -> str:
    """No request at all, and only these inline scripts run (by their sha256): a script that a crafted name or
    path slipped into the page would not. `base-uri` and `form-action` do not fall back to default-src."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode('utf-8')).digest()).decode()}'"
                      for s in scripts)
    return (f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src data:; font-src data:; "
            "base-uri 'none'; form-action 'none'")


def report_paths(out: str | Path) -> tuple[Path, Path]:
    """(HTML, JSON) for OUT: OUT/index.html and OUT/results.json for a folder, OUT and its .json twin for a file."""
    out = Path(out)
    if out.suffix in (".html", ".htm"):
        return out, out.with_suffix(".json")
    return out / "index.html", out / "results.json"


def write_report(results: Results, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write the page and the JSON beside it (see `report_paths`), both or neither; returns the HTML path.

    A JSON file already there that holds other data (a checkpoint's metadata, another audit's record) is replaced
    only with `overwrite=True`; one that holds these very results (a page rebuilt in place) is left as it is."""
    html_path, json_path = report_paths(out)
    record = results.to_json()
    page = render_html(results).encode("utf-8")
    writers = {html_path: lambda f: f.write(page)}
    if not _holds(json_path, record):
        if json_path.exists() and not overwrite:
            raise FileExistsError(f"{json_path} exists and does not hold these results (it may be a checkpoint's "
                                  "metadata or another audit's record): write the report elsewhere, or pass "
                                  "overwrite=True to replace it")
        writers[json_path] = lambda f: f.write(record.encode())
    atomic_write_all(writers)
    return html_path


def _holds(path: Path, record: str) -> bool:
    """Whether `path` holds the results whose JSON is `record` (the file a page is being rebuilt from)."""
    try:
        return path.exists() and Results.load(path).to_json() == record
    except (ValueError, TypeError, OSError):
        return False
