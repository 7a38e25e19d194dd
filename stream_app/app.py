"""The Faust scoring worker: thin wiring of topics, a table and two loops around the pure core.

* `score_transactions` (a Faust agent on `transactions`, partitions shared by the workers of the
  consumer group): micro-batches → dead letters / features / one model call → fraud scores.
  Per-user state lives in a changelog-backed table, written once per key per batch.
* `merchant_reader` (a task): reads every partition of `transactions` (and `labels`) without a
  group and feeds the replicated `MerchantView`; scorers wait on it for final snapshots. Labels
  also meet the scores this worker gave (`FeedbackJoin`): online quality per model and the
  concept-drift detectors.
* `follow_model_updates` (a task): obeys ModelUpdates on `model-updates` (hot swap, shadow).
* Drift detectors (`DriftMonitor`) watch every scored batch; detections go to `drift-events`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.types import TP

from fraudstream.metrics import WorkerMetrics, serve
from models.drift import DriftMonitor
from models.feedback import FeedbackJoin, Joined, OnlineQuality, Scored
from models.merchant_window import MerchantValues
from models.registry import ModelRegistry
from models.scoring import Scorer
from schemas.errors import DeliveryError
from schemas.events import DriftEvent, FraudScore, Label, ModelUpdate, epoch_ms
from stream_app import faust_tuning
from stream_app.batch import Decoded, Incoming, ScoredBatchResult, decode, decode_batch, score_batch
from stream_app.live_models import LiveModels
from stream_app.merchant_view import MerchantView
from stream_app.offset_guard import OffsetGuard
from stream_app.user_record import UserRecord

log = logging.getLogger("fraudstream.worker")


@dataclass(frozen=True)
class WorkerConfig:
    """Everything the worker needs, resolved from settings by the CLI."""

    app_id: str
    bootstrap: str
    topic_transactions: str
    topic_scores: str
    topic_labels: str
    topic_dlq: str
    topic_drift: str
    topic_model_updates: str
    partitions: int
    registry_dir: str
    model_name: str
    fetch_wait_ms: int = 5
    batch_max: int = 500
    user_cache_size: int = 20_000
    batch_window_s: float = 0.02
    allowed_lateness_ms: int = 10 * 60_000
    idle_partition_s: float = 2.0
    max_message_bytes: int = 64 * 1024
    max_future_ms: int = 86_400_000
    use_labels: bool = True
    commit_interval_s: float = 1.0
    producer_linger_s: float = 0.005
    store: str = "memory://"
    web_port: int | None = None
    stall_s: float = 5.0
    metrics_port: int | None = None
    data_dir: str | None = None
    """Faust's data directory (local table files); None: Faust's `<app id>-data` in the cwd."""
    kafka_security: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """aiokafka keyword arguments (security protocol, SASL, SSL context); never printed."""
    broker_credentials: Any = field(default=None, repr=False)
    """Faust's form of the same (SASLCredentials / SSLCredentials)."""


@dataclass
class WorkerStats:
    consumed: int = 0
    scored: int = 0
    dead_letters: int = 0
    late: int = 0
    replayed: int = 0
    waits: int = 0
    repeats: int = 0
    unstuck: int = 0
    drift_events: int = 0
    started: float = field(default_factory=time.monotonic)


