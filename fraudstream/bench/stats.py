"""Summary statistics of the benchmark: percentiles, rates, ratios.

Percentiles are nearest-rank (an observed value, never an interpolation), so a p99 is the
latency of a real message. A message that never arrived counts as slower than every one that
did: a lost tail shows up as a missing percentile, not as a good one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SUMMARY_POINTS = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence; `inf` values sort last."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in 0..100, got {q}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def _finite(value: float) -> float | None:
    return round(value, 2) if math.isfinite(value) else None


def latency_summary(latencies_ms: Sequence[float], missing: int = 0) -> dict[str, float | None]:
    """n, lost, p50/p95/p99/max in milliseconds.

    `missing` messages count as infinitely late: a percentile that falls among them is None
    (rendered as "lost"), and so is `max` when anything is missing.
    """
    if missing < 0:
        raise ValueError("missing must be >= 0")
    summary: dict[str, float | None] = {"n": len(latencies_ms), "lost": missing}
    values = [*latencies_ms, *([math.inf] * missing)]
    for name, q in SUMMARY_POINTS:
        summary[name] = _finite(percentile(values, q)) if values else None
    summary["max"] = _finite(max(values)) if values else None
    return summary


def rate_between(first_s: float | None, last_s: float | None, count: int) -> float | None:
    """Events per second from the first to the last of `count` events (None if undefined)."""
    if first_s is None or last_s is None or count < 2 or last_s <= first_s:
        return None
    return (count - 1) / (last_s - first_s)


def rate_after_head(times_s: Sequence[float], head: int) -> float | None:
    """Events per second over sorted event times once the first `head` are discarded.

    The head holds the start-up transient (first fetches, first model call, a rebalance); the
    rate runs from the receipt of event `head` to the last receipt.
    """
    if head < 0:
        raise ValueError("head must be >= 0")
    kept = times_s[head:]
    if not kept:
        return None
    return rate_between(kept[0], kept[-1], len(kept))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def difference(minuend: float | None, subtrahend: float | None) -> float | None:
    if minuend is None or subtrahend is None:
        return None
    return minuend - subtrahend


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)
