"""Transaction ids a user's state has applied recently: one score per transaction id.

Producers retry without idempotence, batches get replayed, upstream systems send twice. A
transaction id seen again is not counted in the user's windows again and gets no second score
(the stream dead-letters it with reason `duplicate`; `fraudstream score` skips it and counts
it). The memory is bounded by a horizon of event time behind the user's newest transaction, which
must be at least the allowed lateness (a transaction older than that is not stored anyway) plus
the window in which the same message can come back. Merchant counts are per message: they are
aggregated per partition before any user state is read, so a duplicate counts there twice.

>>> seen = SeenIds()
>>> seen.add("t1", ts_ms=0, offset=7, newest_ms=0, horizon_ms=60_000)
>>> seen.first_offset("t1"), seen.first_offset("t2")
(7, None)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from models.user_window import MINUTE_MS

DEFAULT_DEDUPE_HORIZON_MS = 60 * MINUTE_MS
"""How long (event time behind the user's newest transaction) an applied id is remembered."""
MAX_IDS_PER_USER = 10_000
"""Cap for a user id that sends thousands of payments an hour (a bot, a test card)."""


def _event_time(item: tuple[str, tuple[int, int]]) -> int:
    return item[1][0]


class SeenIds:
    """Applied transaction ids of one user: id -> (event time, offset of the applied copy).

    The worker writes a user's record after each of its micro-batches, ids included, so the
    JSON of the ids is kept once encoded and grown by each added id (`encoded`): a user with
    hundreds of transactions an hour would otherwise cost a list per id on every write. Until
    the first `encoded()` (offline scoring never calls it) nothing is kept."""

    __slots__ = ("_ids", "_json")

    def __init__(self) -> None:
        self._ids: dict[str, tuple[int, int]] = {}
        self._json: bytearray | None = None
        """`to_json()` encoded without its closing bracket, or None: built by `encoded()`."""

    def __len__(self) -> int:
        return len(self._ids)

    def first_offset(self, transaction_id: str) -> int | None:
        """The offset of the copy that was applied, or None if the id is not known."""
        found = self._ids.get(transaction_id)
        return None if found is None else found[1]

    def add(
        self, transaction_id: str, ts_ms: int, offset: int, newest_ms: int, horizon_ms: int
    ) -> None:
        """Remember an applied id; forget those older than `newest_ms - horizon_ms`."""
        ids = self._ids
        cutoff = newest_ms - horizon_ms
        added = ts_ms >= cutoff
        new = added and transaction_id not in ids
        if added:
            ids[transaction_id] = (ts_ms, offset)
        if not ids:
            return
        if next(iter(ids.values()))[0] < cutoff or len(ids) > MAX_IDS_PER_USER:
            kept = [item for item in ids.items() if item[1][0] >= cutoff]
            if len(kept) > 1:  # a sparse user keeps only the id just added: nothing to order
                kept.sort(key=_event_time)
            self._ids = dict(kept[-MAX_IDS_PER_USER:])
            self._json = None
        elif added and self._json is not None:
            if new:
                if len(ids) > 1:
                    self._json += b","
                self._json += orjson.dumps([transaction_id, ts_ms, offset])
            else:
                self._json = None  # an id applied again in place: rebuilt when encoded

    def to_json(self) -> list[Any]:
        return [[i, ts, offset] for i, (ts, offset) in self._ids.items()]

    def encoded(self) -> orjson.Fragment:
        """`to_json()` as JSON, for `orjson.dumps` of a whole record."""
        body = self._json
        if body is None:
            body = self._json = bytearray(orjson.dumps(self.to_json())[:-1])
        body += b"]"
        encoded = bytes(body)
        del body[-1]
        return orjson.Fragment(encoded)

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> SeenIds:
        seen = cls()
        seen._ids = {str(i): (int(ts), int(offset)) for i, ts, offset in data}
        return seen
