"""Replaying a JSONL recording into Kafka with confluent-kafka, paced by event time.

Transactions are keyed by `user_id` with the record timestamp set to the event time; labels by
`transaction_id` with `labeled_at`. Lines are sent byte for byte as recorded, so a recording
of bad input (for dead-letter tests) reaches the topic exactly as it was captured.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from schemas.errors import InputError
from schemas.events import epoch_ms
from schemas.jsonl import iter_lines

# (key field, time field) per kind of record; the kind is recognised from the fields present.
KINDS: dict[str, tuple[str, str]] = {
    "transaction": ("user_id", "timestamp"),
    "label": ("transaction_id", "labeled_at"),
}


@dataclass(frozen=True)
class ReplayRecord:
    line_number: int
    value: bytes
    key: bytes | None
    timestamp_ms: int | None


@dataclass
class ReplayStats:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    invalid_sent: int = 0
    first_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "delivered": self.delivered,
            "failed": self.failed,
            "invalid_sent_as_is": self.invalid_sent,
            "seconds": round(self.seconds, 3),
            "rate_per_s": round(self.sent / self.seconds, 1) if self.seconds > 0 else None,
            "first_errors": self.first_errors,
        }


def _kind_of(document: Mapping[str, Any]) -> str | None:
    if "is_fraud" in document:
        return "label"
    if "user_id" in document and "timestamp" in document:
        return "transaction"
    return None


def parse_record(number: int, line: bytes) -> ReplayRecord | str:
    """The record to send for a line, or why it cannot be keyed and timed."""
    try:
        document = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg})"
    except ValueError:
        return "not UTF-8 JSON"
    if not isinstance(document, dict):
        return "not a JSON object"
    kind = _kind_of(document)
    if kind is None:
        return "neither a transaction (user_id, timestamp) nor a label (is_fraud)"
    key_field, time_field = KINDS[kind]
    key = document.get(key_field)
    when = document.get(time_field)
    timestamp_ms = None
    if isinstance(when, str):
        try:
            parsed = datetime.fromisoformat(when.upper())
        except ValueError:
            return f"{time_field} is not an RFC 3339 timestamp"
        if parsed.tzinfo is None:
            return f"{time_field} has no UTC offset"
        timestamp_ms = epoch_ms(parsed)
    elif when is not None or kind == "transaction":
        return f"{time_field} is missing or not a string"
    return ReplayRecord(
        line_number=number,
        value=line,
        key=key.encode() if isinstance(key, str) else None,
        timestamp_ms=timestamp_ms,
    )


def read_recording(path: Path, send_invalid: bool) -> Iterator[ReplayRecord]:
    """Records of a JSONL file; a line that cannot be keyed is an error unless `send_invalid`."""
    for number, line in iter_lines(path):
        record = parse_record(number, line)
        if isinstance(record, str):
            if not send_invalid:
                raise InputError(
                    f"{path}:{number}: {record} (use --send-invalid to send such lines unchanged)"
                )
            record = ReplayRecord(number, line, key=None, timestamp_ms=None)
        yield record


class Pacer:
    """Sleeps so records go out at `speed` × event time, or at a fixed `rate` per second."""

    def __init__(
        self,
        speed: float = 0.0,
        rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if speed < 0 or (rate is not None and rate <= 0):
            raise InputError("--speed must be >= 0 and --rate > 0")
        self.speed = speed
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self._start_wall: float | None = None
        self._start_event: int | None = None
        self._count = 0

    def wait(self, timestamp_ms: int | None) -> None:
        now = self.clock()
        if self._start_wall is None:
            self._start_wall = now
        self._count += 1
        if self.rate is not None:
            due = self._start_wall + (self._count - 1) / self.rate
        elif self.speed > 0 and timestamp_ms is not None:
            if self._start_event is None:
                self._start_event = timestamp_ms
            due = self._start_wall + (timestamp_ms - self._start_event) / 1000.0 / self.speed
        else:
            return
        if due > now:
            self.sleep(due - now)


def producer_config(client_config: Mapping[str, str], linger_ms: int = 20) -> dict[str, Any]:
    """Batching producer settings (the embedded broker's fetch cost grows with batch count)."""
    return {
        **client_config,
        "linger.ms": linger_ms,
        "batch.num.messages": 10000,
        "acks": "all",
        "enable.idempotence": True,
        "message.max.bytes": 1_000_000,
    }


def replay(
    records: Iterator[ReplayRecord],
    topic: str,
    client_config: Mapping[str, str],
    pacer: Pacer,
    limit: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    linger_ms: int = 20,
    should_stop: Callable[[], bool] = lambda: False,
) -> ReplayStats:
    """Produce the records to `topic`, flushing at the end (also on Ctrl-C)."""
    from confluent_kafka import KafkaError, Producer

    stats = ReplayStats()

    def delivered(error: KafkaError | None, _message: Any) -> None:
        if error is None:
            stats.delivered += 1
        else:
            stats.failed += 1
            if len(stats.first_errors) < 5:
                stats.first_errors.append(error.str())

    producer = Producer(producer_config(client_config, linger_ms))
    began = time.monotonic()
    try:
        for record in records:
            if (limit is not None and stats.sent >= limit) or should_stop():
                break
            pacer.wait(record.timestamp_ms)
            kwargs: dict[str, Any] = {"value": record.value, "on_delivery": delivered}
            if record.key is not None:
                kwargs["key"] = record.key
            if record.timestamp_ms is not None:
                kwargs["timestamp"] = record.timestamp_ms
            else:
                stats.invalid_sent += 1
            while True:
                try:
                    producer.produce(topic, **kwargs)
                    break
                except BufferError:
                    producer.poll(0.05)  # local queue full: let deliveries drain
            stats.sent += 1
            producer.poll(0)
            if on_progress is not None:
                on_progress(stats.sent)
    finally:
        remaining = producer.flush(30.0)
        stats.failed += remaining
        stats.seconds = time.monotonic() - began
    return stats
