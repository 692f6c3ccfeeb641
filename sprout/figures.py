"""Figures as a person reads them in a terminal: percentages with enough digits to tell apart.

A probability over thousands of shows is often a fraction of a percent; printed to a fixed
number of decimals every one of them reads "0.0%". Two significant digits keep them readable
and different ("3.4%", "0.27%", "0.0081%"). The web page formats the same way (`bentos/static/app.js`).
"""

from __future__ import annotations

import math

SMALLEST_PERCENT = 1e-4


def percent(fraction: float) -> str:
    """0.034 -> "3.4%", 0.0027 -> "0.27%", 8.1e-5 -> "0.0081%"; below 0.0001%: "<0.0001%"."""
    value = 100.0 * fraction
    if not math.isfinite(value):
        return "?"
    if value < SMALLEST_PERCENT:
        return f"<{SMALLEST_PERCENT:g}%"
    if value >= 99.5:
        return "100%"
    return f"{value:.2g}%" if value < 10 else f"{value:.0f}%"


def rating(score: float) -> str:
    """A predicted score on the 1..10 scale: "7.4/10"."""
    return f"{score:.1f}/10"
