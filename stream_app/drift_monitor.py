"""The cluster's one drift monitor: a leader-only task around `models.cluster_drift`.

    fraud-scores, labels (every partition, no consumer group)
        └─► ClusterDriftCore ─► hour records ─► ClusterDetectors ─► drift-events (key: detector)
                                     └────────────────────────────► drift-inputs (the log)

Only the leader runs it (`is_leader`, Faust's `app.is_leader()`, is asked on every iteration):
on losing the lead it stops its consumer and forgets everything; on becoming leader it reads the
inputs log into fresh detectors (the previous leader's state), reads both topics again from a
checkpoint `rejoin_hours` of score hours back — silently up to the log's last record, so that the
join knows those hours' scores again — and goes on from there. Per hour, its events are delivered
before its record is sent to the log: a monitor that dies between the two publishes that hour's
events once more, identical (at least once; consumers may de-duplicate by content), never loses
them. Two monitors that briefly both lead write identical records; replaying skips repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from models.cluster_drift import ClusterDetectors, ClusterDriftCore, Topic
from models.drift_config import DEFAULT_DRIFT_CONFIG, HOUR_MS, DriftConfig
from models.drift_records import HourRecord, LabelInput, ScoreHour, ScoreInput, encode_record
from models.drift_replay import Restored, restore
from schemas.events import DriftEvent, Label
from stream_app.drift_log import LOG_KEY, DriftLogError, ensure_topic, partitions_of, read_log

log = logging.getLogger("fraudstream.drift")

MAX_FETCH_BYTES = 4 * 1024 * 1024
_RETRY_S = 2.0


class EventSink(Protocol):
    """Where the monitor publishes: the worker's publisher, or `drift_log.ProducerSink`."""

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None: ...

    async def deliver(self) -> object:
        """Wait until everything sent so far is acknowledged; raise if anything failed (what it
        returns is ignored: the worker's `kafka_sink.ConfluentSink` returns a count)."""


FETCH_WAIT_MS = 250
"""The monitor's fetch wait on scores and labels. It works on hourly buckets, so a quarter of a
second costs nothing. At the workers' 5 ms wait every consumer sends up to 200 fetch requests a
second: in a drain profile of a leader worker, writing fetch requests was 4 % of its CPU."""


@dataclass(frozen=True)
class MonitorConfig:
    """Everything the monitor needs, resolved from settings by its caller."""

    bootstrap: str
    topic_scores: str
    topic_labels: str
    topic_drift: str
    topic_inputs: str
    fetch_wait_ms: int
    allowed_lateness_ms: int
    idle_partition_s: float
    rejoin_hours: int
    replication_factor: int
    kafka_security: Mapping[str, Any] = field(default_factory=dict, repr=False)
    scores_idle_s: float = 300.0
    leader_poll_s: float = 0.5
    max_records: int = 5000


