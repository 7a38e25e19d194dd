"""Merchant snapshots for the stream: final when used, identical in every worker.

Transactions arrive keyed by user, so no worker sees all of a merchant's traffic through its own
partitions. Instead every worker keeps a *replica* of the merchant state: it reads every
partition of the transactions topic (and, for the risk features, of the labels topic) without a
consumer group and feeds this pure class. Because a snapshot for boundary B holds exactly the
events older than B, and is only released once no event older than B can still arrive, every
replica releases the same numbers, and they equal `fraudstream score`'s.

Watermark: per input partition, the newest event time seen minus the allowed lateness; the
watermark is the minimum over partitions. A partition that has been caught up (nothing left to
read) for a while is *idle* and does not hold the watermark back; an event that later arrives
behind a released snapshot is counted as late (the merchant state keeps the count).

Snapshots are built when a scorer first asks for them. Scorers of other partitions may be
behind, so the values of the last `max_snapshots` boundaries stay answerable: each merchant
keeps a short history of (boundary hour, values) entries, one per hour in which its values
changed, and a lookup is a bisection in it. (Copying every merchant's values at every hour
cost more than the rest of the scoring.) `backlog_hours()` tells the reader to pause when it
has read far ahead of what the scorers need.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

from models.merchant_window import EMPTY, MERCHANT_WINDOWS, MerchantCounts, MerchantValues
from models.user_window import DEFAULT_ALLOWED_LATENESS_MS, HOUR_MS

_HISTORY_MS = 32 * 24 * HOUR_MS
"""Events kept to rebuild an old snapshot exactly: the longest window plus a margin, so a
boundary up to two days behind the newest one can be rebuilt exactly (a partition re-read after
a restart). Memory grows with the traffic of these 32 days (see the README's known problems)."""
_PRUNE_SLACK_MS = 24 * HOUR_MS
_LONGEST_WINDOW_MS = max(w.hours for w in MERCHANT_WINDOWS) * HOUR_MS


@dataclass
class _Source:
    """One input partition's progress."""

    newest_ms: int | None = None
    idle: bool = False


@dataclass
class MerchantView:
    """Replicated merchant state with watermarks and retained snapshots (no I/O)."""

    allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS
    max_snapshots: int = 72
    """Boundaries (hours) that stay answerable behind the newest one."""
    counts: MerchantCounts = field(default_factory=MerchantCounts)
    transaction_sources: dict[int, _Source] = field(default_factory=dict)
    label_sources: dict[int, _Source] = field(default_factory=dict)
    stale_requests: int = 0
    inexact_requests: int = 0
    """Stale requests older than the retained events cover (rebuilt from what is left)."""
    _history_from_ms: int | None = None
    _timeline: dict[str, tuple[list[int], list[MerchantValues]]] = field(default_factory=dict)
    _rebuilt: dict[int, dict[str, MerchantValues]] = field(default_factory=dict)
    _steps_since_prune: int = 0
    _pending_labels: dict[str, int] = field(default_factory=dict)
    _history: list[tuple[int, str]] = field(default_factory=list)
    _fraud_history: list[tuple[str, int, int]] = field(default_factory=list)
    _transaction_index: dict[str, tuple[str, int]] = field(default_factory=dict)

    # -- inputs -----------------------------------------------------------------------------
    def set_partitions(self, transactions: int, labels: int = 0) -> None:
        """Declare the input partitions; the watermark waits for every one of them."""
        for p in range(transactions):
            self.transaction_sources.setdefault(p, _Source())
        for p in range(labels):
            self.label_sources.setdefault(p, _Source())

    def add_transaction(
        self, partition: int, transaction_id: str, merchant_id: str, ts_ms: int
    ) -> None:
        source = self.transaction_sources.setdefault(partition, _Source())
        source.idle = False
        if source.newest_ms is None or ts_ms > source.newest_ms:
            source.newest_ms = ts_ms
        if self.counts.add(merchant_id, ts_ms):
            self._history.append((ts_ms, merchant_id))
        labeled_at = self._pending_labels.pop(transaction_id, None)
        if labeled_at is not None:
            self._add_fraud(merchant_id, ts_ms, labeled_at)
        else:
            self._transaction_index[transaction_id] = (merchant_id, ts_ms)

    def add_label(
        self, partition: int, transaction_id: str, is_fraud: bool, labeled_at_ms: int
    ) -> None:
        source = self.label_sources.setdefault(partition, _Source())
        source.idle = False
        if source.newest_ms is None or labeled_at_ms > source.newest_ms:
            source.newest_ms = labeled_at_ms
        known = self._transaction_index.pop(transaction_id, None)
        if not is_fraud:
            return
        if known is None:
            # The transaction has not been read yet (labels replayed ahead of traffic).
            self._pending_labels[transaction_id] = labeled_at_ms
        else:
            self._add_fraud(known[0], known[1], labeled_at_ms)

    def _add_fraud(self, merchant_id: str, ts_ms: int, labeled_at_ms: int) -> None:
        self.counts.add_fraud_label(merchant_id, ts_ms, labeled_at_ms)
        self._fraud_history.append((merchant_id, ts_ms, labeled_at_ms))

    def set_idle(self, kind: str, partition: int, idle: bool = True) -> None:
        sources = self.transaction_sources if kind == "transactions" else self.label_sources
        sources.setdefault(partition, _Source()).idle = idle

    # -- watermark and snapshots ------------------------------------------------------------
    def watermark(self) -> int | None:
        """Event time before which nothing more can arrive (None until every input reported)."""
        marks = []
        for source in (*self.transaction_sources.values(), *self.label_sources.values()):
            if source.idle:
                continue
            if source.newest_ms is None:
                return None
            marks.append(source.newest_ms - self.allowed_lateness_ms)
        if not marks:
            newest = [
                s.newest_ms
                for s in (*self.transaction_sources.values(), *self.label_sources.values())
                if s.newest_ms is not None
            ]
            # Everything is idle: release what has been seen (nothing more is coming now).
            return max(newest) if newest else None
        return min(marks)

    def snapshot_for(self, boundary_ms: int) -> Snapshot | None:
        """The snapshot at `boundary_ms`; None while it is not final.

        The merchant state is advanced hour by hour as scorers ask for boundaries (so the
        replica never runs ahead of its own scorers). A boundary older than the retained
        `max_snapshots` hours (a partition re-read after a restart, say) is rebuilt exactly from
        the retained events and counted in `stale_requests`.
        """
        hour = boundary_ms // HOUR_MS
        current = self.counts.boundary_ms
        if current is None or boundary_ms > current:
            mark = self.watermark()
            if mark is None or boundary_ms > mark:
                return None
            self.counts.advance(boundary_ms, self._record_step)
            self._forget_old()
            return Snapshot(self, hour)
        if hour > current // HOUR_MS - self.max_snapshots:
            return Snapshot(self, hour)
        rebuilt = self._rebuilt.get(boundary_ms)
        if rebuilt is None:
            self.stale_requests += 1
            if (
                self._history_from_ms is not None
                and boundary_ms - _LONGEST_WINDOW_MS < self._history_from_ms
            ):
                self.inexact_requests += 1
            rebuilt = self._rebuilt[boundary_ms] = self._rebuild(boundary_ms)
            while len(self._rebuilt) > self.max_snapshots:
                del self._rebuilt[min(self._rebuilt)]
        return Snapshot(self, hour, rebuilt)

    def lookup(self, boundary_ms: int, merchant_id: str) -> MerchantValues | None:
        """A merchant's values at a final boundary; None while the boundary is not final."""
        snapshot = self.snapshot_for(boundary_ms)
        if snapshot is None:
            return None
        return snapshot.get(merchant_id)

    def value_at(self, hour: int, merchant_id: str) -> MerchantValues:
        """A merchant's values at a retained boundary hour (see `snapshot_for`)."""
        history = self._timeline.get(merchant_id)
        if history is None:
            return EMPTY
        hours, values = history
        index = bisect_right(hours, hour) - 1
        return values[index] if index >= 0 else EMPTY

    def _record_step(self, hour: int, changed: set[str]) -> None:
        lookup = self.counts.lookup
        timeline = self._timeline
        for merchant in changed:
            history = timeline.get(merchant)
            if history is None:
                history = timeline[merchant] = ([], [])
            history[0].append(hour)
            history[1].append(lookup(merchant))
        self._steps_since_prune += 1

    def backlog_hours(self) -> float:
        """Event time read but not yet needed by any scorer (the reader pauses when large)."""
        mark = self.watermark()
        current = self.counts.boundary_ms
        if mark is None or current is None:
            return 0.0
        return (mark - current) / HOUR_MS

    def _rebuild(self, boundary_ms: int) -> dict[str, MerchantValues]:
        """The snapshot at an old boundary, from the retained events (slow, exact, rare)."""
        counts = MerchantCounts()
        for ts_ms, merchant in self._history:
            if ts_ms < boundary_ms:
                counts.add(merchant, ts_ms)
        for merchant, ts_ms, labeled_at in self._fraud_history:
            counts.add_fraud_label(merchant, ts_ms, labeled_at)
        counts.advance(boundary_ms)
        return counts.snapshot()

    def _forget_old(self) -> None:
        current = self.counts.boundary_ms
        if current is not None and self._steps_since_prune >= max(24, self.max_snapshots // 2):
            self._steps_since_prune = 0
            self._prune_timeline(current // HOUR_MS - self.max_snapshots)
        # Events older than the longest window (plus margin) can no longer matter. Pruned once
        # a day of event time has gone stale, so each event is copied ~32 times in its life.
        horizon = self.counts.boundary_ms
        if horizon is None or not self._history:
            return
        cutoff = horizon - _HISTORY_MS
        if self._history[0][0] < cutoff - _PRUNE_SLACK_MS:
            self._history_from_ms = cutoff
            self._history = [e for e in self._history if e[0] >= cutoff]
            self._fraud_history = [e for e in self._fraud_history if e[1] >= cutoff]
            self._transaction_index = {
                k: v for k, v in self._transaction_index.items() if v[1] >= cutoff
            }

    def _prune_timeline(self, oldest_hour: int) -> None:
        """Keep, per merchant, the entries from the one in effect at `oldest_hour` on."""
        for merchant in list(self._timeline):
            hours, values = self._timeline[merchant]
            keep_from = bisect_right(hours, oldest_hour) - 1
            if keep_from > 0:
                del hours[:keep_from]
                del values[:keep_from]
            if len(hours) == 1 and hours[0] <= oldest_hour and values[0] == EMPTY:
                del self._timeline[merchant]

    def history_entries(self) -> int:
        """Events kept for exact rebuilds (transactions and fraud labels)."""
        return len(self._history) + len(self._fraud_history) + len(self._transaction_index)

    def timeline_entries(self) -> int:
        """Stored (hour, values) entries, for tests and memory accounting."""
        return sum(len(hours) for hours, _ in self._timeline.values())


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Merchant values at one final boundary hour."""

    view: MerchantView
    hour: int
    rebuilt: dict[str, MerchantValues] | None = None

    def get(self, merchant_id: str) -> MerchantValues:
        if self.rebuilt is not None:
            return self.rebuilt.get(merchant_id, EMPTY)
        return self.view.value_at(self.hour, merchant_id)
