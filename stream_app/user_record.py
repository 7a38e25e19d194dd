"""A user's value in the worker's table: window state plus what makes redelivery idempotent.

Delivery is at-least-once: after a crash, Kafka redelivers everything since the last committed
offset, while the table (restored from its changelog) may already contain some of those
transactions. Applying them again would count them twice; re-scoring them from the newer state
would give different scores. So the record remembers the offset of the last transaction it
applied and the feature rows of the transactions applied since the partition's last commit (the
journal). A redelivered transaction gets its journalled row back — the identical score — and
the state is not touched. The journal is pruned to what is not committed yet, so it stays tiny.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.seen_ids import SeenIds
from models.user_window import UserWindows

MAX_JOURNAL = 256
"""Safety cap on journal entries (normally only the uncommitted few are kept)."""


def compact(value: bytes) -> bytes:
    """An exact-size copy. orjson's output keeps the whole buffer it wrote into (4 KB for a
    300-byte record, measured with orjson 3.13): the table keeps every user's record, so a
    million users cost 4 GB instead of 0.3, and each kept journal entry 8 KB instead of 0.5."""
    return memoryview(value).tobytes()


@dataclass(slots=True)  # not frozen: see "Hot value objects", models/stages.py
class JournalEntry:
    offset: int
    row: tuple[float, ...]
    late: bool
    encoded: orjson.Fragment
    """The entry's JSON, `[offset, row, late]`, encoded once: a user's record is written
    after each of its transactions, with every entry not committed yet (a replay can give a
    user several per commit interval)."""

    @classmethod
    def of(cls, offset: int, row: Sequence[float], late: bool) -> JournalEntry:
        kept = tuple(row)
        encoded = compact(orjson.dumps([offset, kept, late]))
        return cls(offset, kept, late, orjson.Fragment(encoded))


@dataclass
class UserRecord:
    windows: UserWindows = field(default_factory=UserWindows)
    applied_offset: int = -1
    journal: list[JournalEntry] = field(default_factory=list)
    seen: SeenIds = field(default_factory=SeenIds)
    """Transaction ids applied recently (a second copy under a new offset is a duplicate)."""

    def replayed(self, offset: int) -> JournalEntry | None:
        """The journalled result of an already applied transaction at `offset`, if any."""
        if offset > self.applied_offset:
            return None
        for entry in self.journal:
            if entry.offset == offset:
                return entry
        return None

    def remember(self, offset: int, row: Sequence[float], late: bool) -> None:
        self.applied_offset = max(self.applied_offset, offset)
        self.journal.append(JournalEntry.of(offset, row, late))
        if len(self.journal) > MAX_JOURNAL:
            del self.journal[: len(self.journal) - MAX_JOURNAL]

    def prune(self, committed_offset: int | None) -> None:
        """Drop journal entries Kafka will never redeliver (offset below the committed one)."""
        journal = self.journal
        # Entries are appended in offset order, so nothing to drop unless the first one goes.
        if committed_offset is not None and journal and journal[0].offset < committed_offset:
            self.journal = [e for e in journal if e.offset >= committed_offset]

    def to_json(self) -> list[Any]:
        return [
            self.windows.to_json(),
            self.applied_offset,
            [[e.offset, list(e.row), e.late] for e in self.journal],
            self.seen.to_json(),
        ]

    def encode(self) -> bytes:
        """`to_json()` as JSON bytes, with the journal entries encoded once each."""
        return orjson.dumps(
            [
                self.windows.to_json(),
                self.applied_offset,
                [e.encoded for e in self.journal],
                self.seen.encoded(),
            ]
        )

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> UserRecord:
        return cls(
            windows=UserWindows.from_json(data[0]),
            applied_offset=int(data[1]),
            journal=[JournalEntry.of(int(o), r, bool(late)) for o, r, late in data[2]],
            seen=SeenIds.from_json(data[3]) if len(data) > 3 else SeenIds(),
        )
