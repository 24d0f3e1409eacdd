"""Summaries of latency samples: percentiles, and the figures the report shows."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values`` by linear interpolation between the two
    nearest ranks (numpy's default). NaN for no values."""
    if not values:
        return math.nan
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is not within 0..1")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """``n``, ``p50``, ``p99``, ``mean``, ``min``, ``max`` of ``values`` (seconds); the
    figures are ``None`` when there are no values."""
    if not values:
        return {"n": 0, "p50": None, "p99": None, "mean": None, "min": None, "max": None}
    return {
        "n": len(values),
        "p50": percentile(values, 0.5),
        "p99": percentile(values, 0.99),
        "mean": sum(values) / len(values),
        "min": min(values),
        "max": max(values),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is missing or the denominator
    is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    if isinstance(numerator, float) and math.isnan(numerator):
        return None
    return numerator / denominator
