"""Per-merchant activity and risk, served as snapshots at hour boundaries.

A stream keyed by user cannot read merchant-keyed state deterministically while it is still
changing, so merchant features are defined *as of a snapshot boundary behind the transaction*:

    B = boundary(t) = start of the event-time hour before the one containing t
    merchant_tx_count_W(t)  = the merchant's transactions with event time in [B - W, B)
    merchant_fraud_count_W  = those of them with a fraud label whose labeled_at < B
    merchant_fraud_rate_W   = merchant_fraud_count_W / merchant_tx_count_W (0 if no transactions)

Only labels known at the boundary count, which is what makes the risk features honest: the
model never sees a label before it could have been reported (the Fraud Detection Handbook's
terminal risk features, with real label times instead of a fixed delay). A transaction never
sees its own label: its hour enters the windows after its own boundary.

A snapshot for boundary B is final once no transaction or label older than B can still arrive
(the stream's watermarks minus the allowed lateness have passed B). Offline, fed in event-time
order, everything older than B has been seen before a transaction needs B, so this one class
gives the stream's numbers. `MerchantCounts` is that single implementation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from models.user_window import HOUR_MS


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


@dataclass(frozen=True, slots=True)
class MerchantValues:
    """A merchant's numbers at one snapshot boundary, per MERCHANT_WINDOWS."""

    tx_counts: tuple[int, ...]
    fraud_counts: tuple[int, ...]

    def fraud_rates(self) -> tuple[float, ...]:
        return tuple(
            f / c if c else 0.0 for f, c in zip(self.fraud_counts, self.tx_counts, strict=True)
        )


EMPTY = MerchantValues((0,) * len(MERCHANT_WINDOWS), (0,) * len(MERCHANT_WINDOWS))


def snapshot_boundary(ts_ms: int) -> int:
    """The boundary (ms, hour-aligned) whose snapshot serves a transaction at `ts_ms`."""
    return (ts_ms // HOUR_MS - 1) * HOUR_MS


class MerchantCounts:
    """Hourly counts per merchant plus running window totals at the current boundary.

    A transaction of hour h is in window W at boundary hours b = h+1 .. h+W; its fraud label,
    reported in hour l, counts from b = max(h, l) + 1. Both are applied as the boundary moves
    (`advance`), so a lookup is a few dict reads and advancing one hour costs one pass over
    that hour's merchants.
    """

    def __init__(self) -> None:
        self._hourly: dict[int, Counter[str]] = {}
        self._boundary_hour: int | None = None
        self._tx: list[Counter[str]] = [Counter() for _ in MERCHANT_WINDOWS]
        self._fraud: list[Counter[str]] = [Counter() for _ in MERCHANT_WINDOWS]
        # boundary hour -> (window index, merchant, +1/-1) fraud changes taking effect then
        self._fraud_schedule: dict[int, list[tuple[int, str, int]]] = {}
        self.late_events = 0
        """Transactions that arrived after their hour was part of a published snapshot."""
        self.late_labels = 0
        """Fraud labels that arrived after a snapshot that should have counted them."""

    @property
    def boundary_ms(self) -> int | None:
        return None if self._boundary_hour is None else self._boundary_hour * HOUR_MS

    def add(self, merchant_id: str, ts_ms: int) -> bool:
        """Count a transaction; False (and counted in `late_events`) if its hour is closed."""
        hour = ts_ms // HOUR_MS
        if self._boundary_hour is not None and hour < self._boundary_hour:
            self.late_events += 1
            return False
        hourly = self._hourly.get(hour)
        if hourly is None:
            hourly = self._hourly[hour] = Counter()
        hourly[merchant_id] += 1
        return True

    def add_fraud_label(self, merchant_id: str, tx_ts_ms: int, labeled_at_ms: int) -> None:
        """A fraud label for one of the merchant's transactions, known from `labeled_at_ms`.

        A label that arrives after a snapshot that should have counted it is applied from the
        next boundary on (and counted in `late_labels`).
        """
        hour = tx_ts_ms // HOUR_MS
        start = max(hour, labeled_at_ms // HOUR_MS) + 1
        if self._boundary_hour is not None and start <= self._boundary_hour:
            self.late_labels += 1
            start = self._boundary_hour + 1
        for index, window in enumerate(MERCHANT_WINDOWS):
            end = hour + window.hours  # last boundary hour that still holds the transaction
            if start <= end:
                self._fraud_schedule.setdefault(start, []).append((index, merchant_id, 1))
                self._fraud_schedule.setdefault(end + 1, []).append((index, merchant_id, -1))

    def advance(
        self, boundary_ms: int, on_step: Callable[[int, set[str]], None] | None = None
    ) -> None:
        """Move the snapshot forward to `boundary_ms` (hour-aligned). Never moves backwards.

        `on_step(boundary_hour, changed)` is called after each hour with the merchants whose
        values changed in that step (a replica keeps their history, see `MerchantView`).
        """
        if boundary_ms % HOUR_MS:
            raise ValueError(f"boundary {boundary_ms} is not hour-aligned")
        target = boundary_ms // HOUR_MS
        if self._boundary_hour is None:
            pending = [*self._hourly, *(h - 1 for h in self._fraud_schedule)]
            self._boundary_hour = min([target, *pending])
        while self._boundary_hour < target:
            changed = self._step()
            if on_step is not None:
                on_step(self._boundary_hour, changed)

    def _step(self) -> set[str]:
        """Move the boundary by one hour; the merchants whose values changed."""
        current = self._boundary_hour
        if current is None:
            raise RuntimeError("advance() sets the boundary before stepping")
        changed: set[str] = set()
        entering = self._hourly.get(current)
        if entering:
            changed.update(entering)
        for index, window in enumerate(MERCHANT_WINDOWS):
            totals = self._tx[index]
            if entering:
                totals.update(entering)
            leaving = self._hourly.get(current - window.hours)
            if leaving:
                changed.update(leaving)
                totals.subtract(leaving)
                for merchant in leaving:
                    if totals[merchant] <= 0:
                        del totals[merchant]
        new = current + 1
        for index, merchant, delta in self._fraud_schedule.pop(new, ()):
            changed.add(merchant)
            frauds = self._fraud[index]
            frauds[merchant] += delta
            if frauds[merchant] <= 0:
                del frauds[merchant]
        self._boundary_hour = new
        self._hourly.pop(new - _MAX_HOURS - 1, None)
        return changed

    def lookup(self, merchant_id: str) -> MerchantValues:
        """A merchant's numbers at the current boundary."""
        t1, t7, t30 = self._tx
        f1, f7, f30 = self._fraud
        return MerchantValues(
            (t1.get(merchant_id, 0), t7.get(merchant_id, 0), t30.get(merchant_id, 0)),
            (f1.get(merchant_id, 0), f7.get(merchant_id, 0), f30.get(merchant_id, 0)),
        )

    def snapshot(self) -> dict[str, MerchantValues]:
        """Every merchant with a transaction in the longest window (what the stream ships)."""
        return {m: self.lookup(m) for m in self._tx[-1]}

    def stored_hours(self) -> int:
        return len(self._hourly)
