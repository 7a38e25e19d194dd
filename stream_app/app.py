"""The Faust scoring worker: the app, its topics and table, and the tasks around the pipeline.

* faust keeps the consumer group (partitions of `transactions` and `labels` shared by the
  workers, copartitioned), the users' table with its changelog, recovery and offset commits;
  its consumer hands whole fetches of the input topics to the scoring pipeline
  (`stream_app.pipeline`, through `stream_app.worker_shell`) instead of its per-message path.
* every worker reads the merchant log (final hourly merchant partials of every partition) into
  the same merchant snapshots; each publishes the partials of the partitions it owns.
* `follow_model_updates` obeys ModelUpdates (hot swap, shadow); timers report idle partitions,
  gauges and progress.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError

from models.merchant_history import MerchantHistory
from models.merchant_partials import Source
from models.registry import ModelRegistry
from models.scoring import Scorer
from models.seen_ids import DEFAULT_DEDUPE_HORIZON_MS
from schemas.errors import DeliveryError
from stream_app import faust_tuning, merchant_log
from stream_app.drift_monitor import DriftMonitorRunner, MonitorConfig
from stream_app.kafka_sink import ConfluentSink
from stream_app.live_models import LiveModels
from stream_app.metrics import WorkerMetrics, serve
from stream_app.model_follower import follow_model_updates
from stream_app.pipeline import PipelineConfig, ScoringPipeline
from stream_app.topic_limits import dead_letter_limit
from stream_app.worker_shell import (
    MAX_FETCH_BYTES,
    EndProbe,
    MerchantLogReader,
    TableStore,
    WorkerShell,
)

log = logging.getLogger("fraudstream.worker")

PRODUCER_MAX_REQUEST_BYTES = 1_048_576
"""aiokafka's default, set explicitly: dead letters are fitted below it."""


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
    topic_merchant_log: str
    partitions: int
    registry_dir: str
    model_name: str
    topic_drift_inputs: str = "drift-inputs"
    fetch_wait_ms: int = 5
    batch_max: int = 500
    user_cache_size: int = 20_000
    batch_window_s: float = 0.02
    allowed_lateness_ms: int = 10 * 60_000
    idle_partition_s: float = 2.0
    max_message_bytes: int = 64 * 1024
    dlq_max_bytes: int = 1_000_000
    """Largest dead-letter record (the DLQ topic's max.message.bytes when the broker says)."""
    dedupe_horizon_ms: int = DEFAULT_DEDUPE_HORIZON_MS
    max_future_ms: int = 86_400_000
    max_queued: int = 4_000
    use_labels: bool = True
    drift_rejoin_hours: int = 192
    drift_scores_idle_s: float = 300.0
    replication_factor: int = 1
    commit_interval_s: float = 1.0
    users_write_behind_s: float = 0.5
    producer_linger_s: float = 0.005
    store: str = "memory://"
    data_dir: str | None = None
    """Faust's data directory (tables on disk with the RocksDB store); None: faust's default."""
    web_port: int | None = None
    metrics_port: int | None = None
    kafka_security: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """aiokafka keyword arguments (security protocol, SASL, SSL context); never printed."""
    client_config: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """The same for librdkafka (the outputs' producer): `bootstrap.servers`, security."""
    broker_credentials: Any = field(default=None, repr=False)
    """Faust's form of the same (SASLCredentials / SSLCredentials)."""


