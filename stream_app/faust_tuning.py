"""Faust latency fixes, kept in one place. Written against faust-streaming 0.15.x.

* faust's aiokafka driver hard-codes `fetch_max_wait_ms=1500` for worker consumers. Tansu
  holds a fetch until that wait expires instead of answering when data exists, so an untuned
  worker adds 0.5–1.5 s per hop (DESIGN.md). We register a transport whose consumer takes the
  wait from our settings (`FRAUD_FETCH_WAIT_MS`).
* the committed offsets per partition, read from faust's consumer (a private attribute), let
  the idempotence journal forget what Kafka will never redeliver.

If an upgrade of faust breaks one of these, `tests/integration` fails on the worker tests.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

SCHEME = "fraudkafka"
_fetch_wait_ms = 5


def set_fetch_wait_ms(value: int) -> None:
    global _fetch_wait_ms
    _fetch_wait_ms = max(0, int(value))


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = _fetch_wait_ms  # read by the fetcher when it starts
        return consumer


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
