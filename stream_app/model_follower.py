"""The worker follows `model-updates`: hot swaps of the champion and the shadow.

Updates already in the topic when the worker starts are read without acting on them (the
registry gave the state at start-up); once caught up, the worker syncs with the registry once
more and then obeys each new update as it arrives (`LiveModels.apply`, checksums verified).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.events import ModelUpdate
from stream_app.live_models import LiveModels

log = logging.getLogger("fraudstream.worker")


async def follow_model_updates(
    bootstrap: str,
    topic: str,
    fetch_wait_ms: int,
    security: Mapping[str, Any],
    models: LiveModels,
    on_change: Callable[[], None],
) -> None:
    """Obey ModelUpdates published after start-up (see the module docstring)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=max(fetch_wait_ms, 100),
        **security,
    )
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, topic)
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


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    partitions = consumer.partitions_for_topic(topic)
    while not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await asyncio.sleep(0.5)
    return [TopicPartition(topic, p) for p in sorted(partitions)]