class _Session:
    """One leadership term: the restored state, a consumer of both topics, idle tracking."""

    def __init__(
        self, config: MonitorConfig, restored: Restored, consumer: AIOKafkaConsumer, now: float
    ) -> None:
        self.config = config
        self.restored = restored
        self.core: ClusterDriftCore = restored.core
        self.detectors: ClusterDetectors = restored.detectors
        self.consumer = consumer
        self.topic_of: dict[str, Topic] = {
            config.topic_scores: "scores",
            config.topic_labels: "labels",
        }
        self.partitions: list[TopicPartition] = []
        self.last_progress: dict[TopicPartition, float] = {}
        self.opened = now
        self.mismatches = 0
        self.silent = 0

    @staticmethod
    async def open(config: MonitorConfig, drift: DriftConfig, now: float) -> _Session:
        security = dict(config.kafka_security)
        await ensure_topic(
            config.bootstrap, config.topic_inputs, config.replication_factor, security
        )
        records, unreadable = await read_log(config.bootstrap, config.topic_inputs, security)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=config.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=max(config.fetch_wait_ms, FETCH_WAIT_MS),
            max_partition_fetch_bytes=MAX_FETCH_BYTES,
            auto_offset_reset="earliest",
            **security,
        )
        await consumer.start()
        try:
            scores = await partitions_of(consumer, config.topic_scores)
            labels = await partitions_of(consumer, config.topic_labels)
            rejoin = config.rejoin_hours * HOUR_MS // drift.bucket_ms
            restored = restore(
                records, len(scores), len(labels), drift, config.allowed_lateness_ms, rejoin
            )
            session = _Session(config, restored, consumer, now)
            session.partitions = [*scores, *labels]
            consumer.assign(session.partitions)
            resume = restored.core.resume()
            for tp, where in (
                *zip(scores, resume.scores.partitions, strict=True),
                *zip(labels, resume.labels.partitions, strict=True),
            ):
                consumer.seek(tp, where.offset)
        except BaseException:
            await consumer.stop()
            raise
        log.info(
            "drift monitor leading: %d log records replayed (%d unreadable), reading %d score and "
            "%d label partitions again from %s",
            restored.replayed,
            unreadable,
            len(scores),
            len(labels),
            {f"{tp.topic}/{tp.partition}": tp_offset for tp, tp_offset in _offsets(session)},
        )
        return session

    async def step(self, now: float) -> list[HourRecord]:
        """One fetch into the core; the records of hours that closed and are new."""
        batches = await self.consumer.getmany(timeout_ms=100, max_records=self.config.max_records)
        for tp, messages in batches.items():
            topic = self.topic_of[tp.topic]
            for message in messages:
                self._feed(topic, tp.partition, message)
            if messages:
                self.last_progress[tp] = now
        await self._mark_idle(now)
        new: list[HourRecord] = []
        for record in self.core.poll():
            if self.restored.is_new(record):
                new.append(record)
            else:
                self._check(record)
        return new

    def _feed(self, topic: Topic, partition: int, message: ConsumerRecord[Any, Any]) -> None:
        value = message.value or b""
        if topic == "scores":
            try:
                score = ScoreInput.from_json(value, self.core.config)
            except ValueError:
                score = None
            self.core.add_score(partition, message.offset, score)
            return
        try:
            label = LabelInput.from_event(Label.model_validate_json(value))
        except ValueError:
            self.core.add_label(partition, message.offset, None)
            return
        if label is None:
            self.core.untimed_label(partition, message.offset)
        else:
            self.core.add_label(partition, message.offset, label)

    async def _mark_idle(self, now: float) -> None:
        """A partition read to its end with nothing new for a while holds nobody back: labels
        after `idle_partition_s`, scores after `scores_idle_s`. Scores come from the workers,
        whose partitions pause while they wait for merchant snapshots or a slower partition
        (replays, restarts): a score partition declared idle too early makes its next scores
        late, lost to the data-drift buckets."""
        for tp in self.partitions:
            highwater = self.consumer.highwater(tp)
            caught_up = highwater is not None and await self.consumer.position(tp) >= highwater
            if not caught_up:
                self.last_progress[tp] = now
                continue
            quiet = now - self.last_progress.get(tp, self.opened)
            topic = self.topic_of[tp.topic]
            limit = self.config.scores_idle_s if topic == "scores" else self.config.idle_partition_s
            if quiet >= limit:
                self.core.set_idle(topic, tp.partition)

    def _check(self, record: HourRecord) -> None:
        """A recomputed hour the log already has: its score sums must come out the same."""
        self.silent += 1
        logged = self.restored.logged_scores.get(record.hour)
        if not isinstance(record, ScoreHour) or logged is None:
            return
        if (record.model_version, record.stats) != (logged.model_version, logged.stats):
            self.mismatches += 1
            log.error("recomputed score hour %d differs from the logged one", record.hour)

    async def close(self) -> None:
        await self.consumer.stop()


def _offsets(session: _Session) -> list[tuple[TopicPartition, int]]:
    resume = session.core.resume()
    wheres = [*resume.scores.partitions, *resume.labels.partitions]
    return [(tp, where.offset) for tp, where in zip(session.partitions, wheres, strict=False)]


