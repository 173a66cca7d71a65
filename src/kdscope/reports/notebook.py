"""The report inside a notebook: `show(results)` displays the page in a sandboxed iframe, so its styles and scripts
do not leak into the notebook."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from kdscope.reports.html import render_html
from kdscope.results.schema import Results


@dataclass(frozen=True)
class ReportView:
    """What a notebook shows for `show(results)`."""

    results: Results
    height_px: int = 720

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{escape(render_html(self.results), quote=True)}" style="width:100%;'
                f'height:{self.height_px}px;border:1px solid #ccc" sandbox="allow-scripts"></iframe>')


def show(results: Results, height_px: int = 720) -> ReportView:
    """The report of `results`, displayed when it is the last expression of a notebook cell."""
    return ReportView(results, height_px)
