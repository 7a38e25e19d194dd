"""The scoring pipeline in-process, no broker: what a worker's core costs per transaction.

The records go through `ScoringPipeline` as a worker's consumer would hand them over: eight
partitions by key, fetches of 250 records per partition, offsets committed every third fetch
(a 1 s commit interval at ~5,000 tx/s: the users' journals hold what is not committed yet),
users' records in a `MemoryStore`, written behind as the worker's default
`users_write_behind_s` says, outputs to a sink that only counts them. The cost is the
process's CPU time, so a busy machine slows it less than it slows wall-clock figures. It runs
twice: with CPython's default collector schedule and with the worker's (`stream_app.collector`),
each reporting the collector's own time. What it leaves out: Kafka clients, librdkafka, the
drift monitor and the merchant log reader, all of which a worker also runs.
"""

from __future__ import annotations

import asyncio
import gc
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PARTITIONS = 8
FETCH = 250
"""Records per partition and fetch (2,000 per fetch, the worker's `broker_max_poll_records`)."""
COMMIT_EVERY = 3


class _CountingSink:
    dropped = 0

    def __init__(self) -> None:
        self.records = 0

    async def send(self, topic: str, key: Any, value: bytes, *args: Any, **kwargs: Any) -> None:
        self.records += 1

    def send_all(self, topic: str, records: Any) -> None:
        self.records += sum(1 for _ in records)

    async def deliver(self) -> int:
        done, self.records = self.records, 0
        return done


class _Champion:
    def __init__(self, scorer: Any) -> None:
        self.champion, self.shadow, self.canary = scorer, None, None


class _CollectorClock:
    """CPU seconds spent in the collector, from `gc.callbacks`."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self.longest_ms = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
            return
        spent = time.thread_time() - self._started
        self.seconds += spent
        self.collections[info["generation"]] += 1
        self.longest_ms = max(self.longest_ms, spent * 1000)


def pipeline_in_process(
    registry: Path, model_name: str, values: Sequence[tuple[bytes | None, bytes]]
) -> dict[str, Any]:
    """Both collector schedules (see the module docstring)."""
    from stream_app import collector

    result = {"transactions": len(values), "default": _run(registry, model_name, values)}
    thresholds = gc.get_threshold()
    collector.tune()
    try:
        result["worker"] = _run(registry, model_name, values)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    return result


def _run(
    registry: Path, model_name: str, values: Sequence[tuple[bytes | None, bytes]]
) -> dict[str, Any]:
    from models.merchant_history import MerchantHistory
    from models.merchant_partials import Source
    from models.registry import ModelRegistry
    from models.scoring import Scorer
    from models.stages import StageClock
    from stream_app.pipeline import PipelineConfig, Record, ScoringPipeline
    from stream_app.user_records import MemoryStore

    sources = [Source("tx", p) for p in range(PARTITIONS)]
    parts: dict[Source, list[bytes]] = {s: [] for s in sources}
    for key, value in values:
        parts[sources[zlib.crc32(key or b"") % PARTITIONS]].append(value)
    committed: dict[Source, int] = {}
    from fraudstream.settings import Settings

    config = PipelineConfig(
        "transactions",
        "scores",
        "dlq",
        "merchant-log",
        scores_partitions=PARTITIONS,
        users_write_behind_s=Settings.model_fields["users_write_behind_s"].default,
    )
    pipeline = ScoringPipeline(
        config,
        _Champion(Scorer.from_loaded(ModelRegistry(registry, model_name).load())),
        MemoryStore(),
        _CountingSink(),
        MerchantHistory(sources),
        committed=committed.get,
        stages=StageClock(time.thread_time),
    )
    for source in sources:
        pipeline.assign(source, None, None)
    clock = _CollectorClock()
    gc.callbacks.append(clock)
    try:
        began = time.process_time()
        asyncio.run(_feed(pipeline, parts, committed, Record))
        spent = time.process_time() - began
    finally:
        gc.callbacks.remove(clock)
    n = max(len(values), 1)
    return {
        "scored": pipeline.stats.scored,
        "us_per_tx": round(spent / n * 1e6, 1),
        "tx_per_cpu_s": round(n / spent) if spent else None,
        "collector_us_per_tx": round(clock.seconds / n * 1e6, 1),
        "collections": clock.collections,
        "longest_collection_ms": round(clock.longest_ms, 1),
        "stages_us_per_tx": {k: round(v / n * 1e6, 1) for k, v in pipeline.stages.seconds.items()},
    }


async def _feed(pipeline: Any, parts: Any, committed: dict[Any, int], record: Any) -> None:
    offsets = dict.fromkeys(parts, 0)
    pending: dict[Any, int] = {}
    fetches = 0
    while any(offsets[s] < len(v) for s, v in parts.items()):
        batch = {}
        for source, values in parts.items():
            start = offsets[source]
            chunk = values[start : start + FETCH]
            if chunk:
                batch[source] = [record(start + i, None, v, 0.0) for i, v in enumerate(chunk)]
                offsets[source] = start + len(chunk)
        outcome = await pipeline.process(batch)
        for source, acked in outcome.acked.items():
            pending[source] = max(pending.get(source, 0), max(acked) + 1)
        fetches += 1
        if fetches % COMMIT_EVERY == 0:
            committed.update(pending)
    await pipeline.idle(list(parts))
    await pipeline.flush()  # what the write-behind still holds
