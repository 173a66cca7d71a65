"""The offline HTML report: rendering only, from Results or their JSON."""

from kdscope.reports.findings import findings
from kdscope.reports.html import SIZE_BUDGET_BYTES, render_html, write_report

__all__ = ["SIZE_BUDGET_BYTES", "findings", "render_html", "write_report"]