def create_app(config: WorkerConfig, scorer: Scorer | None = None) -> faust.App:
    """Build the worker app. `scorer` defaults to the registry's champion (checksum-verified)."""
    faust_tuning.register()
    faust_tuning.configure(config.bootstrap, config.fetch_wait_ms, config.kafka_security)
    models = LiveModels(ModelRegistry(Path(config.registry_dir), config.model_name), scorer)
    app = faust.App(
        config.app_id,
        broker=f"{faust_tuning.SCHEME}://{config.bootstrap}",
        broker_credentials=config.broker_credentials,
        store=config.store,
        datadir=config.data_dir,
        topic_partitions=config.partitions,
        key_serializer="raw",
        value_serializer="raw",
        broker_commit_interval=config.commit_interval_s,
        producer_linger=config.producer_linger_s,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_request_timeout=30.0,
        consumer_auto_offset_reset="earliest",
        web_enabled=config.web_port is not None,
        web_port=config.web_port or 6066,
        topic_allow_declare=True,
    )
    transactions = app.topic(config.topic_transactions, value_serializer="raw")
    outputs = [
        app.topic(name, value_serializer="raw")
        for name in (config.topic_scores, config.topic_dlq, config.topic_drift)
    ]
    publisher = faust_tuning.Publisher(app)  # the scoring agent's
    timer_publisher = faust_tuning.Publisher(app)  # for detections published between batches
    # Keys and values are raw bytes (user id, compact JSON of the UserRecord).
    users = app.Table(
        "user-windows",
        default=None,
        partitions=config.partitions,
        key_type=bytes,  # bytes types make faust use the raw codec for the changelog
        value_type=bytes,
    )
    write_changelog = faust_tuning.changelog_writer(users, publisher)
    view = MerchantView(allowed_lateness_ms=config.allowed_lateness_ms)
    view_changed = asyncio.Condition()
    stats = WorkerStats()
    metrics = WorkerMetrics()
    ready = asyncio.Event()

    swaps_seen = {"applied": 0, "rejected": 0}

    def show_models() -> None:
        shadow = models.shadow.version if models.shadow is not None else ""
        metrics.model.info({"version": models.champion.version, "shadow_version": shadow})
        for outcome, now in (
            ("applied", models.counts.applied),
            ("rejected", models.counts.rejected),
        ):
            metrics.model_swaps.labels(outcome).inc(now - swaps_seen[outcome])
            swaps_seen[outcome] = now

    show_models()
    if config.metrics_port is not None:
        server = serve(metrics.registry, config.metrics_port, ready.is_set)
        log.info("metrics on port %d", server.server_address[1])
    guard = OffsetGuard()
    # user -> (partition, live record); least recently seen first. The table holds every user's
    # state as JSON; decoded records of active users are kept here (~4-8 KB each).
    records: OrderedDict[str, tuple[int, UserRecord]] = OrderedDict()
    feedback = FeedbackJoin()
    quality = OnlineQuality()
    drift = DriftMonitor(models.champion.version)
    detections: list[DriftEvent] = []

    def learn(joined: Joined | None) -> None:
        """A label met its score: online quality, and concept drift for the current champion."""
        if joined is None:
            return
        metrics.labels_joined.inc()
        quality.add_joined(joined)
        scored = joined.scored
        if scored.model_version == drift.model_version:
            detections.extend(
                drift.observe_label(
                    joined.labeled_at_ms, scored.score, scored.flagged, joined.is_fraud
                )
            )

    def watch(result: ScoredBatchResult) -> None:
        for score in result.scores:
            learn(feedback.add_score(score.transaction_id, _scored(score)))
        if drift.model_version != models.champion.version:
            drift.reset(models.champion.version)
        detections.extend(
            drift.observe_scores(
                result.event_time_ms,
                [s.score for s in result.scores],
                np.asarray(result.rows, dtype=np.float64),
            )
        )

    async def publish_detections(publisher: faust_tuning.Publisher) -> None:
        while detections:
            event = detections.pop(0)
            stats.drift_events += 1
            metrics.drift_events.labels(event.detector, event.signal).inc()
            log.warning(
                "drift: %s on %s (model %s) at %s",
                event.detector,
                event.signal,
                event.model_version,
                event.detected_at.isoformat(),
            )
            await publisher.send(
                config.topic_drift, event.detector.encode(), event.model_dump_json().encode()
            )

    def record_of(partition_of: Mapping[str, int]) -> Callable[[str], UserRecord]:
        def get(user_id: str) -> UserRecord:
            cached = records.get(user_id)
            if cached is not None:
                records.move_to_end(user_id)
                return cached[1]
            stored = users.data.get(user_id.encode())
            record = UserRecord() if stored is None else UserRecord.from_json(orjson.loads(stored))
            records[user_id] = (partition_of[user_id], record)
            return record

        return get

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(sender: Any, *args: Any, signal: Any = None, **kw: Any) -> None:
        """Users of partitions now owned by another worker must be re-read from the table."""
        revoked = args[0] if args else kw.get("revoked", set())
        gone = {tp.partition for tp in revoked if tp.topic == config.topic_transactions}
        guard.forget(gone)
        for user in [u for u, (p, _) in records.items() if p in gone]:
            del records[user]

    async def wait_final(boundary_ms: int) -> None:
        if view.snapshot_for(boundary_ms) is not None:
            return
        stats.waits += 1
        async with view_changed:
            await view_changed.wait_for(lambda: view.snapshot_for(boundary_ms) is not None)

    def merchant_of(boundary_ms: int, merchant_id: str) -> MerchantValues:
        found = view.lookup(boundary_ms, merchant_id)
        if found is None:  # wait_final ran first; only a bug can get here
            raise RuntimeError(f"merchant snapshot {boundary_ms} is not final")
        return found

    @app.agent(transactions)
    async def score_transactions(stream: Any) -> None:
        topic = config.topic_transactions
        async for events in stream.take_events(config.batch_max, within=config.batch_window_s):
            now = time.monotonic()
            committed = faust_tuning.committed_offsets(app.consumer)
            owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}
            messages: list[Incoming] = []
            reseek: dict[int, int] = {}
            for e in events:
                partition, offset = e.message.partition, e.message.offset
                if partition in reseek:
                    continue  # re-read from the gap on
                if partition not in owned:
                    stats.repeats += 1  # fetched before a rebalance moved it: its owner scores it
                    continue
                verdict = guard.admit(
                    partition, offset, committed.get((config.topic_transactions, partition))
                )
                if verdict == "gap":
                    reseek[partition] = guard.expected(partition) or 0
                    continue
                if verdict in ("repeat", "skip"):
                    stats.repeats += 1
                    continue
                messages.append(
                    Incoming(
                        topic=e.message.topic,
                        partition=partition,
                        offset=offset,
                        key=e.message.key,
                        value=e.message.value,
                        received_s=e.message.time_in or now,
                    )
                )
            for partition, offset in reseek.items():
                log.warning("offset gap on partition %d: re-reading from %d", partition, offset)
                await app.consumer.seek(TP(config.topic_transactions, partition), offset)
            stats.consumed += len(messages)
            metrics.consumed.inc(len(messages))
            valid, dead = decode_batch(messages, config.max_message_bytes, config.max_future_ms)
            for letter, message in ((d, _source(d, messages)) for d in dead):
                await publisher.send(
                    config.topic_dlq, message.key, letter.model_dump_json().encode()
                )
                metrics.dead_letters.labels(letter.reason).inc()
            stats.dead_letters += len(dead)
            try:
                if valid:
                    await score_and_publish(valid)
                await publish_detections(publisher)
                # Before faust acknowledges this micro-batch: every output delivered.
                await publisher.deliver()
            except (DeliveryError, KafkaError, ProducerSendError) as exc:
                faust_tuning.exit_on_delivery_failure(exc, log)

    async def score_and_publish(valid: list[Decoded]) -> None:
        waits = stats.waits
        for boundary in sorted({item.boundary_ms for item in valid}):
            await wait_final(boundary)
        if stats.waits > waits:
            metrics.snapshot_waits.inc()
        partition_of = {item.tx.user_id: item.message.partition for item in valid}
        champion, shadow = models.champion, models.shadow  # swaps happen between batches
        # One model call for the whole micro-batch, whichever partitions it spans.
        result = score_batch(
            valid,
            record_of(partition_of),
            merchant_of,
            champion,
            config.allowed_lateness_ms,
            time.monotonic,
            shadow,
        )
        for score in result.scores:
            await publisher.send(
                config.topic_scores, score.user_id.encode(), score.model_dump_json().encode()
            )
        published = time.monotonic()
        for item, score in zip(valid, result.scores, strict=True):
            metrics.latency.observe(max(0.0, published - item.message.received_s))
            metrics.score.observe(score.score)
            metrics.decisions.labels(score.decision).inc()
        metrics.batch_size.observe(len(result.scores))
        metrics.scored.inc(len(result.scores))
        metrics.late.inc(result.late)
        committed = faust_tuning.committed_offsets(app.consumer)
        for user in result.touched_users:
            partition, record = records[user]
            record.prune(committed.get((config.topic_transactions, partition)))
            key = user.encode()
            value = orjson.dumps(record.to_json())
            users.data[key] = value
            await write_changelog(partition, key, value)
        while len(records) > config.user_cache_size:  # after the writes: touched users are newest
            records.popitem(last=False)
        stats.scored += len(result.scores)
        stats.late += result.late
        stats.replayed += result.replayed
        metrics.redelivered.inc(result.replayed)
        watch(result)

    def on_label(label: Label, labeled_at_ms: int) -> None:
        # A label without a time (known "from the start" for merchant features) is taken as
        # arriving now for the join and the detectors, not at the epoch.
        at_ms = labeled_at_ms if label.labeled_at is not None else feedback.latest_ms
        learn(feedback.add_label(label.transaction_id, label.is_fraud, at_ms))

    @app.task
    async def dump_tasks_on_sigusr1() -> None:
        """`kill -USR1 <worker pid>` logs what every asyncio task is waiting on (diagnosis)."""
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _log_tasks)

    @app.task
    async def declare_outputs() -> None:
        """Output topics are sent to through the producer directly: declare them (if allowed)."""
        for topic in outputs:
            await topic.maybe_declare()

    @app.task
    async def merchant_reader() -> None:
        await _read_merchant_inputs(app, config, view, view_changed, on_label)

    @app.task
    async def follow_model_updates() -> None:
        ready.set()  # tasks start once the app has started: the model is loaded, topics exist
        await _follow_model_updates(config, models, on_change=show_models)

    @app.timer(interval=5.0)
    async def flush_detections() -> None:
        """Concept drift found by labels between batches is published here."""
        try:
            await publish_detections(timer_publisher)
            await timer_publisher.deliver()
        except (DeliveryError, KafkaError, ProducerSendError) as exc:
            faust_tuning.exit_on_delivery_failure(exc, log)

    progress: dict[int, tuple[int | None, float]] = {}

    @app.timer(interval=2.0)
    async def unstick_partitions() -> None:
        """Watchdog: a partition with records waiting but no progress for a while is re-read
        from the next expected offset (faust can stop delivering one after a recovery)."""
        if not getattr(app.consumer, "flow_active", True):
            return  # recovery or a rebalance in progress
        now = time.monotonic()
        for tp in app.consumer.assignment():
            if tp.topic != config.topic_transactions:
                continue
            expected = guard.expected(tp.partition)
            highwater = _highwater(app.consumer, tp)
            last, since = progress.get(tp.partition, (None, now))
            if expected != last:
                progress[tp.partition] = (expected, now)
                continue
            if expected is None or highwater is None or highwater <= expected:
                progress[tp.partition] = (expected, now)
                continue
            if now - since >= config.stall_s:
                log.warning(
                    "partition %d stalled at offset %d (high watermark %d): re-reading",
                    tp.partition,
                    expected,
                    highwater,
                )
                stats.unstuck += 1
                app.consumer.resume_partitions([tp])
                await app.consumer.seek(tp, expected)
                progress[tp.partition] = (expected, now)

    reported_lag: set[str] = set()

    @app.timer(interval=2.0)
    async def update_gauges() -> None:
        assigned = [tp for tp in app.consumer.assignment() if tp.topic == config.topic_transactions]
        for gone in reported_lag - {str(tp.partition) for tp in assigned}:
            metrics.lag.remove(gone)  # another worker owns it now: its lag is not ours to report
            reported_lag.discard(gone)
        for tp in assigned:
            highwater = _highwater(app.consumer, tp)
            position = guard.expected(tp.partition)
            if highwater is not None:
                behind = highwater - (position if position is not None else 0)
                metrics.lag.labels(str(tp.partition)).set(max(0, behind))
                reported_lag.add(str(tp.partition))
        for kind, entries in (
            ("users", len(records)),
            ("merchant_history", view.history_entries()),
            ("merchant_timeline", view.timeline_entries()),
            ("feedback_scores", len(feedback)),
            ("feedback_labels", feedback.pending_labels),
        ):
            metrics.state.labels(kind).set(entries)
        report = quality.report()
        roles = {models.champion.version: "champion"}
        if models.shadow is not None:
            roles[models.shadow.version] = "shadow"
        for version, role in roles.items():
            for name, value in report.get(version, {}).items():
                metrics.online_quality.labels(role, name).set(value)

    @app.timer(interval=5.0)
    async def report_progress() -> None:
        consumer = app.consumer
        log.debug(
            "assigned=%s paused=%s read=%s guard=%s seeking=%s",
            sorted(
                tp.partition
                for tp in consumer.assignment()
                if tp.topic == config.topic_transactions
            ),
            sorted(getattr(consumer, "_paused_partitions", set())),
            dict(getattr(consumer, "_read_offset", {})),
            guard.next_offset,
            guard.seeking,
        )
        log.info(
            "consumed=%d scored=%d dead_letters=%d late=%d replayed=%d repeats=%d gaps=%d waits=%d "
            "watermark=%s merchant_boundary=%s backlog_h=%.1f stale=%d inexact=%d model=%s "
            "shadow=%s drift_events=%d",
            stats.consumed,
            stats.scored,
            stats.dead_letters,
            stats.late,
            stats.replayed,
            stats.repeats,
            guard.gaps,
            stats.waits,
            view.watermark(),
            view.counts.boundary_ms,
            view.backlog_hours(),
            view.stale_requests,
            view.inexact_requests,
            models.champion.version,
            models.shadow.version if models.shadow is not None else None,
            stats.drift_events,
        )
        if feedback.counts.joined:
            log.info(
                "labels joined=%d waiting=%d online quality %s",
                feedback.counts.joined,
                feedback.pending_labels,
                json.dumps(quality.report(), sort_keys=True),
            )

    return app


