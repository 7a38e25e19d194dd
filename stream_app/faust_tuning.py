"""Faust latency fixes, kept in one place. Written against faust-streaming 0.15.x.

* faust's aiokafka driver hard-codes `fetch_max_wait_ms=1500` for worker consumers. Tansu
  holds a fetch until that wait expires instead of answering when data exists, so an untuned
  worker adds 0.5–1.5 s per hop (docs/CONTRACT.md). We register a transport whose consumer takes the
  wait from our settings (`FRAUD_FETCH_WAIT_MS`).
* Tansu (v0.6, the embedded broker) answers ListOffsets(latest) with the first offset of a
  partition's last batch plus one, not the end of that batch (measured: 50-record batches,
  every answer short by up to 49); fetch responses carry the true high watermark. faust restores
  tables by reading changelogs up to ListOffsets' answer, so on Tansu it would stop early and
  restore stale state. Our consumer confirms every end offset with one fetch (harmless on
  Kafka, where both agree).
* the records of the worker's own topics skip faust's per-message path (conductor, queue,
  stream, a `wait_first(callback, suspend_flow.wait())` per message — whose abandoned deliveries
  advanced the read offset and silently skipped a batch after a rebalance): our consumer hands
  each fetch of them to the scoring pipeline whole (`_Consumer`, `BatchHandler`), which
  acknowledges offsets into faust's bookkeeping; faust keeps the group, recovery and commits.
* faust runs its Kafka consumer in a thread with its own event loop: every `getmany`, seek and
  commit hops threads through a method queue, and the two loops then fight over the GIL. Our
  consumer "thread" runs on the app's own loop instead (`_LoopConsumerThread`): same service,
  same aiokafka consumer, calls are plain awaits.
* with a log level of WARN or above, faust's worker sets the *root* logger to DEBUG for its
  terminal spinner (`faust/worker.py`, `_setup_spinner_handler`), so every `logger.debug` on
  the hot path (aiokafka, faust's topics) builds a record. `QuietWorker` keeps the level asked
  for.
* the committed offsets per partition, read from faust's consumer (a private attribute), tell
  the pipeline what was scored before a restart and let the idempotence journal forget what
  Kafka will never redeliver.

If an upgrade of faust breaks one of these, `tests/integration` fails on the worker tests.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import aiokafka
from aiokafka import TopicPartition
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.worker import Worker
from mode import Service

SCHEME = "fraudkafka"
EXIT_DELIVERY_FAILED = 75  # EX_TEMPFAIL: restart and read the uncommitted input again
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


class _LoopConsumerThread(_ConsumerThread):
    """faust's consumer service, run on the app's loop instead of a thread of its own.

    `ServiceThread` starts a thread whose loop runs the service and routes every call through a
    method queue (`call_thread`); here the service is started and stopped like any other and
    calls are awaited directly, the rebalance callbacks included. Once stopping, rebalance
    callbacks are skipped: aiokafka leaves the group on close, and the revoke would wait on
    streams and queues the app has already stopped (a worker then never exits).
    """

    wait_for_shutdown = False  # nobody else will run the shutdown: `stop` does it all

    def __init__(self, consumer: Any, *, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(consumer, loop=loop, thread_loop=loop, **kwargs)

    async def start(self) -> None:
        self._thread_started.set()
        await Service.start(self)

    async def maybe_start(self) -> bool:
        if self._thread_started.is_set():
            return False
        await self.start()
        return True

    async def stop(self) -> None:
        if self._started.is_set():
            await Service.stop(self)

    async def on_stop(self) -> None:
        await self.on_thread_stop()  # stops the aiokafka consumer

    def _stopped_set(self) -> None:
        self._stopped.set()

    def set_shutdown(self) -> None:
        self._shutdown.set()

    async def _stop_children(self) -> None:
        await self._default_stop_children()

    async def _stop_futures(self) -> None:
        await self._default_stop_futures()

    async def _stop_exit_stacks(self) -> None:
        await self._default_stop_exit_stacks()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if self.should_stop:
            return  # leaving the group on shutdown: the app has stopped its streams already
        await self.consumer.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any, generation_id: int = 0) -> None:
        if self.should_stop:
            return
        await self.consumer.on_partitions_assigned(assigned, generation_id)

    async def call_thread(self, fun: Any, *args: Any, **kwargs: Any) -> Any:
        result = fun(*args, **kwargs)  # faust passes coroutine functions and plain ones
        return await result if inspect.isawaitable(result) else result

    async def cast_thread(self, fun: Any, *args: Any, **kwargs: Any) -> None:
        await self.call_thread(fun, *args, **kwargs)


class BatchHandler(Protocol):
    """What the worker's consumer hands whole fetches of its own topics to (`stream_app.app`)."""

    topics: frozenset[str]

    async def on_records(self, records: Mapping[Any, Sequence[Any]], generation: int) -> None:
        """aiokafka records of `topics`, per TopicPartition, fetched in `generation`."""

    async def quiesce(self) -> None:
        """A rebalance is starting: finish the batch in progress, start no new one."""

    async def after_seek(self) -> None:
        """faust has sought every assigned partition to its committed offset."""


