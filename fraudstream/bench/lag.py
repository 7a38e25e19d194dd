"""Does an app keep up with an offered load? Produced against received, sampled over time.

Read from outside the app (sent minus received downstream), so it holds for any worker; the
worker's own lag gauge is kept beside it when the worker exports one. An app keeps up when,
over the second half of the offered window, it delivers at least `KEEP_UP_SHARE` of what was
offered, and the backlog at the end of the window is under `MAX_LAG_S` seconds of traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

KEEP_UP_SHARE = 0.95
MAX_LAG_S = 1.0


@dataclass(frozen=True)
class LagSample:
    at_s: float
    """Seconds since the live window started."""
    sent: int
    received: int
    gauge: float | None = None
    """The worker's `fraudstream_consumer_lag*` gauge, summed over partitions and workers."""

    @property
    def in_flight(self) -> int:
        return max(0, self.sent - self.received)


def keep_up(samples: Sequence[LagSample], rate: float) -> dict[str, Any]:
    """Served/offered over the window's second half, the end backlog, and the verdict."""
    if len(samples) < 3:
        return {"keeps_up": None, "note": "too few samples"}
    end = samples[-1]
    half = [s for s in samples if s.at_s >= end.at_s / 2]
    first, last = half[0], half[-1]
    offered = last.sent - first.sent
    served = last.received - first.received
    share = served / offered if offered > 0 else None
    lag_end_s = end.in_flight / rate
    gauges = [s.gauge for s in samples if s.gauge is not None]
    return {
        "served_over_offered": None if share is None else round(share, 3),
        "lag_end": end.in_flight,
        "lag_end_s": round(lag_end_s, 3),
        "lag_max": max(s.in_flight for s in samples),
        "gauge_max": max(gauges) if gauges else None,
        "keeps_up": share is not None and share >= KEEP_UP_SHARE and lag_end_s <= MAX_LAG_S,
        "samples": [[round(s.at_s, 2), s.sent, s.received, s.gauge] for s in samples],
    }
