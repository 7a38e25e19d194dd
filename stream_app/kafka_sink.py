"""The worker's outputs through librdkafka (confluent-kafka), delivery checked per micro-batch.

aiokafka builds and sends record batches in Python on the event loop: with two records per
transaction (the score and the user's changelog) its sender and socket writes were a third of
the worker's time. librdkafka does batching, compression and I/O in its own threads; a
`produce()` call costs a few microseconds of Python. `deliver()` waits (polling librdkafka's
delivery reports from the event loop, which meanwhile serves heartbeats and the next fetch)
until everything sent since the last call is acknowledged,
then runs the `on_delivered` callbacks on the loop: once per callback and partition, with the
partition's last record (a partition's records are delivered in order; the table's changelog
only needs its newest offset, and a per-record Python callback with its metadata object was 5 %
of the worker's time). A failed record raises `DeliveryError`: the caller
stops the process before acknowledging any input (at least once, `faust_tuning.
exit_on_delivery_failure`). The producer is idempotent, so retries neither reorder nor repeat
records within a partition (the merchant log relies on its order).

A record refused for its size would be refused again after every restart: such a record may
carry a `fallback` (a smaller form), which is sent instead; if that is refused too, the record
is dropped with an error log and counted in `dropped` — a crash loop on one record would stop its
partition for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from schemas.errors import DeliveryError

Fallback = Callable[[], tuple[bytes | None, bytes]]
OnDelivered = Callable[[Any], None]
_SIZE_ERRORS = frozenset(
    {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_MSG_SIZE}
)
_FLUSH_TIMEOUT_S = 60.0
_POLL_FIRST_S, _POLL_MAX_S = 0.00025, 0.001
"""How often `deliver()` looks for delivery reports: from 0.25 ms, doubling up to 1 ms (a
flush to the embedded broker takes ~2 ms)."""
_ANY_PARTITION = -1
"""librdkafka's RD_KAFKA_PARTITION_UA: the configured partitioner chooses."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """What `on_delivered` gets: the last delivered record of a partition since `deliver()`."""

    topic: str
    partition: int
    offset: int


class _Reports:
    """Delivery reports of the records without a fallback, cheap per record: failures are
    kept; for records with an `on_delivered`, the newest offset per (callback, topic,
    partition)."""

    def __init__(self) -> None:
        self.failed: list[tuple[str, KafkaError]] = []
        self.newest: dict[tuple[OnDelivered, str, int], int] = {}
        self._trackers: dict[OnDelivered, Callable[[KafkaError | None, Any], None]] = {}

    def plain(self, error: KafkaError | None, message: Any) -> None:
        """Runs in librdkafka's callback (inside `flush`, on the delivering thread)."""
        if error is not None:
            self.failed.append((message.topic(), error))

    def tracking(self, on_delivered: OnDelivered) -> Callable[[KafkaError | None, Any], None]:
        tracker = self._trackers.get(on_delivered)
        if tracker is None:
            newest, failed = self.newest, self.failed

            def tracker(error: KafkaError | None, message: Any) -> None:
                if error is None:
                    newest[on_delivered, message.topic(), message.partition()] = message.offset()
                else:
                    failed.append((message.topic(), error))

            self._trackers[on_delivered] = tracker
        return tracker


@dataclass
class _Pending:
    """A record with a smaller form, in case the broker refuses its size (dead letters)."""

    topic: str
    partition: int
    on_delivered: OnDelivered | None
    fallback: Fallback | None
    error: KafkaError | None = None
    delivered: Delivered | None = None
    done: bool = False
    dropped: bool = False

    def callback(self, error: KafkaError | None, message: Any) -> None:
        """Runs in librdkafka's callback (inside `flush`, on the delivering thread)."""
        self.done = True
        self.error = error
        if error is None:
            self.delivered = Delivered(message.topic(), message.partition(), message.offset())


