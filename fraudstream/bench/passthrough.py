"""The pass-through apps the pipeline is compared with, run as subprocesses
(`python -m fraudstream.bench raw-passthrough|faust-passthrough ...`).

Each consumes the input topic and produces every message unchanged to the output topic: the
cost of moving a message through Kafka and the framework, with no work at all.

* raw: aiokafka, every partition assigned (no group), `getmany` + `send`, the pipeline's fetch
  wait and producer linger, acks=all like Faust's producer: the floor no Kafka app can beat.
* bare Faust, defaults: one agent, `await topic.send(...)` per event, `faust://` transport
  (fetch wait hard-coded to 1.5 s), Faust's worker.
* bare Faust, tuned: the same agent on the project's tuned transport
  (`stream_app.faust_tuning`: the pipeline's fetch wait, the consumer on the app's loop, the
  lean drain loop), its quiet worker and collector schedule (`stream_app.collector`), the
  pipeline's linger and commit interval, and sends
  straight to the underlying producer as the pipeline does: the ceiling of any Faust app
  that handles events one by one.

Faust is imported only inside the Faust app (the pipeline's tuning module with it).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import Any


async def raw_passthrough(
    bootstrap: str, source: str, sink: str, fetch_wait_ms: int, linger_ms: float
) -> None:
    """Forward `source` to `sink` until SIGTERM."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from fraudstream.settings import get_settings

    security = get_settings().aiokafka_security()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_wait_ms,
        **security,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=linger_ms, acks="all", **security
    )
    await consumer.start()
    await producer.start()
    try:
        partitions = consumer.partitions_for_topic(source)
        while not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(source)
        consumer.assign([TopicPartition(source, p) for p in sorted(partitions)])
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            for messages in batches.values():
                for message in messages:
                    await producer.send(sink, value=message.value, key=message.key)
    finally:
        await producer.stop()
        await consumer.stop()


def faust_passthrough(
    bootstrap: str,
    source: str,
    sink: str,
    app_id: str,
    datadir: str,
    partitions: int,
    tuned: bool,
) -> None:
    """A bare Faust agent forwarding every event unchanged (raw bytes in and out)."""
    import faust

    from fraudstream.settings import get_settings

    settings = get_settings()
    if settings.kafka_security_protocol != "PLAINTEXT":
        raise SystemExit("the bare-Faust baselines support PLAINTEXT clusters only")
    options: dict[str, Any] = {"broker": f"kafka://{bootstrap}"}
    worker_class: Any = faust.Worker
    if tuned:
        from stream_app import faust_tuning

        faust_tuning.register()
        faust_tuning.configure(bootstrap, settings.fetch_wait_ms)
        worker_class = faust_tuning.QuietWorker
        options = {
            "broker": f"{faust_tuning.SCHEME}://{bootstrap}",
            "producer_linger": settings.producer_linger_ms / 1000.0,
            "broker_commit_interval": settings.commit_interval_s,
        }
    app = faust.App(
        app_id,
        datadir=datadir,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=partitions,
        web_enabled=False,
        **options,
    )
    source_topic = app.topic(source, value_serializer="raw", key_serializer="raw")
    sink_topic = app.topic(sink, value_serializer="raw", key_serializer="raw")

    @app.agent(source_topic)
    async def forward(stream: Any) -> None:
        if tuned:
            async for event in stream.events():
                await app.producer.send(sink, event.key, event.value, None, None, None)
        else:
            async for event in stream.events():
                await sink_topic.send(key=event.key, value=event.value)

    running = worker_class(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    if tuned:  # the worker's collector schedule too (`stream_app.collector`)
        from stream_app import collector

        collector.tune()
    running.execute_from_commandline()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fraudstream.bench")
    commands = parser.add_subparsers(dest="command", required=True)
    raw = commands.add_parser("raw-passthrough")
    for name in ("bootstrap", "source", "sink"):
        raw.add_argument(name)
    raw.add_argument("fetch_wait_ms", type=int)
    raw.add_argument("linger_ms", type=float)
    bare = commands.add_parser("faust-passthrough")
    for name in ("bootstrap", "source", "sink", "app_id", "datadir"):
        bare.add_argument(name)
    bare.add_argument("partitions", type=int)
    bare.add_argument("--tuned", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "raw-passthrough":
        asyncio.run(
            raw_passthrough(
                args.bootstrap, args.source, args.sink, args.fetch_wait_ms, args.linger_ms
            )
        )
    else:
        sys.argv = [sys.argv[0]]  # faust's Worker reads the command line
        faust_passthrough(
            args.bootstrap,
            args.source,
            args.sink,
            args.app_id,
            args.datadir,
            args.partitions,
            args.tuned,
        )
