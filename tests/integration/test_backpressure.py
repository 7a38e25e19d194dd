"""Backpressure: a backlog far larger than what a worker may hold in memory, produced at once.

The worker must read it at its own pace (Faust pauses a partition whose stream buffer is full;
the merchant reader pauses when it is far ahead in event time). So while the first part of the
backlog is being scored, the worker's RSS stays close to the idle worker's; a worker that
buffered the backlog would have grown by the backlog's size by then. Lag is reported, and it
drains to zero.

The backlog: one partition, ten days of event time for 2,000 cards at 500 merchants, with long
optional fields that no state keeps (`channel`, `device_id`): buffering costs memory per
message, the worker's own state does not grow with them.
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fraudstream import bench
from fraudstream.testing import Broker, Stack

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

BACKLOG = 100_000
WARM_UP = 2_000
START = datetime(2024, 5, 6, tzinfo=UTC)
SPAN = timedelta(days=10)
MEASURE_AT = 0.05
"""RSS is compared with the idle worker's once this share of the backlog is scored."""
GROWTH_LIMIT_BYTES = 75 * 2**20
"""Allowed RSS growth over the idle worker at that point (see the module docstring and the
README: holding the whole backlog cost more than that here)."""


def rss_bytes(pid: int) -> int:
    value = bench.rss_bytes(pid)
    assert value is not None, f"no VmRSS for process {pid}"
    return value


def lag(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("fraudstream_consumer_lag_messages"))


def transactions(path: Path, count: int, first: datetime, prefix: str, seed: int) -> Path:
    """`count` transactions spread evenly over SPAN from `first`."""
    rng = random.Random(seed)
    step = SPAN / count
    with path.open("w") as out:
        for i in range(count):
            when = (first + i * step).isoformat().replace("+00:00", "Z")
            line = {
                "transaction_id": f"{prefix}{i:07d}",
                "user_id": f"u{rng.randrange(2000):05d}",
                "merchant_id": f"m{rng.randrange(500):04d}",
                "amount": round(rng.uniform(1.0, 200.0), 2),
                "timestamp": when,
                "channel": "ecommerce-" + "x" * 110,
                "device_id": f"d{i:07d}-" + "y" * 110,
            }
            out.write(json.dumps(line) + "\n")
    return path


def test_a_backlog_is_read_at_the_worker_s_pace_and_drains(
    fraudstream_broker: Broker, fraudstream_registry: Path, tmp_path: Path
) -> None:
    warm_up = transactions(tmp_path / "warm.jsonl", WARM_UP, START - SPAN, "w", seed=1)
    backlog = transactions(tmp_path / "backlog.jsonl", BACKLOG, START, "b", seed=2)
    with Stack.create(fraudstream_broker, fraudstream_registry, tmp_path / "s", 1) as stack:
        worker = stack.start_worker()
        # Idle, but warm: the first batches have loaded the model and filled the pools.
        stack.scores(stack.replay(warm_up))
        worker.wait_for_metrics(lambda m: lag(m) == 0, what="caught up after the warm-up")
        idle = rss_bytes(worker.pid)

        stack.replay(backlog, linger_ms=100)
        measured: int | None = None
        peak_lag = 0.0
        deadline = time.monotonic() + 600
        while True:
            samples = worker.scrape()
            scored = samples.get("fraudstream_transactions_scored_total", 0.0) - WARM_UP
            peak_lag = max(peak_lag, lag(samples))
            if measured is None and scored >= MEASURE_AT * BACKLOG:
                measured = rss_bytes(worker.pid)
            if scored >= BACKLOG and lag(samples) == 0:
                break
            assert time.monotonic() < deadline, (
                f"backlog not drained within 600 s: {scored:.0f} of {BACKLOG} scored, "
                f"lag {lag(samples)}\n{worker.logs(2000)}"
            )
            time.sleep(0.2)
        assert worker.running
        worker.stop()
    assert measured is not None
    assert peak_lag >= BACKLOG / 2, f"no backlog built up (peak lag {peak_lag:.0f})"
    growth = measured - idle
    print(f"idle RSS {idle / 2**20:.0f} MiB, +{growth / 2**20:.0f} MiB at {MEASURE_AT:.0%} scored")
    assert growth < GROWTH_LIMIT_BYTES, (
        f"RSS grew by {growth / 2**20:.0f} MiB over the idle worker's {idle / 2**20:.0f} MiB "
        f"with {MEASURE_AT:.0%} of a {BACKLOG:,}-message backlog scored: it is buffering input"
    )
