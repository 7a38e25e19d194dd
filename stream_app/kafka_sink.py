"""The worker's outputs through librdkafka (confluent-kafka), delivery checked per micro-batch.

aiokafka builds and sends record batches in Python on the event loop: with two records per
transaction (the score and the user's changelog) its sender and socket writes were a third of
the worker's time. librdkafka does batching, compression and I/O in its own threads; a
`produce()` call costs a few microseconds of Python. `deliver()` waits (in a thread, so the
event loop keeps serving heartbeats) until everything sent since the last call is acknowledged,
then runs the delivery callbacks on the loop. A failed record raises `DeliveryError`: the caller
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from schemas.errors import DeliveryError

Fallback = Callable[[], tuple[bytes | None, bytes]]
_SIZE_ERRORS = frozenset(
    {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_MSG_SIZE}
)
_FLUSH_TIMEOUT_S = 60.0


@dataclass
class _Pending:
    topic: str
    partition: int | None
    on_delivered: Callable[[Any], None] | None
    fallback: Fallback | None
    error: KafkaError | None = None
    metadata: Any = None
    done: bool = False
    dropped: bool = False

    def callback(self, error: KafkaError | None, message: Any) -> None:
        """Runs in librdkafka's callback (inside `flush`, on the delivering thread)."""
        self.done = True
        self.error = error
        if error is None:
            self.metadata = SimpleNamespace(
                topic=message.topic(), partition=message.partition(), offset=message.offset()
            )


class ConfluentSink:
    """`send` queues a record with librdkafka, `deliver` waits for everything sent."""

    def __init__(
        self,
        client_config: Mapping[str, Any],
        linger_ms: float = 5.0,
        log: logging.Logger | None = None,
    ) -> None:
        self._producer = Producer(
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
        self._pending: list[_Pending] = []
        self._log = log or logging.getLogger("fraudstream.worker.sink")
        self.dropped = 0
        self.shrunk = 0
        self.sent: Counter[str] = Counter()
        """Bytes sent per topic (keys and values), for the worker's progress report."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        on_delivered: Callable[[Any], None] | None = None,
        fallback: Fallback | None = None,
    ) -> None:
        """Queue one record; `on_delivered(metadata)` (topic, partition, offset) runs in
        `deliver()`."""
        self.sent[topic] += len(value) + (len(key) if key else 0)
        item = _Pending(topic, partition, on_delivered, fallback)
        try:
            self._produce(item, key, value)
        except KafkaException as exc:
            if fallback is None or exc.args[0].code() not in _SIZE_ERRORS:
                raise DeliveryError(f"cannot publish to {topic}: {exc}") from exc
            if not self._send_smaller(item, exc.args[0]):
                return
        self._pending.append(item)

    def _produce(self, item: _Pending, key: bytes | None, value: bytes) -> None:
        kwargs: dict[str, Any] = {"key": key, "on_delivery": item.callback}
        if item.partition is not None:
            kwargs["partition"] = item.partition
        while True:
            try:
                self._producer.produce(item.topic, value, **kwargs)
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
            self._produce(item, key, value)
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
        if not pending:
            return 0
        await self._flush()
        retried = [item for item in pending if self._retry(item)]
        if retried:
            await self._flush()
            for item in retried:
                if item.error is not None and item.error.code() in _SIZE_ERRORS:
                    self._drop(item, item.error, item.error)
        delivered = 0
        for item in pending:
            if item.dropped:
                continue  # refused for its size twice (logged and counted)
            if item.error is not None:
                raise DeliveryError(f"could not publish to {item.topic}: {item.error}")
            if not item.done:
                raise DeliveryError(f"no delivery report for a record to {item.topic}")
            delivered += 1
            if item.on_delivered is not None:
                item.on_delivered(item.metadata)
        return delivered

    def _retry(self, item: _Pending) -> bool:
        """A record the broker refused for its size goes again in its smaller form."""
        error = item.error
        if error is None or item.fallback is None or error.code() not in _SIZE_ERRORS:
            return False
        return self._send_smaller(item, error)

    async def _flush(self) -> None:
        left = await asyncio.get_running_loop().run_in_executor(
            None, self._producer.flush, _FLUSH_TIMEOUT_S
        )
        if left:
            raise DeliveryError(f"{left} records not delivered within {_FLUSH_TIMEOUT_S:.0f} s")

    def close(self) -> None:
        self._producer.flush(10)
