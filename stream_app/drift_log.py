"""The drift monitor's Kafka edges: its inputs log (create, read to the end) and a plain sink.

The inputs log is one topic with one partition in use (every record carries the same key, so a
topic created with more partitions still keeps them in order). It is read whole when a monitor
becomes leader: a few hundred bytes per closed hour, ~17,000 records a year. Its end is the high
watermark a fetch reports, not ListOffsets, which the embedded broker answers with the end of
the partition's first batch (docs/CONTRACT.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from models.drift_records import HourRecord, decode_record
from schemas.errors import DeliveryError, FraudstreamError

log = logging.getLogger("fraudstream.drift")

LOG_KEY = b"drift-inputs"
_TOPIC_EXISTS = 36


class DriftLogError(FraudstreamError):
    """The inputs log cannot be created or read (yet): the monitor waits and tries again."""


async def ensure_topic(
    bootstrap: str, topic: str, replication_factor: int, security: Mapping[str, Any]
) -> None:
    """Create the inputs log (one partition) unless it exists."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            return
        response = await admin.create_topics([NewTopic(topic, 1, replication_factor)])
        for name, code, *_ in response.topic_errors:
            if code not in (0, _TOPIC_EXISTS):
                raise DriftLogError(f"cannot create the drift inputs log {name}: error {code}")
        log.info("created the drift inputs log %s", topic)
    finally:
        await admin.close()


async def read_log(
    bootstrap: str, topic: str, security: Mapping[str, Any], timeout_s: float = 120.0
) -> tuple[list[HourRecord], int]:
    """Every record of the inputs log, in order, and how many could not be read (skipped)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        auto_offset_reset="earliest",
        **security,
    )
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, topic, timeout_s)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[HourRecord] = []
        unreadable = 0
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not await _caught_up(consumer, partitions):
            if asyncio.get_running_loop().time() > deadline:
                raise DriftLogError(f"the drift inputs log {topic} was not read in {timeout_s} s")
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp in sorted(batches, key=lambda tp: tp.partition):
                for message in batches[tp]:
                    try:
                        records.append(decode_record(message.value or b""))
                    except ValueError as exc:
                        unreadable += 1
                        log.error(
                            "unreadable drift inputs record at offset %d: %s", message.offset, exc
                        )
        return records, unreadable
    finally:
        await consumer.stop()


async def partitions_of(
    consumer: AIOKafkaConsumer, topic: str, timeout_s: float = 30.0
) -> list[TopicPartition]:
    """The partitions of `topic`, waiting (bounded) for it to appear."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        await consumer.topics()  # refreshes the metadata
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topic {topic} has no partitions after {timeout_s} s")
        await asyncio.sleep(0.2)


async def _caught_up(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


class ProducerSink:
    """An `EventSink` on a plain aiokafka producer (a monitor run outside a Faust worker, tests)."""

    def __init__(self, bootstrap: str, security: Mapping[str, Any] | None = None) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, acks="all", **dict(security or {})
        )
        self._pending: list[asyncio.Future[Any]] = []

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        try:
            await self.deliver()
        finally:
            await self._producer.stop()

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._pending.append(await self._producer.send(topic, value, key=key))

    async def deliver(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            try:
                await future
            except Exception as exc:  # any failed record: the caller must not go on
                raise DeliveryError(f"drift monitor output not delivered: {exc!r}") from exc
