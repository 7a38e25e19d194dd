"""Per-partition hourly merchant aggregates, closed in event time: what one partition's owner
contributes to every worker's merchant snapshots.

Transactions are keyed by user, so no worker owns a merchant's traffic; but each partition has
exactly one owner. The owner counts its partition's transactions per (event-time hour, merchant)
and its fraud labels per (labeled hour, merchant, transaction hour), and *closes* an hour once
no record of it can still count: when the partition's newest event time minus the allowed
lateness has passed the hour's end. Closed hours are final and published (`FinalHours`); the sum
of every partition's final hours is the merchant state (`models.merchant_history`).

Everything here is decided per record, in offset order, so it is a function of the partition's
log alone: the same whatever the micro-batches, the worker or the number of restarts. A record
whose hour is already closed is *late*: counted in `late`, not in any hour (offline, in
event-time order, nothing is late).

Restart: a `FinalHours` also carries what its owner needs to rebuild the hours still open — the
offset of the oldest record in an open hour (`resume_offset`) and the next offset to read — so a
new owner re-reads from there (`PartitionHours.restore`) instead of from the start of the topic:
records before `next_offset` are recounted (hours still open only), later ones are processed as
usual. That re-read is bounded by about an hour and the allowed lateness of the partition's
traffic, not by the length of the topic.

>>> hours = PartitionHours(Source("tx", 0), allowed_lateness_ms=0)
>>> hours.add(offset=0, event_ms=30 * 60_000, key="m1")
True
>>> hours.add(offset=1, event_ms=61 * 60_000, key="m1")  # hour 0 closes: hour 1 has begun
True
>>> final = hours.take_final()
>>> final.closed_before, dict(final.hours[0])
(1, {'m1': 1})
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from models.user_window import HOUR_MS

SourceKind = Literal["tx", "labels"]
FraudKey = tuple[str, int]
"""A fraud label's contribution: (merchant id, the transaction's event-time hour)."""
Key = str | FraudKey


@dataclass(frozen=True, order=True)
class Source:
    """One input partition: of the transactions topic, or of the labels topic."""

    kind: SourceKind
    partition: int

    def __str__(self) -> str:
        return f"{self.kind}:{self.partition}"


@dataclass(frozen=True)
class FinalHours:
    """Hours a partition's owner closed, and how to rebuild its open hours after a restart.

    `hours` holds the hours in [`start`, `closed_before`) that have any records (for
    transactions: merchant -> count; for labels: (merchant, transaction hour) -> fraud count).
    `start` is None for a partition's first record.
    """

    source: Source
    start: int | None
    closed_before: int
    hours: dict[int, Counter[Key]]
    resume_offset: int
    next_offset: int
    newest_ms: int | None
    late: int


def hour_of(event_ms: int) -> int:
    return event_ms // HOUR_MS


@dataclass
class PartitionHours:
    """The owner's aggregate of one partition: closed-before hour, open hours, lateness."""

    source: Source
    allowed_lateness_ms: int
    closed_before: int | None = None
    """Hours before this one are closed (final); None before the first record."""
    newest_ms: int | None = None
    late: int = 0
    next_offset: int | None = None
    _open: dict[int, Counter[Key]] = field(default_factory=dict)
    _first_offset: dict[int, int] = field(default_factory=dict)
    _closed: dict[int, Counter[Key]] = field(default_factory=dict)
    _published: int | None = None
    """`closed_before` as of the last `take_final`."""
    _recount_until: int = -1
    """Offsets below this are recounted after a restore (open hours only, time unchanged)."""

    # -- records, in offset order -----------------------------------------------------------
    def add(self, offset: int, event_ms: int, key: Key | None) -> bool:
        """One record at `event_ms` contributing `key` to its hour (None: time only, e.g. a
        genuine label). False if it was late (its hour closed already)."""
        hour = hour_of(event_ms)
        self.next_offset = offset + 1
        if offset < self._recount_until:
            if key is not None and self.closed_before is not None and hour >= self.closed_before:
                self._count(hour, key, offset)
            return True
        closed = self.closed_before
        on_time = closed is None or hour >= closed
        if not on_time:
            self.late += 1
        elif key is not None:
            self._count(hour, key, offset)
        self._observe_time(event_ms)
        return on_time

    def skip(self, offset: int) -> None:
        """A record that carries no event time (invalid, or a label without `labeled_at`)."""
        self.next_offset = offset + 1

    def _count(self, hour: int, key: Key, offset: int) -> None:
        counts = self._open.get(hour)
        if counts is None:
            counts = self._open[hour] = Counter()
            self._first_offset[hour] = offset
        counts[key] += 1

    def _observe_time(self, event_ms: int) -> None:
        if self.newest_ms is None or event_ms > self.newest_ms:
            self.newest_ms = event_ms
            self.close_before(hour_of(event_ms - self.allowed_lateness_ms))

    # -- closing ----------------------------------------------------------------------------
    def close_before(self, hour: int) -> bool:
        """Close every hour before `hour` (the partition's time moved on, or it went idle and
        may not hold the others back). Later records of those hours are late."""
        if self.closed_before is not None and hour <= self.closed_before:
            return False
        for open_hour in [h for h in self._open if h < hour]:
            self._closed[open_hour] = self._open.pop(open_hour)
            del self._first_offset[open_hour]
        self.closed_before = hour
        return True

    def take_final(self) -> FinalHours | None:
        """The hours closed since the last call (None if the closure did not move)."""
        if self.closed_before is None or self.closed_before == self._published:
            return None
        final = FinalHours(
            source=self.source,
            start=self._published,
            closed_before=self.closed_before,
            hours=self._closed,
            resume_offset=self.resume_offset(),
            next_offset=self.next_offset if self.next_offset is not None else 0,
            newest_ms=self.newest_ms,
            late=self.late,
        )
        self._closed = {}
        self._published = self.closed_before
        return final

    def resume_offset(self) -> int:
        """Where a new owner must start reading to rebuild the open hours."""
        if self._first_offset:
            return min(self._first_offset.values())
        return self.next_offset if self.next_offset is not None else 0

    def open_entries(self) -> int:
        return sum(len(counts) for counts in self._open.values())

    # -- restart ----------------------------------------------------------------------------
    @classmethod
    def restore(cls, final: FinalHours, allowed_lateness_ms: int) -> PartitionHours:
        """The state right after `final` was published, open hours empty until re-read from
        `final.resume_offset` (records before `final.next_offset` are recounted)."""
        hours = cls(final.source, allowed_lateness_ms)
        hours.closed_before = final.closed_before
        hours._published = final.closed_before
        hours.newest_ms = final.newest_ms
        hours.late = final.late
        hours.next_offset = final.resume_offset
        hours._recount_until = final.next_offset
        return hours

    def adopt_closure(self, closed_before: int) -> None:
        """Another run of this partition's owner published a later closure (it went idle, then
        stopped before the matching restart point): those hours are final as published."""
        if self.close_before(closed_before):
            self._closed = {}
            self._published = closed_before