def _log_tasks() -> None:
    for task in asyncio.all_tasks():
        frames = []
        coroutine: Any = task.get_coro()
        while coroutine is not None:
            frame = getattr(coroutine, "cr_frame", None) or getattr(coroutine, "gi_frame", None)
            if frame is not None:
                frames.append(f"{frame.f_code.co_qualname}:{frame.f_lineno}")
            coroutine = getattr(coroutine, "cr_await", None) or getattr(
                coroutine, "gi_yieldfrom", None
            )
        log.warning("task %s: %s", task.get_name(), " > ".join(frames) or repr(task))


def _highwater(consumer: Any, tp: TP) -> int | None:
    try:
        value: int | None = consumer.highwater(tp)
    except Exception as exc:  # not fetched yet, or revoked meanwhile
        log.debug("no high watermark for %s yet: %r", tp, exc)
        return None
    return value


def _source(letter: Any, messages: list[Incoming]) -> Incoming:
    for message in messages:
        if message.partition == letter.partition and message.offset == letter.offset:
            return message
    raise LookupError(letter.offset)


def _scored(score: FraudScore) -> Scored:
    shadow = score.shadow
    return Scored(
        event_time_ms=epoch_ms(score.event_time),
        score=score.score,
        flagged=score.decision != "approve",
        model_version=score.model_version,
        shadow_version=shadow.model_version if shadow is not None else None,
        shadow_score=shadow.score if shadow is not None else None,
        shadow_flagged=shadow.decision != "approve" if shadow is not None else None,
    )


