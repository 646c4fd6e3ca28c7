"""Small statistics helpers: percentiles, summaries and a least-squares slope (no numpy needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values`` by linear interpolation; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    weight = rank - low
    return float(ordered[low] * (1.0 - weight) + ordered[high] * weight)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p90 / p99 / p99.9 / max / mean of durations given in seconds, reported in milliseconds."""
    if not seconds:
        return {"count": 0, "p50": math.nan, "p90": math.nan, "p99": math.nan, "p999": math.nan,
                "max": math.nan, "mean": math.nan}
    ordered = sorted(seconds)
    return {
        "count": len(ordered),
        "p50": round(percentile(ordered, 50) * 1000, 3),
        "p90": round(percentile(ordered, 90) * 1000, 3),
        "p99": round(percentile(ordered, 99) * 1000, 3),
        "p999": round(percentile(ordered, 99.9) * 1000, 3),
        "max": round(ordered[-1] * 1000, 3),
        "mean": round(sum(ordered) / len(ordered) * 1000, 3),
    }


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope dy/dx of ``(x, y)`` points (e.g. backlog rows per second); 0 for < 2 points."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var_x = sum((x - mean_x) ** 2 for x, _ in points)
    if var_x == 0:
        return 0.0
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return cov / var_x


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` rounded to 3 digits; NaN when the denominator is 0 or NaN."""
    if not denominator or math.isnan(denominator) or math.isnan(numerator):
        return math.nan
    return round(numerator / denominator, 3)
