"""The transactions the benchmark sends, and their event times.

Three shapes of traffic, each like a situation the worker meets in production:

* replay: recorded (simulated) transactions with their own event times, sent as fast as
  possible — a backlog after an outage, or a replay;
* history then live: a history shifted by whole days so that it ends before now (users and
  merchants have a past, the daily rhythm is kept), then live transactions stamped with the
  wall clock as they are sent, so event time advances at wall-clock speed as it does in
  production and the merchant snapshots a transaction needs are long final;
* many users: one transaction for each of many new users, to measure the state they cost.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from schemas.events import epoch_ms, from_epoch_ms

DAY_MS = 86_400_000
_PLACEHOLDER = "@@bench-event-time@@"


@dataclass(frozen=True)
class Record:
    """One message to produce: the transaction id is what outputs are matched by."""

    transaction_id: str
    key: bytes | None
    value: bytes
    timestamp_ms: int | None


def _compact(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _stamp(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds")


def whole_days_before(records: Sequence[Record], now_ms: int) -> int:
    """The shift (a whole number of days, ms) that moves the newest record to before `now_ms`."""
    newest = max((r.timestamp_ms for r in records if r.timestamp_ms is not None), default=None)
    if newest is None:
        return 0
    return math.floor((now_ms - newest) / DAY_MS) * DAY_MS


def shifted(records: Sequence[Record], shift_ms: int) -> list[Record]:
    """The records with event time (JSON `timestamp` and record timestamp) moved by `shift_ms`.

    Each timestamp keeps its UTC offset, so local hour-of-day features keep their meaning.
    """
    moved = []
    delta = timedelta(milliseconds=shift_ms)
    for record in records:
        document = json.loads(record.value)
        when = datetime.fromisoformat(document["timestamp"]) + delta
        document["timestamp"] = _stamp(when)
        moved.append(Record(record.transaction_id, record.key, _compact(document), epoch_ms(when)))
    return moved


class LiveTemplate:
    """A transaction whose event time is filled in at send time (cheaply: two byte joins)."""

    def __init__(self, record: Record) -> None:
        document = json.loads(record.value)
        document["timestamp"] = _PLACEHOLDER
        self.transaction_id = record.transaction_id
        self.key = record.key
        prefix, suffix = _compact(document).split(f'"{_PLACEHOLDER}"'.encode())
        self._prefix = prefix + b'"'
        self._suffix = b'"' + suffix

    def render(self, wall_s: float) -> tuple[bytes, int]:
        """The value stamped with event time `wall_s` (UTC), and its record timestamp (ms)."""
        when_ms = int(wall_s * 1000)
        value = self._prefix + _stamp(from_epoch_ms(when_ms)).encode() + self._suffix
        return value, when_ms


def many_user_records(templates: Sequence[Record], users: int, end_ms: int) -> Iterator[Record]:
    """One transaction per new user `bench-user-N`, copied from `templates` (merchant, amount),
    1 ms apart and ending at `end_ms`, so each one adds one user's state to the worker."""
    if not templates:
        raise ValueError("need at least one template record")
    documents = [json.loads(template.value) for template in templates]
    start_ms = end_ms - max(0, users - 1)
    for index in range(users):
        document = dict(documents[index % len(documents)])
        user = f"bench-user-{index:07d}"
        when_ms = start_ms + index
        document["user_id"] = user
        document["transaction_id"] = f"bench-many-{index:07d}"
        document["timestamp"] = _stamp(from_epoch_ms(when_ms))
        yield Record(document["transaction_id"], user.encode(), _compact(document), when_ms)