async def _read_merchant_inputs(
    app: faust.App,
    config: WorkerConfig,
    view: MerchantView,
    changed: asyncio.Condition,
    on_label: Callable[[Label, int], None],
) -> None:
    """Feed the replicated merchant view from every partition of the input topics."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=config.bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=config.fetch_wait_ms,
        max_partition_fetch_bytes=1024 * 1024,
        **config.kafka_security,
    )
    await consumer.start()
    try:
        topics = [config.topic_transactions] + ([config.topic_labels] if config.use_labels else [])
        assigned: list[TopicPartition] = []
        for topic in topics:
            assigned += await _partitions(consumer, topic)
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        n_tx = sum(1 for tp in assigned if tp.topic == config.topic_transactions)
        view.set_partitions(n_tx, len(assigned) - n_tx)
        caught_up_since: dict[TopicPartition, float] = {}
        all_idle = {config.topic_transactions: False, config.topic_labels: False}
        while True:
            if view.backlog_hours() > view.max_snapshots / 2:
                await asyncio.sleep(0.01)  # far ahead of our scorers: let them catch up
                continue
            batches = await consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.monotonic()
            for tp, messages in batches.items():
                caught_up_since.pop(tp, None)
                for message in messages:
                    _feed(view, config, tp, message.value, on_label)
            for topic in {tp.topic for tp in batches if all_idle.get(tp.topic)}:
                # Traffic resumes after every partition of the topic went idle: give the others
                # a fresh grace period, or the first to speak would close snapshots before the
                # rest (a replay resumed after a pause) and their records would count as late.
                for tp in assigned:
                    if tp.topic == topic and tp in caught_up_since:
                        caught_up_since[tp] = now
            for tp in assigned:
                kind = "transactions" if tp.topic == config.topic_transactions else "labels"
                highwater = consumer.highwater(tp)
                position = await consumer.position(tp)
                if highwater is not None and position >= highwater:
                    since = caught_up_since.setdefault(tp, now)
                    view.set_idle(kind, tp.partition, now - since >= config.idle_partition_s)
                else:
                    caught_up_since.pop(tp, None)
                    view.set_idle(kind, tp.partition, False)
            for topic in all_idle:
                all_idle[topic] = all(
                    now - caught_up_since.get(tp, now + 1) >= config.idle_partition_s
                    for tp in assigned
                    if tp.topic == topic
                )
            async with changed:
                changed.notify_all()
    finally:
        await consumer.stop()


def _feed(
    view: MerchantView,
    config: WorkerConfig,
    tp: TopicPartition,
    value: bytes,
    on_label: Callable[[Label, int], None],
) -> None:
    """Pass one raw input to the view; unusable input is the scorer's to dead-letter."""
    if tp.topic == config.topic_transactions:
        decoded = decode(
            Incoming(tp.topic, tp.partition, 0, None, value, 0.0),
            config.max_message_bytes,
            config.max_future_ms,
        )
        if isinstance(decoded, Decoded):
            tx = decoded.tx
            view.add_transaction(tp.partition, tx.transaction_id, tx.merchant_id, decoded.ts_ms)
        return
    try:
        label = Label.model_validate_json(value)
    except ValueError:
        return
    # As offline (`fraud_label_times`): a label without a time counts as known from the start.
    labeled_at = epoch_ms(label.labeled_at) if label.labeled_at is not None else 0
    view.add_label(tp.partition, label.transaction_id, label.is_fraud, labeled_at)
    on_label(label, labeled_at)


