"""The paper's summary metrics and confidence intervals.

* ``Avg = (XR + XS + XRS) / 3`` (paper Eq. 13): mean accuracy over the three attacked scenarios.
* ``RI = (clean_m + Avg_m) - (clean_n + Avg_n)`` (paper Eq. 14, from Tian & Xu 2021): relative
  improvement of method m over the baseline n (the undefended model trained on the same data).
* Wilson score interval: a 95% confidence interval for an accuracy measured on n samples.

Accuracies are in percent throughout, like the paper's tables.
"""

from __future__ import annotations

import math


def avg(xr: float, xs: float, xrs: float) -> float:
    """Mean robust accuracy over the three attack scenarios (paper Eq. 13)."""
    return (xr + xs + xrs) / 3.0


def relative_improvement(clean: float, avg_: float, clean_baseline: float, avg_baseline: float) -> float:
    """RI of a method against the baseline (paper Eq. 14); 0 for the baseline itself."""
    return (clean + avg_) - (clean_baseline + avg_baseline)


def wilson_interval(correct: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for ``correct`` successes out of ``n``, as fractions in [0, 1]."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at 0 or n successes the bound is exactly 0 or 1 (centre and half then cancel only up to rounding)
    lo = 0.0 if correct == 0 else max(0.0, centre - half)
    hi = 1.0 if correct == n else min(1.0, centre + half)
    return (lo, hi)


#: decimals of an interval's bounds in each kind of output: compact markdown and HTML cells, HTML detail, CSV
INTERVAL_DECIMALS = {"compact": 0, "detail": 1, "data": 2}


def widen(lo: float, hi: float, decimals: int) -> tuple[str, str]:
    """An interval's bounds (percent) as text with ``decimals`` decimals, rounded outwards (down for the lower
    bound, up for the upper), so the printed interval always contains the computed one. Every renderer,
    reports and leaderboard pages alike, prints intervals through this function."""
    scale = 10.0**decimals
    low = math.floor(lo * scale + 1e-9) / scale
    high = math.ceil(hi * scale - 1e-9) / scale
    return f"{low:.{decimals}f}", f"{high:.{decimals}f}"


def interval_text(lo: float, hi: float, kind: str = "compact") -> str:
    """``"lo-hi"`` with an en dash, of :func:`widen` at the decimals of ``kind`` (:data:`INTERVAL_DECIMALS`)."""
    a, b = widen(lo, hi, INTERVAL_DECIMALS[kind])
    return f"{a}–{b}"
