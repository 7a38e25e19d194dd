"""Between faust's consumer and the scoring pipeline: partition ownership, the merchant log
reader, idle partitions, acknowledgements. The pipeline itself (`stream_app.pipeline`) knows
nothing of Kafka; this adapter knows nothing of features or models.

One lock serialises everything that touches the pipeline: fetched batches, finals read from
the merchant log, idle partitions and take-overs. A rebalance first waits for the batch in
progress (`quiesce`), and records fetched in an older consumer generation are dropped (faust
seeks every partition back before the flow resumes). A partition newly assigned stays paused
until this worker has read the merchant log to its end and rebuilt the partition's open hours
from the last final hours its previous owner published (`ScoringPipeline.assign`), then reads
from the offset that rebuild needs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.types import TP

from models.merchant_partials import FinalHours, Source
from schemas.errors import DeliveryError
from stream_app import faust_tuning, merchant_log
from stream_app.deliveries import Deliveries
from stream_app.metrics import WorkerMetrics, observe_all
from stream_app.pipeline import Outcome, Record, ScoringPipeline

log = logging.getLogger("fraudstream.worker")

MAX_FETCH_BYTES = 4 * 1024 * 1024
"""Per-partition fetch size of the worker's readers: above any record the brokers accept by
default (1 MB), so a record at the input topic's limit is read, and dead-lettered, not stuck."""


MERCHANT_LOG_FETCH_WAIT_MS = 100
"""The merchant log reader's fetch wait. Only a replay waits on another worker's final hours
(in live traffic, the hours a transaction's snapshot needs closed most of an hour earlier), and
a replay's queues absorb a tenth of a second. At the workers' 5 ms, the reader alone sent ~200
empty fetches a second: an idle worker took 0.227 cores and the embedded broker 0.328, against
0.175 and 0.270 with 100 ms (/proc CPU time over 10 s, nothing sent)."""


class TableStore:
    """The users' table as the pipeline's `UserStore`: faust's table data, written through the
    publisher to the changelog once per user and micro-batch."""

    def __init__(self, table: Any, publisher: Any) -> None:
        self._data = table.data
        self._write = faust_tuning.changelog_writer(table, publisher)

    def get(self, user_id: str, partition: int) -> bytes | None:
        key = user_id.encode()
        db_for = getattr(self._data, "_db_for_partition", None)
        if db_for is None:
            value: bytes | None = self._data.get(key)
            return value
        # Without a current event faust's RocksDB store searches only the databases it has
        # opened, which after a restart with nothing to recover is none of them.
        stored: bytes | None = db_for(partition).get(key)
        return stored

    async def put(self, partition: int, user_id: str, value: bytes) -> None:
        key = user_id.encode()
        db_for = getattr(self._data, "_db_for_partition", None)
        if db_for is None:
            self._data[key] = value
        else:
            # faust's RocksDB store finds a value's partition from the current event, which a
            # whole-fetch pipeline does not have (`assert event is not None`): write to that
            # partition's database as its `_set` would.
            self._data._key_index[key] = partition
            db_for(partition).put(key, value)
        await self._write(partition, key, value)