class _Consumer(faust_aiokafka.Consumer):
    """faust's consumer (group membership, rebalances, table recovery, commits) with the records
    of the worker's own topics handed over a whole fetch at a time.

    faust's own path delivers one message at a time through its conductor, a queue and the
    stream (`take_events`), with sensors and a `wait_first(callback, suspend_flow.wait())` per
    message (~100-250 us); and an abandoned delivery advanced the read offset anyway, skipping
    a batch after a rebalance. Here a fetch of `handler.topics` goes to `handler.on_records` as
    aiokafka returned it; everything else (changelogs during recovery) still goes through
    faust's callback. The handler acknowledges offsets into faust's own bookkeeping
    (`acknowledge`), so faust's periodic commit, which flushes the producer first, commits them.
    """

    @property
    def handler(self) -> BatchHandler | None:
        return _HANDLERS.get(id(self.app))

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _LoopConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - needs a broker
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                handler = self.handler
                records, _ = await self._wait_next_records(1.0)
                await asyncio.sleep(0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    continue  # fetched as a rebalance began: faust seeks back before resuming
                generation = self.app.consumer_generation_id
                ours: dict[Any, Sequence[Any]] = {}
                for tp, batch in records.items():
                    if handler is not None and tp.topic in handler.topics:
                        ours[tp] = batch
                        continue
                    for record in batch:
                        await callback(self._to_message(tp, record))
                if ours and handler is not None:
                    await handler.on_records(ours, generation)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise

    async def wait_empty(self) -> None:
        if self.handler is not None:
            await self.handler.quiesce()
        await super().wait_empty()

    async def perform_seek(self) -> None:
        await super().perform_seek()
        if self.handler is not None:
            await self.handler.after_seek()


_HANDLERS: dict[int, BatchHandler] = {}


def attach(app: Any, handler: BatchHandler) -> None:
    """Hand the app's input records to `handler` (one handler per app, for its lifetime)."""
    _HANDLERS[id(app)] = handler


def acknowledge(consumer: Any, tp: TP, offsets: Sequence[int]) -> None:
    """Mark offsets processed in faust's bookkeeping, as `Consumer.ack` does per message: the
    next commit covers them once they are contiguous from the committed offset."""
    acked = consumer._acked[tp]
    index = consumer._acked_index[tp]
    for offset in offsets:
        if offset not in index:
            index.add(offset)
            acked.append(offset)
    consumer._n_acked += len(offsets)


def committed_offset(consumer: Any, tp: TP) -> int | None:
    """The committed offset of one partition, as far as faust knows (a private attribute)."""
    offset: int | None = (getattr(consumer, "_committed_offset", {}) or {}).get(tp)
    return offset


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class QuietWorker(Worker):
    """faust's worker without the spinner's root-logger DEBUG level (see the module docstring)."""

    def _setup_spinner_handler(self, logger: Any, level: int) -> None:
        self.spinner = None


def register() -> None:
    """Make `fraudkafka://host:port` broker URLs use the tuned transport."""
    TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"


def raw_producer(app: Any) -> aiokafka.AIOKafkaProducer:
    """faust's aiokafka producer (started with the app): sends without faust's wrappers."""
    producer: aiokafka.AIOKafkaProducer = app.producer._ensure_producer()
    return producer


def exit_on_delivery_failure(error: BaseException, log: Any) -> None:
    """Stop the worker now, without acknowledging or committing anything (see `kafka_sink`)."""
    log.critical("stopping at once, input left uncommitted: %s", error)
    logging.shutdown()
    os._exit(EXIT_DELIVERY_FAILED)


class _Sends(Protocol):
    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        on_delivered: Callable[[Any], None] | None = None,
    ) -> None: ...


def changelog_writer(table: Any, publisher: _Sends) -> Callable[..., Any]:
    """`send(partition, key, value)` for a table's changelog through `publisher`.

    What faust's `send_changelog` does on delivery (at least once, no transactions): record
    the changelog offset in the store, so a persistent store (RocksDB) knows on restart from
    which offset to recover. The sink reports each partition's newest delivered record once
    per delivery (`kafka_sink.ConfluentSink`), so RocksDB writes that offset once per fetch,
    not once per record.
    """
    topic = table.changelog_topic.get_topic_name()

    def delivered(metadata: Any) -> None:
        table.data.set_persisted_offset(TP(metadata.topic, metadata.partition), metadata.offset)

    async def send(partition: int, key: bytes, value: bytes) -> None:
        await publisher.send(topic, key, value, partition, delivered)

    return send


def committed_offsets(consumer: Any) -> dict[tuple[str, int], int]:
    """(topic, partition) -> committed offset, as far as faust knows."""
    committed = getattr(consumer, "_committed_offset", {}) or {}
    return {
        (tp.topic, tp.partition): offset for tp, offset in committed.items() if offset is not None
    }
