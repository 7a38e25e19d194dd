"""Producing the benchmark's traffic with confluent-kafka, with a send time per message.

A new idempotent librdkafka producer sends nothing until it has a producer id, which it asks
for ~500 ms after creation (docs/CONTRACT.md); the first records of a cold producer therefore queue
behind a timer. Every producer here is warmed (`warm`: one record delivered) before anything
is timed, and the phases also discard a head of records. The send time of a message is the
monotonic clock read right before `produce()`: it includes the producer's linger and
everything after it, not the generator's own schedule keeping (reported apart as lateness).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fraudstream.bench.pacing import Pacer
from fraudstream.bench.traffic import LiveTemplate, Record


@dataclass
class SendLog:
    """What the live generator sent: ids and monotonic send times in order, lateness (s)."""

    ids: list[str] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    lateness_s: list[float] = field(default_factory=list)


class StampingProducer:
    """One confluent-kafka producer for a phase; delivery failures are collected and raised."""

    def __init__(self, config: Mapping[str, Any], clock: Callable[[], float] = time.monotonic):
        from confluent_kafka import Producer

        self._producer = Producer(dict(config))
        self.clock = clock
        self.delivered = 0
        self.failures: list[str] = []
        self.warm_up_s: float | None = None

    def _on_delivery(self, error: Any, _message: Any) -> None:
        if error is None:
            self.delivered += 1
        elif len(self.failures) < 5:
            self.failures.append(str(error))

    def send(self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int | None) -> float:
        """Produce one record; returns its send time (clock read right before `produce`)."""
        kwargs: dict[str, Any] = {"value": value, "on_delivery": self._on_delivery}
        if key is not None:
            kwargs["key"] = key
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        stamp = self.clock()
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                break
            except BufferError:  # the local queue is full: serve callbacks, then retry
                self._producer.poll(0.05)
        self._producer.poll(0)
        return stamp

    def warm(self, topic: str, record: Record, timeout_s: float = 30.0) -> float:
        """Send one record and wait for its delivery (producer id, metadata, connections)."""
        began = time.monotonic()
        wanted = self.delivered + 1
        self.send(topic, record.key, record.value, record.timestamp_ms)
        while self.delivered < wanted:
            if self.failures:
                raise RuntimeError(f"warm-up record not delivered: {self.failures}")
            if time.monotonic() - began > timeout_s:
                raise TimeoutError(f"warm-up record not delivered within {timeout_s:.0f} s")
            self._producer.poll(0.01)
        self.warm_up_s = time.monotonic() - began
        return self.warm_up_s

    def burst(self, topic: str, records: Iterable[Record]) -> int:
        """Send records as fast as the producer takes them; returns how many."""
        count = 0
        for record in records:
            self.send(topic, record.key, record.value, record.timestamp_ms)
            count += 1
        return count

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait for every record; raise if any was not delivered."""
        left = self._producer.flush(timeout_s)
        if left or self.failures:
            raise RuntimeError(f"{left} records undelivered; errors: {self.failures}")


def send_live(
    producer: StampingProducer,
    topic: str,
    templates: Sequence[LiveTemplate],
    pacer: Pacer,
    log: SendLog,
    wall: Callable[[], float] = time.time,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Send `templates` on the pacer's schedule, each stamped with event time = now."""
    pacer.start()
    for index, template in enumerate(templates):
        if should_stop():
            return
        lateness = pacer.wait(index)
        value, timestamp_ms = template.render(wall())
        log.sent_at.append(producer.send(topic, template.key, value, timestamp_ms))
        log.ids.append(template.transaction_id)
        log.lateness_s.append(lateness)