class MerchantLogReader:
    """Reads the merchant log from its start, for ever; remembers each source's last final."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        fetch_wait_ms: int,
        security: Mapping[str, Any],
        on_final: Callable[[FinalHours], Any],
        metrics: WorkerMetrics,
    ) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=max(fetch_wait_ms, MERCHANT_LOG_FETCH_WAIT_MS),
            max_partition_fetch_bytes=MAX_FETCH_BYTES,
            **security,
        )
        self._tp = TopicPartition(topic, 0)
        self._on_final = on_final
        self._metrics = metrics
        self._assembler = merchant_log.Assembler()
        self.last_final: dict[Source, FinalHours] = {}
        self.position = 0
        self._fetches = 0
        self._assigned = False
        self._progress = asyncio.Condition()

    async def run(self) -> None:
        consumer = self._consumer
        await consumer.start()
        try:
            consumer.assign([self._tp])
            await consumer.seek_to_beginning(self._tp)
            self._assigned = True
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=2000)
                for message in batches.get(self._tp, []):
                    self._metrics.messages_read.labels("merchant_log").inc()
                    final = self._assembler.add(message.value)
                    if final is not None:
                        self.last_final[final.source] = final
                        await self._on_final(final)
                    self.position = message.offset + 1
                async with self._progress:
                    self._fetches += 1
                    self._progress.notify_all()
        finally:
            await consumer.stop()

    async def caught_up(self, timeout_s: float = 600.0) -> None:
        """Wait until everything on the log as of now has been read: two more fetches have
        answered (each carries the partition's true end) and the position is at that end."""

        def done() -> bool:
            if not self._assigned:
                return False
            highwater = self._consumer.highwater(self._tp)
            return (
                self._fetches >= asked + 2 and highwater is not None and self.position >= highwater
            )

        async with self._progress:
            asked = self._fetches
            await asyncio.wait_for(self._progress.wait_for(done), timeout_s)


class EndProbe:
    """The true end of partitions, from a fetch of their own (a partition is only idle when
    nothing is left to read: the consumer's own high watermark can be older than the data —
    a partition not fetched lately looks caught up — and on the embedded broker ListOffsets
    answers with the end of a partition's first batch)."""

    def __init__(self, bootstrap: str, security: Mapping[str, Any]) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
            max_partition_fetch_bytes=1024,  # a batch at most: only the high watermark matters
            **security,
        )
        self._started = False

    async def ends(self, positions: Mapping[TP, int], timeout_s: float = 2.0) -> dict[TP, int]:
        """Partition -> end offset, for the partitions that answered within the timeout."""
        consumer = self._consumer
        if not self._started:
            await consumer.start()
            self._started = True
        tps = [TopicPartition(tp.topic, tp.partition) for tp in positions]
        consumer.assign(tps)
        for tp, position in zip(tps, positions.values(), strict=True):
            consumer.seek(tp, position)
        ends: dict[TP, int] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(ends) < len(tps) and loop.time() < deadline:
            await consumer.getmany(*tps, timeout_ms=100)
            for tp, asked in zip(tps, positions, strict=True):
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    ends[asked] = highwater
        return ends

    async def stop(self) -> None:
        if self._started:
            await self._consumer.stop()