async def _follow_model_updates(
    config: WorkerConfig, models: LiveModels, on_change: Callable[[], None]
) -> None:
    """Obey ModelUpdates published after start-up (the registry gave the state before that).

    Updates already in the topic are read without acting on them; once caught up, the worker
    syncs with the registry once more (an update may have landed meanwhile) and then applies
    each new update as it arrives.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=config.bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=max(config.fetch_wait_ms, 100),
        **config.kafka_security,
    )
    await consumer.start()
    try:
        partitions = await _partitions(consumer, config.topic_model_updates)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        caught_up = False
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=100)
            for messages in batches.values():
                for message in messages:
                    if caught_up:
                        _apply_update(models, message.value)
                        on_change()
            if not caught_up and await _caught_up(consumer, partitions):
                caught_up = True
                for change in models.sync():
                    log.warning("model update (registry): %s", change)
                on_change()
    finally:
        await consumer.stop()


def _apply_update(models: LiveModels, value: bytes | None) -> None:
    try:
        update = ModelUpdate.model_validate_json(value or b"")
    except ValueError as exc:
        models.counts.rejected += 1
        log.error("ignoring an unreadable model update: %s", str(exc).splitlines()[0])
        return
    models.apply(update)


async def _caught_up(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
    """Every partition read to its high watermark (known once a fetch has answered)."""
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    partitions = consumer.partitions_for_topic(topic)
    while not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await asyncio.sleep(0.5)
    return [TopicPartition(topic, p) for p in sorted(partitions)]
