"""The librdkafka sink's delivery check (no broker: a fake producer that reports on flush)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from schemas.errors import DeliveryError
from stream_app.kafka_sink import ConfluentSink, Delivered

Report = Any


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._where = (topic, partition, offset)

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]


class FakeProducer:
    """confluent-kafka's `Producer` as the sink uses it: `produce` queues, `flush` reports.
    `fail` names topics whose records fail; records longer than `client_limit` are refused at
    once, longer than `broker_limit` refused by the "broker"."""

    def __init__(
        self,
        fail: frozenset[str] = frozenset(),
        client_limit: int = 10**9,
        broker_limit: int = 10**9,
    ) -> None:
        self.fail = fail
        self.client_limit = client_limit
        self.broker_limit = broker_limit
        self.sent: list[tuple[str, bytes | None, bytes, int]] = []
        self.flushed = 0
        self._queue: list[tuple[str, int, bytes, Report]] = []
        self._offsets: dict[tuple[str, int], int] = {}

    def produce(
        self, topic: str, value: bytes, key: bytes | None, partition: int, on_delivery: Report
    ) -> None:
        if len(value) > self.client_limit:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.sent.append((topic, key, value, partition))
        self._queue.append((topic, max(partition, 0), value, on_delivery))

    def flush(self, timeout: float) -> int:
        self.flushed += 1
        for topic, partition, value, report in self._queue:
            if topic in self.fail:
                report(KafkaError(KafkaError._MSG_TIMED_OUT), FakeMessage(topic, partition, -1))
            elif len(value) > self.broker_limit:
                report(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), FakeMessage(topic, partition, -1))
            else:
                offset = self._offsets.get((topic, partition), 0)
                self._offsets[topic, partition] = offset + 1
                report(None, FakeMessage(topic, partition, offset))
        self._queue.clear()
        return 0

    def poll(self, timeout: float) -> int:
        return 0


def sink(**limits: Any) -> tuple[ConfluentSink, FakeProducer]:
    producer = FakeProducer(**limits)
    return ConfluentSink({}, producer=producer), producer


def test_deliver_flushes_once_and_reports_each_partitions_newest_record() -> None:
    async def run() -> tuple[int, list[Delivered], FakeProducer]:
        out, producer = sink()
        seen: list[Delivered] = []
        await out.send("scores", b"k", b"v1")
        for partition in (3, 3, 1, 3):
            await out.send("changelog", b"k", b"v", partition, seen.append)
        delivered = await out.deliver()
        return delivered, seen, producer

    delivered, seen, producer = asyncio.run(run())
    assert delivered == 5
    assert sorted(seen, key=lambda d: d.partition) == [
        Delivered("changelog", 1, 0),
        Delivered("changelog", 3, 2),
    ]
    assert producer.flushed == 1
    assert producer.sent[1] == ("changelog", b"k", b"v", 3)
    assert producer.sent[0][3] == -1  # no partition given: librdkafka's partitioner picks


def test_every_delivery_reports_the_offsets_sent_since_the_last_one() -> None:
    """One callback for the life of the sink, as the table's changelog writer passes it."""

    async def run() -> list[list[Delivered]]:
        out, _ = sink()
        seen: list[Delivered] = []
        rounds: list[list[Delivered]] = []
        for _ in range(3):
            await out.send("changelog", b"k", b"v", 0, seen.append)
            await out.send("changelog", b"k", b"v", 0, seen.append)
            await out.deliver()
            rounds.append(list(seen))
            seen.clear()
        return rounds

    on_delivered = asyncio.run(run())
    assert on_delivered == [[Delivered("changelog", 0, offset)] for offset in (1, 3, 5)]


def test_a_failed_record_raises_and_skips_the_callbacks() -> None:
    async def run() -> list[Delivered]:
        out, _ = sink(fail=frozenset({"scores"}))
        called: list[Delivered] = []
        await out.send("changelog", b"k", b"v", 0, called.append)
        await out.send("scores", b"k", b"v")
        await out.send("scores", b"k", b"v")
        with pytest.raises(DeliveryError, match=r"could not publish to scores.*1 more"):
            await out.deliver()
        assert await out.deliver() == 0  # nothing left pending after a failure
        return called

    assert asyncio.run(run()) == []


def test_nothing_sent_delivers_nothing() -> None:
    out, producer = sink()
    assert asyncio.run(out.deliver()) == 0
    assert producer.flushed == 0


def test_records_left_undelivered_after_the_flush_timeout_are_an_error() -> None:
    out, producer = sink()
    producer.flush = lambda timeout: 3  # type: ignore[method-assign]
    out.flush_timeout_s = 0.05

    async def run() -> None:
        await out.send("scores", b"k", b"v")
        await out.deliver()

    with pytest.raises(DeliveryError, match=r"3 records not delivered within 0\.05 s"):
        asyncio.run(run())


def _small() -> tuple[bytes | None, bytes]:
    return b"k", b"small"


@pytest.mark.parametrize("where", ["client", "broker"])
def test_a_record_refused_for_its_size_is_replaced_by_its_smaller_form(where: str) -> None:
    """The refusal would repeat after every restart: the fallback is sent instead."""

    async def run() -> tuple[int, FakeProducer, ConfluentSink]:
        limits = {"client_limit": 100} if where == "client" else {"broker_limit": 100}
        out, producer = sink(**limits)
        await out.send("dlq", b"k", b"x" * 1000, fallback=_small)
        await out.send("scores", b"k", b"fine")
        return await out.deliver(), producer, out

    delivered, producer, out = asyncio.run(run())
    assert delivered == 2
    assert ("dlq", b"k", b"small", -1) in producer.sent
    assert out.shrunk == 1 and out.dropped == 0


def test_a_record_whose_smaller_form_is_refused_too_is_dropped_not_raised() -> None:
    async def run() -> tuple[int, ConfluentSink]:
        out, _ = sink(broker_limit=3)
        await out.send("dlq", b"k", b"x" * 1000, fallback=_small)
        return await out.deliver(), out

    delivered, out = asyncio.run(run())
    assert delivered == 0
    assert out.dropped == 1


def test_a_size_refusal_without_a_fallback_is_a_delivery_error() -> None:
    async def run() -> None:
        out, _ = sink(client_limit=10)
        await out.send("scores", b"k", b"x" * 100)

    with pytest.raises(DeliveryError, match="cannot publish to scores"):
        asyncio.run(run())


def test_a_broker_size_refusal_without_a_fallback_is_a_delivery_error() -> None:
    async def run() -> None:
        out, _ = sink(broker_limit=10)
        await out.send("scores", b"k", b"x" * 100)
        await out.deliver()

    with pytest.raises(DeliveryError, match="could not publish to scores"):
        asyncio.run(run())


def test_a_batch_of_records_is_queued_counted_and_checked_like_single_sends() -> None:
    async def run(fail: frozenset[str]) -> tuple[int, ConfluentSink, FakeProducer]:
        out, producer = sink(fail=fail)
        out.send_all("scores", [(b"a", b"v1", 0), (None, b"v22", 2)])
        return await out.deliver(), out, producer

    delivered, out, producer = asyncio.run(run(frozenset()))
    assert delivered == 2
    assert producer.sent == [("scores", b"a", b"v1", 0), ("scores", None, b"v22", 2)]
    assert out.sent["scores"] == 1 + 2 + 3
    with pytest.raises(DeliveryError, match="could not publish to scores"):
        asyncio.run(run(frozenset({"scores"})))