class WorkerShell:
    """faust's consumer → `ScoringPipeline` (faust_tuning.BatchHandler)."""

    def __init__(
        self,
        app: Any,
        pipeline: ScoringPipeline,
        kinds: Mapping[str, str],
        metrics: WorkerMetrics,
        idle_partition_s: float,
    ) -> None:
        self.app = app
        self.pipeline = pipeline
        self._kinds = dict(kinds)  # topic -> "tx" | "labels"
        self._topics_of = {kind: topic for topic, kind in kinds.items()}
        self.topics = frozenset(kinds)
        self.metrics = metrics
        self.idle_partition_s = idle_partition_s
        self.lock = asyncio.Lock()
        self.rebalancing = False
        self.reader: MerchantLogReader | None = None
        self.probe: EndProbe | None = None
        self._caught_up_since: dict[Source, float] = {}
        self._idle: set[Source] = set()
        self._restoring: set[Source] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._exported: dict[tuple[str, ...], float] = {}
        self.started = asyncio.Event()
        self.deliveries: Deliveries[Outcome] | None = None
        """With the pipeline's `defer_delivery`: acknowledgements after delivery, overlapped
        with the next fetch (`stream_app.deliveries`)."""
        if pipeline.config.defer_delivery:
            self.deliveries = Deliveries(pipeline.deliver, self._delivered, self._failed)

    # -- faust_tuning.BatchHandler ----------------------------------------------------------
    async def on_records(self, records: Mapping[Any, Sequence[Any]], generation: int) -> None:
        try:
            await self._on_records(records, generation)
        except (DeliveryError, KafkaError, ProducerSendError) as exc:
            faust_tuning.exit_on_delivery_failure(exc, log)

    async def _on_records(self, records: Mapping[Any, Sequence[Any]], generation: int) -> None:
        await self.started.wait()  # the input partitions are declared to the merchant history
        async with self.lock:
            if self.rebalancing or generation != self.app.consumer_generation_id:
                return  # faust seeks these partitions back before the flow resumes
            now = time.monotonic()
            batch: dict[Source, list[Record]] = {}
            for tp, messages in records.items():
                source = Source(self._kinds[tp.topic], tp.partition)  # type: ignore[arg-type]
                batch[source] = [Record(m.offset, m.key, m.value, now) for m in messages]
                self.metrics.messages_read.labels(source.kind).inc(len(messages))
                self._caught_up_since.pop(source, None)
            self._grace_after_pause(batch)
            await self._apply(await self.pipeline.process(batch))

    async def quiesce(self) -> None:
        """faust's `wait_empty`, before it commits on a rebalance and on stopping."""
        self.rebalancing = True
        async with self.lock:  # the batch in progress has finished
            flushed = await self.pipeline.flush()  # acknowledgements held for users' records
            if flushed.acked:
                await self._apply(flushed)
        await self.drain()  # and what it and the ones before it sent is acknowledged

    async def drain(self) -> None:
        """Wait until every outcome so far is delivered and acknowledged."""
        if self.deliveries is not None:
            await self.deliveries.drain()

    async def after_seek(self) -> None:
        consumer = self.app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic in self.topics]
        owned = set(self.pipeline.owned())
        new: list[TP] = []
        for tp in assigned:
            source = self._source(tp)
            position = self.pipeline.position(source)
            if source in owned and position is not None:
                await consumer.seek(tp, position)  # kept through the rebalance: continue
            else:
                new.append(tp)
        if new:
            consumer.pause_partitions(new)
            self._restoring.update(self._source(tp) for tp in new)
            task = asyncio.create_task(self._take_over(new))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.rebalancing = False

    def revoked(self, tps: Sequence[Any]) -> None:
        sources = [self._source(tp) for tp in tps if tp.topic in self.topics]
        self.pipeline.revoke(sources)
        for source in sources:
            self._caught_up_since.pop(source, None)
            self._idle.discard(source)
            self._restoring.discard(source)

    # -- taking partitions over -------------------------------------------------------------
    async def _take_over(self, tps: list[TP]) -> None:
        consumer = self.app.consumer
        await self.started.wait()
        if self.reader is not None:
            await self.reader.caught_up()
        async with self.lock:
            assignment = consumer.assignment()
            ready = [tp for tp in tps if tp in assignment and self._source(tp) in self._restoring]
            for tp in ready:
                source = self._source(tp)
                last = self.reader.last_final.get(source) if self.reader is not None else None
                committed = faust_tuning.committed_offset(consumer, tp)
                start = self.pipeline.assign(source, last, committed)
                await consumer.seek(tp, start)
                self._restoring.discard(source)
                log.info(
                    "took over %s: committed %s, reading from %d%s",
                    source,
                    committed,
                    start,
                    f" (partials closed before hour {last.closed_before})" if last else "",
                )
            consumer.resume_partitions(ready)

    # -- between fetches --------------------------------------------------------------------
    async def on_final(self, final: FinalHours) -> None:
        async with self.lock:
            if self.rebalancing:
                self.pipeline.history.apply(final)  # scoring waits for the new assignment
                return
            await self._apply(await self.pipeline.on_final(final))

    async def tick_idle(self) -> None:
        """Partitions with nothing left to read for `idle_partition_s` stop holding the final
        boundary back (a quiet partition in live traffic, the end of a replay). Looking
        caught up is not enough: the true end is confirmed by a fetch (`EndProbe`). The probe
        takes a round trip, and records may come meanwhile — to the partition, or to another,
        which gives it a fresh grace period (`_grace_after_pause`): a candidate whose period
        changed while the probe was out is not idle (the stale verdict had closed quiet
        partitions up to the hours a resumed replay had just raced through)."""
        consumer = self.app.consumer
        now = time.monotonic()
        candidates: dict[TP, tuple[int, float]] = {}  # tp -> (position, caught up since)
        for source in self.pipeline.owned():
            tp = self.tp(source)
            highwater = _highwater(consumer, tp)
            position = self.pipeline.position(source)
            if highwater is None or position is None or position < highwater:
                self._caught_up_since.pop(source, None)
                self._idle.discard(source)
                continue
            since = self._caught_up_since.setdefault(source, now)
            if now - since >= self.idle_partition_s:
                candidates[tp] = (position, since)
        if not candidates or self.probe is None:  # (no probe: not started, nothing confirmed)
            self._idle = set()
            return
        ends = await self.probe.ends({tp: pos for tp, (pos, _) in candidates.items()})
        async with self.lock:
            idle: list[Source] = []
            for tp, (position, since) in candidates.items():
                source = self._source(tp)
                if (
                    self._caught_up_since.get(source) != since
                    or self.pipeline.position(source) != position
                ):
                    continue  # records, or a fresh period, came while the probe was out
                if ends.get(tp, position + 1) <= position:
                    idle.append(source)
                else:  # records wait that this worker has not fetched yet
                    self._caught_up_since.pop(source, None)
            self._idle = set(idle)
            if idle and not self.rebalancing:
                await self._apply(await self.pipeline.idle(idle))

    async def tick_flush(self) -> None:
        """Acknowledgements held for the users' records (`users_write_behind_s`) are released
        once due even when no more records come (the end of a replay, a quiet partition)."""
        if not self.pipeline.held():
            return
        async with self.lock:
            if self.rebalancing:
                return  # `quiesce` releases them
            flushed = await self.pipeline.flush(due_only=True)
            if flushed.acked:
                await self._apply(flushed)

    def _grace_after_pause(self, batch: Mapping[Source, list[Record]]) -> None:
        """Traffic resuming on a partition that was idle, or after every partition of its topic
        went idle: the others get a fresh grace period, or the first to speak would close
        their hours (a replay resumed after a pause) and their first records would count as
        late. "Every partition" alone missed a pause about as long as `idle_partition_s`: some
        partitions were idle by then and some not yet, and the idle ones were closed up to
        the first speaker's hours (the learning-loop test failed that way on a fresh clone)."""
        for kind in {source.kind for source in batch}:
            same = [s for s in self.pipeline.owned() if s.kind == kind]
            resumed = any(s in self._idle for s in batch if s.kind == kind)
            if same and (resumed or all(s in self._idle or s in batch for s in same)):
                now = time.monotonic()
                for source in same:
                    if source not in batch and source in self._caught_up_since:
                        self._caught_up_since[source] = now
                        self._idle.discard(source)

    async def _apply(self, outcome: Outcome) -> None:
        consumer = self.app.consumer
        for source, offset in outcome.seek.items():
            await consumer.seek(self.tp(source), offset)
        if outcome.pause:
            consumer.pause_partitions([self.tp(s) for s in outcome.pause])
        if outcome.resume:
            consumer.resume_partitions(
                [self.tp(s) for s in outcome.resume if s not in self._restoring]
            )
        self._move_counters()
        if self.deliveries is None:
            self._delivered(outcome)  # the pipeline delivered before returning it
        else:
            await self.deliveries.submit(outcome)

    def _delivered(self, outcome: Outcome) -> None:
        """The outcome's outputs are on the broker: acknowledge its offsets."""
        consumer = self.app.consumer
        for source, offsets in outcome.acked.items():
            faust_tuning.acknowledge(consumer, self.tp(source), offsets)
        for result in outcome.scored:
            self._observe(result)

    def _failed(self, error: BaseException) -> None:
        if isinstance(error, DeliveryError | KafkaError | ProducerSendError):
            faust_tuning.exit_on_delivery_failure(error, log)
        log.error("acknowledging delivered outputs failed: %r", error)  # raised by next submit

    def _observe(self, result: Any) -> None:
        metrics = self.metrics
        scores = result.scores
        observe_all(metrics.score, [score.score for score in scores])
        for decision, count in Counter(score.decision for score in scores).items():
            metrics.decisions.labels(decision).inc(count)
        arms = Counter((score.arm, score.decision) for score in scores if score.arm)
        for (arm, decision), count in arms.items():
            metrics.canary_decisions.labels(arm, decision).inc(count)
        published = time.monotonic()
        observe_all(metrics.latency, [max(0.0, published - r) for r in result.received_s])
        metrics.batch_size.observe(len(scores))
        metrics.scored.inc(len(result.scores))
        metrics.late.inc(result.late)

    def _source(self, tp: Any) -> Source:
        return Source(self._kinds[tp.topic], tp.partition)  # type: ignore[arg-type]

    def tp(self, source: Source) -> TP:
        return TP(self._topics_of[source.kind], source.partition)

    def idle_sources(self) -> set[Source]:
        return set(self._idle)

    # -- metrics ----------------------------------------------------------------------------
    def export(self) -> None:
        """Gauges now, and counters moved by what the pipeline counted since the last call."""
        pipeline, metrics = self.pipeline, self.metrics
        history = pipeline.history
        consumer = self.app.consumer
        for source in pipeline.owned():
            highwater = _highwater(consumer, self.tp(source)) if source.kind == "tx" else None
            position = pipeline.position(source)
            if highwater is not None and position is not None:
                metrics.lag.labels(str(source.partition)).set(max(0, highwater - position))
        for kind, entries in (
            ("users", len(pipeline.users)),
            ("merchant_entries", history.entries()),
            ("merchant_pending_hours", history.pending_hours()),
            ("queued", pipeline.queued()),
        ):
            metrics.state.labels(kind).set(entries)
        idle: Counter[str] = Counter(source.kind for source in self._idle)
        for kind in self._topics_of:
            metrics.idle_partitions.labels(kind).set(idle[kind])
        newest, final = history.newest_closed(), history.final
        metrics.merchant_final_lag.set(0 if newest is None or final is None else newest - final)
        self._move_counters()

    def _move_counters(self) -> None:
        """Counters moved by what the pipeline counted since the last call: on every applied
        outcome, before the scored counter moves, so a scrape that sees N scores also sees what
        was consumed and redelivered for them (tests and the benchmark wait on that counter)."""
        pipeline = self.pipeline
        stats = pipeline.stats
        moved: dict[tuple[str, ...], float] = {
            ("consumed",): stats.consumed,
            ("unattributable",): stats.unattributable,
            ("waits",): stats.waits,
            ("replayed",): stats.replayed,
            ("users_written",): stats.users_written,
            **{("dead_letters", r): n for r, n in stats.dead_letters.items()},
            **{("stage", k): v for k, v in pipeline.stages.seconds.items()},
            **{("merchant_late", k): n for k, n in pipeline.merchant_late().items()},
        }
        for key, now in moved.items():
            delta = now - self._exported.get(key, 0)
            self._exported[key] = now
            if delta > 0:
                self._counter(key).inc(delta)

    def _counter(self, key: tuple[str, ...]) -> Any:
        metrics = self.metrics
        name = key[0]
        if name == "dead_letters":
            return metrics.dead_letters.labels(key[1])
        if name == "stage":
            return metrics.stage_seconds.labels(key[1])
        if name == "merchant_late":
            return metrics.merchant_late.labels(key[1])
        return {
            "consumed": metrics.consumed,
            "unattributable": metrics.labels_unattributable,
            "waits": metrics.snapshot_waits,
            "replayed": metrics.replayed,
            "users_written": metrics.users_written,
        }[name]


def _highwater(consumer: Any, tp: TP) -> int | None:
    try:
        value: int | None = consumer.highwater(tp)
    except Exception as exc:  # not fetched yet, or revoked meanwhile
        log.debug("no high watermark for %s yet: %r", tp, exc)
        return None
    return value
