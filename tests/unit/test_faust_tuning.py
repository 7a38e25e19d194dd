"""The publisher's delivery check (no broker: a fake producer with controllable futures)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError

from schemas.errors import DeliveryError
from stream_app.faust_tuning import Publisher


class FakeProducer:
    """aiokafka's producer as faust holds it: `send` returns a delivery future that resolves when
    the accumulator is flushed. `fail` names topics whose records fail; records longer than
    `client_limit` are refused at once, longer than `broker_limit` refused by the "broker"."""

    def __init__(
        self,
        fail: frozenset[str] = frozenset(),
        client_limit: int = 10**9,
        broker_limit: int = 10**9,
    ) -> None:
        self.fail = fail
        self.client_limit = client_limit
        self.broker_limit = broker_limit
        self.sent: list[tuple[str, bytes | None, bytes, int | None]] = []
        self.flushed = 0
        self._message_accumulator = SimpleNamespace(flush_for_commit=self.flush)
        self._futures: list[tuple[str, bytes, asyncio.Future[Any]]] = []

    def _ensure_producer(self) -> FakeProducer:  # faust's Producer -> the aiokafka producer
        return self

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> Any:
        if len(value) > self.client_limit:
            raise MessageSizeTooLargeError(f"{len(value)} bytes")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, key, value, partition))
        self._futures.append((topic, value, future))
        return future

    async def flush(self) -> None:
        """Like aiokafka: lingering batches go out now and their futures resolve."""
        self.flushed += 1
        for offset, (topic, value, future) in enumerate(self._futures):
            if topic in self.fail:
                future.set_exception(RuntimeError("broker said no"))
            elif len(value) > self.broker_limit:
                future.set_exception(MessageSizeTooLargeError("broker: record too large"))
            else:
                future.set_result(SimpleNamespace(topic=topic, partition=0, offset=offset))
        self._futures.clear()


def publisher(
    fail: frozenset[str] = frozenset(), client_limit: int = 10**9, broker_limit: int = 10**9
) -> tuple[Publisher, FakeProducer]:
    producer = FakeProducer(fail, client_limit, broker_limit)
    return Publisher(SimpleNamespace(producer=producer)), producer


def test_deliver_flushes_waits_and_reports_each_record() -> None:
    async def run() -> tuple[int, list[int], FakeProducer]:
        pub, producer = publisher()
        offsets: list[int] = []
        await pub.send("scores", b"k", b"v1")
        await pub.send("changelog", b"k", b"v2", 3, lambda md: offsets.append(md.offset))
        delivered = await pub.deliver()
        return delivered, offsets, producer

    delivered, offsets, producer = asyncio.run(run())
    assert delivered == 2
    assert offsets == [1]
    assert producer.flushed == 1
    assert producer.sent[1] == ("changelog", b"k", b"v2", 3)


def test_a_failed_record_raises_and_skips_the_callbacks() -> None:
    async def run() -> list[int]:
        pub, _ = publisher(fail=frozenset({"scores"}))
        called: list[int] = []
        await pub.send("changelog", b"k", b"v", 0, lambda md: called.append(md.offset))
        await pub.send("scores", b"k", b"v")
        with pytest.raises(DeliveryError, match="could not publish to scores"):
            await pub.deliver()
        assert await pub.deliver() == 0  # nothing left pending after a failure
        return called

    assert asyncio.run(run()) == []


def test_nothing_sent_delivers_nothing() -> None:
    pub, producer = publisher()
    assert asyncio.run(pub.deliver()) == 0
    assert producer.flushed == 0


def test_a_delivery_failure_exits_at_once_with_its_own_code() -> None:
    """No `finally` runs (faust's would acknowledge the micro-batch), the exit code says why."""
    import subprocess
    import sys

    from stream_app.faust_tuning import EXIT_DELIVERY_FAILED

    code = (
        "import logging\n"
        "from stream_app.faust_tuning import exit_on_delivery_failure\n"
        "try:\n"
        "    exit_on_delivery_failure(RuntimeError('broker gone'), logging.getLogger('w'))\n"
        "finally:\n"
        "    print('finally ran')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == EXIT_DELIVERY_FAILED
    assert "finally ran" not in done.stdout
    assert "broker gone" in done.stderr


def _small() -> tuple[bytes | None, bytes]:
    return b"k", b"small"


@pytest.mark.parametrize("where", ["client", "broker"])
def test_a_record_refused_for_its_size_is_replaced_by_its_smaller_form(where: str) -> None:
    """The refusal would repeat after every restart: the fallback is sent instead."""

    async def run() -> tuple[int, FakeProducer, Publisher]:
        limits = {"client_limit": 100} if where == "client" else {"broker_limit": 100}
        pub, producer = publisher(**limits)  # type: ignore[arg-type]
        await pub.send("dlq", b"k", b"x" * 1000, fallback=_small)
        await pub.send("scores", b"k", b"fine")
        return await pub.deliver(), producer, pub

    delivered, producer, pub = asyncio.run(run())
    assert delivered == 2
    assert ("dlq", b"k", b"small", None) in producer.sent
    assert pub.shrunk == 1 and pub.dropped == 0


def test_a_record_whose_smaller_form_is_refused_too_is_dropped_not_raised() -> None:
    async def run() -> tuple[int, Publisher]:
        pub, _ = publisher(broker_limit=3)
        await pub.send("dlq", b"k", b"x" * 1000, fallback=_small)
        return await pub.deliver(), pub

    delivered, pub = asyncio.run(run())
    assert delivered == 0
    assert pub.dropped == 1


def test_a_size_refusal_without_a_fallback_is_a_delivery_error() -> None:
    async def run() -> None:
        pub, _ = publisher(client_limit=10)
        await pub.send("scores", b"k", b"x" * 100)

    with pytest.raises(DeliveryError, match="cannot publish to scores"):
        asyncio.run(run())
