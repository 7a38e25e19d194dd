"""Per-partition offset contiguity: the worker's guard against records a framework skipped.

Kafka offsets of our input topics are contiguous (no transactions, no compaction). faust can
drop a fetched batch around a rebalance or recovery (see `stream_app.faust_tuning`); the agent
asks this guard about every record and seeks back once when a gap shows up, so nothing is lost.
Until the missing record arrives, records of that partition are skipped (they come again after
the seek); records seen again are recognised as repeats.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

Verdict = Literal["accept", "repeat", "gap", "skip"]


@dataclass
class OffsetGuard:
    reseek_after_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    next_offset: dict[int, int] = field(default_factory=dict)
    seeking: dict[int, float] = field(default_factory=dict)
    """Partitions with a seek under way, and when it was asked for."""
    gaps: int = 0

    def admit(self, partition: int, offset: int, committed: int | None) -> Verdict:
        """`accept` the next record, `repeat`/`skip` it, or report a `gap` (seek to expected)."""
        expected = self.next_offset.get(partition)
        if expected is None:
            expected = committed if committed is not None else offset
        if offset == expected:
            self.next_offset[partition] = offset + 1
            self.seeking.pop(partition, None)
            return "accept"
        if offset < expected:
            return "repeat"
        self.next_offset[partition] = expected
        asked = self.seeking.get(partition)
        if asked is not None and self.clock() - asked < self.reseek_after_s:
            return "skip"  # the seek is under way; this record will come again
        self.seeking[partition] = self.clock()
        self.gaps += 1
        return "gap"

    def expected(self, partition: int) -> int | None:
        return self.next_offset.get(partition)

    def forget(self, partitions: Iterable[int]) -> None:
        """After a rebalance these partitions restart from their committed offsets."""
        for partition in partitions:
            self.next_offset.pop(partition, None)
            self.seeking.pop(partition, None)
