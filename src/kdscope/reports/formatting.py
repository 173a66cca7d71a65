"""Number formatting for the report and the terminal: estimates with their 95% intervals."""

from __future__ import annotations

import math


def _undefined(interval: list[float] | None) -> bool:
    return not interval or any(v is None or math.isnan(v) for v in interval)


def percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def rate_ci(interval: list[float] | None, digits: int = 1) -> str:
    """'93.4% [91.2, 95.3]' from (estimate, low, high) rates."""
    if _undefined(interval):
        return "n/a" if interval else "-"
    mean, low, high = interval
    return f"{100 * mean:.{digits}f}% [{100 * low:.{digits}f}, {100 * high:.{digits}f}]"


def value_ci(interval: list[float] | None, digits: int = 3) -> str:
    """'0.912 [0.905, 0.920]' from (estimate, low, high)."""
    if _undefined(interval):
        return "n/a" if interval else "-"
    mean, low, high = interval
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def points_ci(interval: list[float] | None) -> str:
    """'+17.6 [+12.0, +23.1] points' from a difference of rates."""
    if _undefined(interval):
        return "n/a" if interval else "-"
    mean, low, high = (100 * v for v in interval)
    return f"{mean:+.1f} [{low:+.1f}, {high:+.1f}] points"


def number(value: float | int | None, spec: str = ",") -> str:
    return "-" if value is None else format(value, spec)


def kilobytes(value: int | None) -> str:
    return "-" if value is None else f"{value / 1024:,.1f} KB"
