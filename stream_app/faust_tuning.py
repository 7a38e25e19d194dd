"""Faust latency fixes, kept in one place. Written against faust-streaming 0.15.x.

* faust's aiokafka driver hard-codes `fetch_max_wait_ms=1500` for worker consumers. Tansu
  holds a fetch until that wait expires instead of answering when data exists, so an untuned
  worker adds 0.5–1.5 s per hop (DESIGN.md). We register a transport whose consumer takes the
  wait from our settings (`FRAUD_FETCH_WAIT_MS`).
* Tansu (v0.6, the embedded broker) answers ListOffsets(latest) with the end of a partition's
  *first* batch, not its last; fetch responses carry the true high watermark. faust restores
  tables by reading changelogs up to ListOffsets' answer, so on Tansu it would stop early and
  restore stale state. Our consumer confirms every end offset with one fetch (harmless on
  Kafka, where both agree).
* faust seeks the stream partitions to their committed offsets *before* it resumes the flow
  after recovery; records fetched in between are handed to a callback that is abandoned
  because the flow is still suspended (`Consumer._drain_messages`: `wait_first(callback,
  suspend_flow.wait())`), yet their read offset advances — the batch is silently skipped. With
  a short fetch wait that race is common (a restarted worker lost one batch per partition).
  The agent checks that offsets are contiguous (`stream_app.offset_guard`) and seeks back to
  the first missing one; records delivered twice are recognised (or re-scored identically,
  see `stream_app.user_record`).
* the committed offsets per partition, read from faust's consumer (a private attribute), let
  the idempotence journal forget what Kafka will never redeliver.

If an upgrade of faust breaks one of these, `tests/integration` fails on the worker tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiokafka
from aiokafka import TopicPartition
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

SCHEME = "fraudkafka"
_fetch_wait_ms = 5
_bootstrap = "127.0.0.1:9092"
_security: dict[str, Any] = {}


def configure(
    bootstrap: str, fetch_wait_ms: int, security: Mapping[str, Any] | None = None
) -> None:
    global _fetch_wait_ms, _bootstrap, _security
    _fetch_wait_ms = max(0, int(fetch_wait_ms))
    _bootstrap = bootstrap
    _security = dict(security or {})


async def fetched_end_offsets(
    bootstrap: str, listed: Mapping[TopicPartition, int], timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """End offsets confirmed by a fetch from the listed end (see the module docstring)."""
    if not listed:
        return {}
    probe = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10, **_security
    )
    await probe.start()
    try:
        partitions = list(listed)
        probe.assign(partitions)
        for tp in partitions:
            probe.seek(tp, listed[tp])
        ends: dict[TopicPartition, int] = {}
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(ends) < len(partitions):
            await probe.getmany(*[tp for tp in partitions if tp not in ends], timeout_ms=100)
            for tp in partitions:
                highwater = probe.highwater(tp)
                if highwater is not None:
                    ends[tp] = max(listed[tp], highwater)
            if asyncio.get_running_loop().time() > deadline:
                missing = [tp for tp in partitions if tp not in ends]
                raise RuntimeError(f"no high watermark from a fetch for {missing}")
        return ends
    finally:
        await probe.stop()


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = _fetch_wait_ms  # read by the fetcher when it starts
        return consumer

    async def _highwaters(self, partitions: list[Any]) -> Mapping[Any, int]:
        listed = await super()._highwaters(partitions)
        return await fetched_end_offsets(_bootstrap, listed)


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


def register() -> None:
    """Make `fraudkafka://host:port` broker URLs use the tuned transport."""
    TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"


def committed_offsets(consumer: Any) -> dict[tuple[str, int], int]:
    """(topic, partition) -> committed offset, as far as faust knows."""
    committed = getattr(consumer, "_committed_offset", {}) or {}
    return {
        (tp.topic, tp.partition): offset for tp, offset in committed.items() if offset is not None
    }
