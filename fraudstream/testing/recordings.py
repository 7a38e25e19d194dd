"""Replaying a recording (a JSONL file) or events built in the test into a topic.

The same producer `fraudstream replay` uses: key `user_id` (labels: `transaction_id`), record
timestamp = event time, batched (the embedded broker slows down with many small batches).
Events may be dicts, pydantic events or JSON text; each becomes the record it would be read as:

>>> tx = {"transaction_id": "t1", "user_id": "u7", "merchant_id": "m1", "amount": 5.0,
...       "timestamp": "2024-01-01T00:00:01Z"}
>>> [(r.key, r.timestamp_ms) for r in records([tx])]
[(b'u7', 1704067201000)]
>>> is_labels([{"transaction_id": "t1", "is_fraud": True}])
True
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.errors import DeliveryError, InputError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from producers.replay import ReplayRecord

Source = Path | str | Iterable[Any]
"""A JSONL file, or events: pydantic events, dicts, or JSON text/bytes (one event each)."""


@dataclass(frozen=True)
class Replayed:
    """What a replay sent; pass it as `expect=` to wait for exactly these scores."""

    topic: str
    sent: int
    transaction_ids: frozenset[str]
    """Ids of the transactions sent (empty for labels)."""


def replay(
    source: Source,
    client_config: Mapping[str, str],
    topic: str,
    *,
    speed: float = 0.0,
    rate: float | None = None,
    linger_ms: int = 20,
    send_invalid: bool = False,
) -> Replayed:
    """Produce every record of `source` to `topic`; a delivery failure raises DeliveryError."""
    from producers.replay import Pacer
    from producers.replay import replay as produce

    ids: set[str] = set()

    def noting_ids() -> Iterator[ReplayRecord]:
        for record in records(source, send_invalid):
            transaction_id = _transaction_id(record.value)
            if transaction_id is not None:
                ids.add(transaction_id)
            yield record

    stats = produce(
        noting_ids(), topic, client_config, Pacer(speed=speed, rate=rate), linger_ms=linger_ms
    )
    if stats.failed:
        raise DeliveryError(
            f"{stats.failed} of {stats.sent} records not delivered to {topic}: {stats.first_errors}"
        )
    return Replayed(topic, stats.sent, frozenset(ids))


def records(source: Source, send_invalid: bool = False) -> Iterator[ReplayRecord]:
    """The records to send, keyed and timed as `fraudstream replay` does."""
    from producers.replay import ReplayRecord, parse_record, read_recording

    if isinstance(source, str | Path):
        yield from read_recording(Path(source), send_invalid)
        return
    for number, event in enumerate(source, start=1):
        line = _line(event)
        record = parse_record(number, line)
        if isinstance(record, str):
            if not send_invalid:
                raise InputError(f"event {number}: {record} (send_invalid=True sends it as is)")
            record = ReplayRecord(number, line, key=None, timestamp_ms=None)
        yield record


def is_labels(source: Source) -> bool:
    """Whether the first record of `source` is a label (for choosing the topic)."""
    if isinstance(source, str | Path):
        first = next(records(source, send_invalid=True), None)
        return first is not None and b'"is_fraud"' in first.value
    for event in source:
        return b'"is_fraud"' in _line(event)
    return False


def _line(event: Any) -> bytes:
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return event.encode()
    if isinstance(event, Mapping):
        return json.dumps(dict(event), separators=(",", ":")).encode()
    dump: BaseModel = event
    return dump.model_dump_json().encode()


def _transaction_id(value: bytes) -> str | None:
    try:
        document = json.loads(value)
    except ValueError:
        return None
    if not isinstance(document, dict) or "is_fraud" in document:
        return None
    found = document.get("transaction_id")
    return found if isinstance(found, str) else None