def create_app(config: WorkerConfig, scorer: Scorer | None = None) -> faust.App:
    """Build the worker app. `scorer` defaults to the registry's champion (checksum-verified)."""
    faust_tuning.register()
    faust_tuning.configure(config.bootstrap, config.fetch_wait_ms, config.kafka_security)
    models = LiveModels(ModelRegistry(Path(config.registry_dir), config.model_name), scorer)
    app = _faust_app(config)
    input_topics = [config.topic_transactions] + (
        [config.topic_labels] if config.use_labels else []
    )
    inputs = app.topic(*input_topics, value_serializer="raw")
    outputs = [
        app.topic(name, value_serializer="raw") for name in (config.topic_scores, config.topic_dlq)
    ]
    outputs.append(  # one partition (one order for every reader), kept beyond the windows
        app.topic(
            config.topic_merchant_log,
            value_serializer="raw",
            partitions=1,
            retention=timedelta(milliseconds=merchant_log.RETENTION_MS),
            deleting=True,
        )
    )
    users = users_table(app, config.partitions)
    metrics = WorkerMetrics()
    client = {"bootstrap.servers": config.bootstrap, **config.client_config}
    publisher = ConfluentSink(client, config.producer_linger_s * 1000, log)
    pipeline = ScoringPipeline(
        _pipeline_config(config),
        models,
        TableStore(users, publisher),
        publisher,
        MerchantHistory(),
        committed=lambda source: faust_tuning.committed_offset(app.consumer, shell.tp(source)),
        on_state_reset=metrics.state_resets.inc,
    )
    kinds = {config.topic_transactions: "tx"}
    if config.use_labels:
        kinds[config.topic_labels] = "labels"
    shell = WorkerShell(app, pipeline, kinds, metrics, config.idle_partition_s)
    faust_tuning.attach(app, shell)
    ready = asyncio.Event()
    _show_models(models, metrics)
    if config.metrics_port is not None:
        server = serve(metrics.registry, config.metrics_port, ready.is_set)
        log.info("metrics on port %d", server.server_address[1])

    @app.agent(inputs)
    async def subscribe_inputs(stream: Any) -> None:
        """Subscribes the group to the input topics; their records go to the pipeline."""
        async for _ in stream:  # pragma: no cover - the shell takes every record
            pass

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(sender: Any, *args: Any, signal: Any = None, **kw: Any) -> None:
        shell.revoked(list(args[0] if args else kw.get("revoked", set())))

    @app.task
    async def start_pipeline() -> None:
        """Output topics declared, input partitions known; then the merchant log is read."""
        for topic in outputs:
            await topic.maybe_declare()
        producer = faust_tuning.raw_producer(app)
        counts = {
            topic: len(await producer.partitions_for(topic))
            for topic in (*input_topics, config.topic_scores)
        }
        pipeline.scores_partitions = counts[config.topic_scores]
        pipeline.history.declare(
            [Source(kinds[t], p) for t in input_topics for p in range(counts[t])]  # type: ignore[arg-type]
        )
        reader = MerchantLogReader(
            config.bootstrap,
            config.topic_merchant_log,
            config.fetch_wait_ms,
            config.kafka_security,
            shell.on_final,
            metrics,
        )
        shell.reader = reader
        shell.probe = EndProbe(config.bootstrap, config.kafka_security)
        shell.started.set()
        await _run_delivering(reader.run())

    monitor = DriftMonitorRunner(
        MonitorConfig(
            bootstrap=config.bootstrap,
            topic_scores=config.topic_scores,
            topic_labels=config.topic_labels,
            topic_drift=config.topic_drift,
            topic_inputs=config.topic_drift_inputs,
            fetch_wait_ms=config.fetch_wait_ms,
            allowed_lateness_ms=config.allowed_lateness_ms,
            idle_partition_s=config.idle_partition_s,
            rejoin_hours=config.drift_rejoin_hours,
            replication_factor=config.replication_factor,
            kafka_security=config.kafka_security,
            scores_idle_s=config.drift_scores_idle_s,
        ),
        sink=ConfluentSink(client, config.producer_linger_s * 1000, log),
        is_leader=app.is_leader,
        on_event=lambda event: metrics.drift_events.labels(event.detector, event.signal).inc(),
    )

    @app.task
    async def drift_monitor() -> None:
        """The cluster's one drift monitor: runs in whichever worker leads the group."""
        await _run_delivering(monitor.run())

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_monitor(sender: Any, **kwargs: Any) -> None:
        await monitor.stop()
        publisher.close()

    @app.task
    async def models_and_readiness() -> None:
        ready.set()  # tasks start once the app has started: the model is loaded, topics exist
        await follow_model_updates(
            config.bootstrap,
            config.topic_model_updates,
            config.fetch_wait_ms,
            config.kafka_security,
            models,
            on_change=lambda: _show_models(models, metrics),
        )

    @app.task
    async def dump_tasks_on_sigusr1() -> None:
        """`kill -USR1 <worker pid>` logs what every asyncio task is waiting on (diagnosis)."""
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _log_tasks)

    @app.timer(interval=0.5)
    async def idle_partitions() -> None:
        await _run_delivering(shell.tick_idle())

    @app.timer(interval=0.25)
    async def write_users() -> None:
        await _run_delivering(shell.tick_flush())

    @app.timer(interval=2.0)
    async def update_gauges() -> None:
        shell.export()
        _export_monitor(monitor, models, metrics)

    @app.timer(interval=5.0)
    async def report_progress() -> None:
        _report(shell, models)
        log.info("bytes sent per topic %s", dict(publisher.sent))
        if monitor.leading:
            stats = monitor.metrics()
            log.info(
                "drift monitor: %s",
                {k: v for k, v in stats.items() if not k.startswith("detector.")},
            )

    return app


USERS_ROCKSDB_OPTIONS: Mapping[str, int] = {
    "write_buffer_size": 8 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "block_cache_size": 16 * 1024 * 1024,
    "block_cache_compressed_size": 4 * 1024 * 1024,
}
"""RocksDB options of each partition's database of the users' table (`rocksdb://`; the memory
store ignores them). Faust's defaults are sized for big values: 64 MiB memtables, three of them,
a 2 GiB block cache (and 500 MiB compressed, python-rocksdb only) — per partition, so a worker
with four partitions could hold ~0.75 GB of memtables alone. A user's record is ~300 bytes: an
8 MiB memtable holds ~25,000 writes, one fills while the other flushes; reads come only for users
outside the worker's cache of decoded records (`user_cache_size`), a miss costs a block read."""