class ConfluentSink:
    """`send` queues a record with librdkafka, `deliver` waits for everything sent."""

    def __init__(
        self,
        client_config: Mapping[str, Any],
        linger_ms: float = 5.0,
        log: logging.Logger | None = None,
        producer: Any = None,
    ) -> None:
        """`producer`: a stand-in for confluent-kafka's `Producer` (tests)."""
        self._producer = producer or Producer(
            {
                **client_config,
                "linger.ms": linger_ms,
                "enable.idempotence": True,
                "acks": "all",
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 2_000_000,
                "queue.buffering.max.kbytes": 2_097_152,
                "message.max.bytes": 1_048_576,
            }
        )
        self._reports = _Reports()
        self._queued = 0
        """Records without a fallback sent since the last `deliver()`."""
        self._pending: list[_Pending] = []
        self._log = log or logging.getLogger("fraudstream.worker.sink")
        self.dropped = 0
        self.shrunk = 0
        self.flush_timeout_s = _FLUSH_TIMEOUT_S
        """How long `deliver()` waits for the broker before it gives up (`DeliveryError`)."""
        self.sent: Counter[str] = Counter()
        """Bytes sent per topic (keys and values), for the worker's progress report."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        on_delivered: OnDelivered | None = None,
        fallback: Fallback | None = None,
    ) -> None:
        """Queue one record. `on_delivered(Delivered)` runs in `deliver()`, once per partition
        with its last record; `fallback` gives the record's smaller form."""
        self.sent[topic] += len(value) + (len(key) if key else 0)
        where = _ANY_PARTITION if partition is None else partition
        if fallback is None:
            reports = self._reports
            report = reports.plain if on_delivered is None else reports.tracking(on_delivered)
            try:
                self._produce(topic, key, value, where, report)
            except KafkaException as exc:
                raise DeliveryError(f"cannot publish to {topic}: {exc}") from exc
            self._queued += 1
            return
        item = _Pending(topic, where, on_delivered, fallback)
        try:
            self._produce(topic, key, value, where, item.callback)
        except KafkaException as exc:
            if exc.args[0].code() not in _SIZE_ERRORS:
                raise DeliveryError(f"cannot publish to {topic}: {exc}") from exc
            if not self._send_smaller(item, exc.args[0]):
                return
        self._pending.append(item)

    def send_all(self, topic: str, records: Iterable[tuple[bytes | None, bytes, int]]) -> None:
        """Queue (key, value, partition) records without a fallback or a callback: `send` for a
        micro-batch's scores, without a coroutine per record."""
        produce, report, sent = self._producer.produce, self._reports.plain, 0
        for key, value, partition in records:
            sent += len(value) + (len(key) if key else 0)
            try:
                produce(topic, value, key, partition=partition, on_delivery=report)
            except BufferError:
                self._produce(topic, key, value, partition, report)
            except KafkaException as exc:
                raise DeliveryError(f"cannot publish to {topic}: {exc}") from exc
            self._queued += 1
        self.sent[topic] += sent

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int,
        report: Callable[[KafkaError | None, Any], None],
    ) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, partition=partition, on_delivery=report)
                return
            except BufferError:  # the local queue is full: let librdkafka send some
                self._producer.poll(0.05)

    def _send_smaller(self, item: _Pending, error: Any) -> bool:
        """Replace a record refused for its size by its fallback; False if that fails too."""
        assert item.fallback is not None  # noqa: S101 - only called with a fallback
        self.shrunk += 1
        key, value = item.fallback()
        item.fallback, item.done, item.error = None, False, None
        try:
            self._produce(item.topic, key, value, item.partition, item.callback)
        except KafkaException as again:
            self._drop(item, error, again)
            return False
        return True

    def _drop(self, item: _Pending, first: Any, second: Any) -> None:
        item.dropped = True
        self.dropped += 1
        self._log.error(
            "dropping a record for %s: refused for its size (%s), and its smaller form too (%s)",
            item.topic,
            first,
            second,
        )

    async def deliver(self) -> int:
        """Wait for everything sent since the last call; the number of records delivered."""
        pending, self._pending = self._pending, []
        queued, self._queued = self._queued, 0
        if not pending and not queued:
            return 0
        reports = self._reports
        await self._flush()
        retried = [item for item in pending if self._retry(item)]
        if retried:
            await self._flush()
            for item in retried:
                if item.error is not None and item.error.code() in _SIZE_ERRORS:
                    self._drop(item, item.error, item.error)
        # Emptied in place: the trackers' callbacks hold these very objects.
        failed, newest = list(reports.failed), dict(reports.newest)
        reports.failed.clear()
        reports.newest.clear()
        if failed:
            topic, error = failed[0]
            raise DeliveryError(
                f"could not publish to {topic}: {error}"
                + (f" (and {len(failed) - 1} more records)" if len(failed) > 1 else "")
            )
        delivered = queued
        for item in pending:
            if item.dropped:
                continue  # refused for its size twice (logged and counted)
            if item.error is not None:
                raise DeliveryError(f"could not publish to {item.topic}: {item.error}")
            if not item.done:
                raise DeliveryError(f"no delivery report for a record to {item.topic}")
            delivered += 1
            if item.on_delivered is not None:
                item.on_delivered(item.delivered)
        for (on_delivered, topic, partition), offset in newest.items():
            on_delivered(Delivered(topic, partition, offset))
        return delivered

    def _retry(self, item: _Pending) -> bool:
        """A record the broker refused for its size goes again in its smaller form."""
        error = item.error
        if error is None or item.fallback is None or error.code() not in _SIZE_ERRORS:
            return False
        return self._send_smaller(item, error)

    async def _flush(self) -> None:
        """Wait until librdkafka's queue is empty, serving delivery reports on this thread.

        Polled from the event loop, not `flush()` in a worker thread: there, every delivery
        report needs the GIL back from a main thread busy scoring the next fetch (the worker
        overlaps the two, `stream_app.deliveries`), and each hand-over can wait for the
        interpreter's switch interval (5 ms)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.flush_timeout_s
        pause = _POLL_FIRST_S
        while (left := self._producer.flush(0)) > 0:
            if loop.time() > deadline:
                raise DeliveryError(
                    f"{left} records not delivered within {self.flush_timeout_s:g} s"
                )
            await asyncio.sleep(pause)
            pause = min(2 * pause, _POLL_MAX_S)

    def close(self) -> None:
        self._producer.flush(10)
