"""The publisher's delivery check (no broker: a fake producer with controllable futures)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from schemas.errors import DeliveryError
from stream_app.faust_tuning import Publisher


class FakeProducer:
    """faust's Producer.send returns aiokafka's delivery future; `fail` names topics that fail."""

    def __init__(self, fail: frozenset[str] = frozenset()) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes | None, bytes, int | None]] = []
        self.flushed = 0
        self._producer = SimpleNamespace(
            _message_accumulator=SimpleNamespace(flush_for_commit=self.flush)
        )
        self._futures: list[tuple[str, asyncio.Future[Any]]] = []

    async def send(self, topic: str, key: Any, value: Any, partition: Any, *_: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, key, value, partition))
        self._futures.append((topic, future))
        return future

    async def flush(self) -> None:
        """Like aiokafka: lingering batches go out now and their futures resolve."""
        self.flushed += 1
        for offset, (topic, future) in enumerate(self._futures):
            if topic in self.fail:
                future.set_exception(RuntimeError("broker said no"))
            else:
                future.set_result(SimpleNamespace(topic=topic, partition=0, offset=offset))
        self._futures.clear()


def publisher(fail: frozenset[str] = frozenset()) -> tuple[Publisher, FakeProducer]:
    producer = FakeProducer(fail)
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