def users_table(app: faust.App, partitions: int) -> Any:
    """The users' table: raw bytes keys and values (faust's raw changelog codec)."""
    return app.Table(
        "user-windows",
        default=None,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        options=dict(USERS_ROCKSDB_OPTIONS),  # a copy: faust's RocksDB store pops from it
    )


def _faust_app(config: WorkerConfig) -> faust.App:
    if config.data_dir is not None:
        Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    return faust.App(
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
        consumer_max_fetch_size=MAX_FETCH_BYTES,
        # Records per getmany: a 4 MiB fetch of small transactions is ~12,000 records; handed
        # over at once they were all decoded at once (~2 KB each). The rest stays in aiokafka's
        # buffer as raw bytes until the next call.
        broker_max_poll_records=MAX_POLL_RECORDS,
        producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        web_enabled=config.web_port is not None,
        web_port=config.web_port or 6066,
        topic_allow_declare=True,
    )


MAX_POLL_RECORDS = 2_000


def _pipeline_config(config: WorkerConfig) -> PipelineConfig:
    return PipelineConfig(
        transactions_topic=config.topic_transactions,
        labels_topic=config.topic_labels if config.use_labels else None,
        scores_topic=config.topic_scores,
        dlq_topic=config.topic_dlq,
        merchant_log_topic=config.topic_merchant_log,
        scores_partitions=config.partitions,
        allowed_lateness_ms=config.allowed_lateness_ms,
        max_message_bytes=config.max_message_bytes,
        max_future_ms=config.max_future_ms,
        dedupe_horizon_ms=config.dedupe_horizon_ms,
        batch_max=config.batch_max,
        dlq_limit=dead_letter_limit(config.dlq_max_bytes, PRODUCER_MAX_REQUEST_BYTES, None),
        user_cache_size=config.user_cache_size,
        max_queued=config.max_queued,
        users_write_behind_s=config.users_write_behind_s,
        defer_delivery=True,  # the shell acknowledges after delivery, scoring the next fetch
    )


async def _run_delivering(work: Any) -> None:
    """Run `work`; a failed delivery stops the worker at once (see `kafka_sink.ConfluentSink`)."""
    try:
        await work
    except (DeliveryError, KafkaError, ProducerSendError) as exc:
        faust_tuning.exit_on_delivery_failure(exc, log)


_swaps_seen = {"applied": 0, "rejected": 0}


def _show_models(models: LiveModels, metrics: WorkerMetrics) -> None:
    shadow = models.shadow.version if models.shadow is not None else ""
    metrics.model.info({"version": models.champion.version, "shadow_version": shadow})
    for outcome, now in (("applied", models.counts.applied), ("rejected", models.counts.rejected)):
        metrics.model_swaps.labels(outcome).inc(now - _swaps_seen[outcome])
        _swaps_seen[outcome] = now


def _export_monitor(
    monitor: DriftMonitorRunner, models: LiveModels, metrics: WorkerMetrics
) -> None:
    for name, value in monitor.metrics().items():
        if not name.startswith("detector."):  # per-signal detector internals stay in logs
            metrics.monitor.labels(name).set(value)
    roles = {models.champion.version: "champion"}
    if models.shadow is not None:
        roles[models.shadow.version] = "shadow"
    report = monitor.quality()
    for version, role in roles.items():
        for name, value in report.get(version, {}).items():
            metrics.online_quality.labels(role, name).set(value)


def _report(shell: WorkerShell, models: LiveModels) -> None:
    pipeline = shell.pipeline
    stats = pipeline.stats
    history = pipeline.history
    log.info(
        "consumed=%d labels=%d scored=%d dead_letters=%d late=%d replayed=%d repeats=%d gaps=%d "
        "waits=%d queued=%d batches=%d final_hour=%s newest_closed=%s merchant_late=%s "
        "unattributable=%d "
        "inexact=%d idle=%s model=%s shadow=%s",
        stats.consumed,
        stats.labels,
        stats.scored,
        sum(stats.dead_letters.values()),
        stats.late,
        stats.replayed,
        stats.repeats,
        stats.gaps,
        stats.waits,
        pipeline.queued(),
        stats.batches,
        history.final,
        history.newest_closed(),
        pipeline.merchant_late(),
        stats.unattributable,
        history.inexact,
        sorted(str(s) for s in shell.idle_sources()),
        models.champion.version,
        models.shadow.version if models.shadow is not None else None,
    )


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
