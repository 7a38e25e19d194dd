"""Per-merchant transaction counts, served as snapshots at hour boundaries.

A stream keyed by user cannot read merchant-keyed state deterministically while it is still
changing, so merchant features are defined *as of a snapshot boundary behind the transaction*:

    boundary(t) = start of the event-time hour before the one containing t
    merchant_tx_count_W(t) = number of the merchant's transactions with event time in
                             [boundary(t) - W, boundary(t))

A snapshot for boundary B is final once no transaction older than B can still arrive (the
stream's watermark minus the allowed lateness has passed B). Offline, in event-time order, every
transaction older than B has been seen before any transaction that needs B, so the same class
gives the same numbers. `MerchantCounts` is that single implementation: add events, advance the
boundary, look merchants up.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from models.user_window import DAY_MS, HOUR_MS


@dataclass(frozen=True)
class MerchantWindow:
    name: str
    hours: int


MERCHANT_WINDOWS: tuple[MerchantWindow, ...] = (
    MerchantWindow("1d", 24),
    MerchantWindow("7d", 7 * 24),
    MerchantWindow("30d", 30 * 24),
)
_MAX_HOURS = max(w.hours for w in MERCHANT_WINDOWS)
SNAPSHOT_INTERVAL_MS = HOUR_MS
_ZERO = (0,) * len(MERCHANT_WINDOWS)


def snapshot_boundary(ts_ms: int) -> int:
    """The boundary (ms, hour-aligned) whose snapshot serves a transaction at `ts_ms`."""
    return (ts_ms // HOUR_MS - 1) * HOUR_MS


class MerchantCounts:
    """Hourly counts per merchant plus the running window totals at the current boundary.

    `advance(B)` moves the snapshot to boundary B by adding the hours that enter each window
    and removing those that leave it, so a lookup is one dict access and advancing costs one
    pass over an hour's merchants.
    """

    def __init__(self) -> None:
        self._hourly: dict[int, Counter[str]] = {}
        self._boundary_hour: int | None = None
        self._totals: list[Counter[str]] = [Counter() for _ in MERCHANT_WINDOWS]
        self.late_events = 0
        """Events that arrived after their hour was already part of a published snapshot."""

    @property
    def boundary_ms(self) -> int | None:
        return None if self._boundary_hour is None else self._boundary_hour * HOUR_MS

    def add(self, merchant_id: str, ts_ms: int) -> bool:
        """Count a transaction; False (and counted in `late_events`) if its hour is closed."""
        hour = ts_ms // HOUR_MS
        if self._boundary_hour is not None and hour < self._boundary_hour:
            self.late_events += 1
            return False
        self._hourly.setdefault(hour, Counter())[merchant_id] += 1
        return True

    def advance(self, boundary_ms: int) -> None:
        """Move the snapshot forward to `boundary_ms` (hour-aligned). Never moves backwards."""
        if boundary_ms % HOUR_MS:
            raise ValueError(f"boundary {boundary_ms} is not hour-aligned")
        target = boundary_ms // HOUR_MS
        if self._boundary_hour is None:
            # Nothing before the first boundary can be in any window except stored hours.
            self._boundary_hour = min([target, *self._hourly]) if self._hourly else target
        while self._boundary_hour < target:
            entering = self._hourly.get(self._boundary_hour)
            for index, window in enumerate(MERCHANT_WINDOWS):
                totals = self._totals[index]
                if entering:
                    totals.update(entering)
                leaving = self._hourly.get(self._boundary_hour - window.hours)
                if leaving:
                    totals.subtract(leaving)
                    for merchant in leaving:
                        if totals[merchant] <= 0:
                            del totals[merchant]
            self._boundary_hour += 1
            self._hourly.pop(self._boundary_hour - _MAX_HOURS - 1, None)

    def lookup(self, merchant_id: str) -> tuple[int, ...]:
        """Window counts of a merchant at the current boundary."""
        return tuple(totals.get(merchant_id, 0) for totals in self._totals)

    def snapshot(self) -> dict[str, tuple[int, ...]]:
        """All merchants with a non-zero count at the current boundary (what the stream ships)."""
        merchants = set(self._totals[-1])
        return {m: self.lookup(m) for m in sorted(merchants)}

    def stored_hours(self) -> int:
        return len(self._hourly)


ZERO_COUNTS = _ZERO
__all__ = [
    "DAY_MS",
    "MERCHANT_WINDOWS",
    "SNAPSHOT_INTERVAL_MS",
    "ZERO_COUNTS",
    "MerchantCounts",
    "MerchantWindow",
    "snapshot_boundary",
]
