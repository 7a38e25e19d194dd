"""Users' records as the scorer sees them: decoded on first use, kept for the most recent users.

The table (`UserStore`) holds every user's record as compact JSON; decoding one costs more
than scoring it, so the records of recently seen users stay decoded here, least recently seen
dropped first. A record that cannot be decoded (a value no worker of this version wrote) starts
afresh instead of stopping the partition on every transaction of that user.

Records changed by scoring are marked (`touch`) and written to the table together (`write`):
a user scored several times between two writes costs one encoding and one changelog record.
A marked record is the only copy of its newest state, so it is never dropped from the cache
before it is written; the caller acknowledges offsets only after the write (at least once).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Protocol

import orjson

from stream_app.user_record import UserRecord, compact

log = logging.getLogger("fraudstream.worker.users")


class UserStore(Protocol):
    """Where users' records live: a changelog-backed table in the worker, a dict in tests."""

    def get(self, user_id: str, partition: int) -> bytes | None: ...

    async def put(self, partition: int, user_id: str, value: bytes) -> None: ...


class MemoryStore:
    """A `UserStore` in a dict (tests; the pure pipeline without a broker)."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.writes = 0

    def get(self, user_id: str, partition: int) -> bytes | None:
        return self.values.get(user_id)

    async def put(self, partition: int, user_id: str, value: bytes) -> None:
        self.values[user_id] = value
        self.writes += 1


class UserRecords:
    """An LRU of decoded records in front of a `UserStore`."""

    def __init__(
        self, store: UserStore, capacity: int, on_reset: Callable[[], None] = lambda: None
    ) -> None:
        self.store = store
        self.capacity = capacity
        self._on_reset = on_reset
        self._records: OrderedDict[str, tuple[int, UserRecord]] = OrderedDict()
        self._touched: set[str] = set()

    def __len__(self) -> int:
        return len(self._records)

    def touched(self) -> int:
        """Users changed since the last `write`."""
        return len(self._touched)

    def get(self, user_id: str, partition: int) -> UserRecord:
        cached = self._records.get(user_id)
        if cached is not None:
            self._records.move_to_end(user_id)
            return cached[1]
        stored = self.store.get(user_id, partition)
        record = UserRecord() if stored is None else self._decode(stored)
        self._records[user_id] = (partition, record)
        return record

    def _decode(self, stored: bytes) -> UserRecord:
        try:
            return UserRecord.from_json(orjson.loads(stored))
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            self._on_reset()
            log.error("unreadable user state (%d bytes), starting afresh: %r", len(stored), exc)
            return UserRecord()

    def touch(self, users: Iterable[str]) -> None:
        """These users' records changed (each was `get` since the last `write`)."""
        self._touched.update(users)

    async def write(self, committed: Callable[[int], int | None]) -> None:
        """Write the touched users' records (journals pruned to what is not committed), then
        shrink the cache (touched users are the most recent, so they stay)."""
        users, self._touched = self._touched, set()
        offsets: dict[int, int | None] = {}  # one lookup per partition, not per user
        for user in users:
            partition, record = self._records[user]
            if partition not in offsets:
                offsets[partition] = committed(partition)
            record.prune(offsets[partition])
            await self.store.put(partition, user, compact(record.encode()))
        while len(self._records) > self.capacity:
            self._records.popitem(last=False)

    def forget(self, partitions: set[int]) -> None:
        """Users of partitions another worker owns now must be read from the table again. (A
        touched record not written yet is dropped too: its offsets were not acknowledged, so
        the new owner scores them again from the state in the table.)"""
        for user in [u for u, (p, _) in self._records.items() if p in partitions]:
            del self._records[user]
            self._touched.discard(user)