class DriftMonitorRunner:
    """Runs the cluster's drift monitor while `is_leader()` says so (see the module docstring).

    `run()` until `stop()`. Failures to publish (`sink.send` or `sink.deliver()` raising) end
    `run()` with that error, like any other lost output in the worker; broker trouble while
    becoming leader or reading is logged, and the monitor rebuilds itself from the log.
    """

    def __init__(
        self,
        config: MonitorConfig,
        sink: EventSink,
        is_leader: Callable[[], bool],
        drift: DriftConfig = DEFAULT_DRIFT_CONFIG,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[DriftEvent], None] = lambda event: None,
    ) -> None:
        self.config = config
        self.drift = drift
        self._on_event = on_event
        self._sink = sink
        self._is_leader = is_leader
        self._clock = clock
        self._session: _Session | None = None
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopped.set()
        self.counts: Counter[str] = Counter()

    @property
    def leading(self) -> bool:
        return self._session is not None

    async def run(self) -> None:
        self._stopped.clear()
        try:
            while not self._stopping.is_set():
                if not self._is_leader():
                    await self._resign()
                    await self._pause(self.config.leader_poll_s)
                    continue
                if self._session is None and not await self._take_lead():
                    continue
                assert self._session is not None  # noqa: S101 - set by _take_lead
                try:
                    records = await self._session.step(self._clock())
                except KafkaError as exc:  # the state is in the log: start over from there
                    log.warning("drift monitor lost its input (%r); rebuilding", exc)
                    await self._resign()
                    await self._pause(_RETRY_S)
                    continue
                await self._publish(records)
        finally:
            await self._resign()
            self._stopped.set()

    async def stop(self) -> None:
        """Ask `run()` to finish and wait until it has (consumer stopped, outputs delivered)."""
        self._stopping.set()
        await self._stopped.wait()

    async def _take_lead(self) -> bool:
        try:
            self._session = await _Session.open(self.config, self.drift, self._clock())
        except (KafkaError, OSError, TimeoutError, DriftLogError) as exc:
            log.warning("drift monitor cannot start yet (%r); retrying", exc)
            await self._pause(_RETRY_S)
            return False
        self.counts["activations"] += 1
        self.counts["inputs_replayed"] += self._session.restored.replayed
        return True

    async def _publish(self, records: list[HourRecord]) -> None:
        assert self._session is not None  # noqa: S101 - only called while leading
        config, sink = self.config, self._sink
        for record in records:
            events = self._session.detectors.apply(record)
            for event in events:
                log.warning(
                    "drift: %s on %s (model %s) at %s",
                    event.detector,
                    event.signal,
                    event.model_version,
                    event.detected_at.isoformat(),
                )
                await sink.send(
                    config.topic_drift, event.detector.encode(), event.model_dump_json().encode()
                )
                self._on_event(event)
            if events:
                await sink.deliver()  # the events are out before the log says the hour is done
                self.counts["events_published"] += len(events)
            await sink.send(config.topic_inputs, LOG_KEY, encode_record(record))
            self.counts["inputs_logged"] += 1
        if records:
            await sink.deliver()

    async def _resign(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        self.counts["silent_hours"] += session.silent
        self.counts["replay_mismatches"] += session.mismatches
        try:
            await self._sink.deliver()
        finally:
            await session.close()
        log.info("drift monitor stopped leading")

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    # -- observability -----------------------------------------------------------------------
    def metrics(self) -> dict[str, float]:
        """Flat numbers for metrics: runner counters (cumulative), and while leading the core's
        progress (`core.*`, counted since this term began) and the detectors' (`detector.*`)."""
        stats = {name: float(value) for name, value in self.counts.items()}
        session = self._session
        stats["leading"] = 1.0 if session is not None else 0.0
        if session is not None:
            stats["silent_hours"] = stats.get("silent_hours", 0.0) + session.silent
            stats["replay_mismatches"] = stats.get("replay_mismatches", 0.0) + session.mismatches
            stats |= {f"core.{k}": v for k, v in session.core.statistics().items()}
            stats |= {f"detector.{k}": v for k, v in session.detectors.statistics().items()}
        return stats

    def quality(self) -> dict[str, dict[str, float]]:
        """Online quality per model version (`models.feedback.OnlineQuality.report`)."""
        return {} if self._session is None else self._session.core.quality.report()

    def champion(self) -> str | None:
        """The version the data detectors follow (the scores' champion), while leading."""
        return None if self._session is None else self._session.detectors.versions()[0]
