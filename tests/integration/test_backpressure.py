"""Backpressure: a backlog far larger than what a worker may hold in memory, produced at once.

The worker must read it at its own pace: a partition with `FRAUD_MAX_QUEUED` transactions
decoded and waiting is paused, and reads take at most 2,000 records. So the transactions read
and not yet scored stay below a bound (the sensitive check: a worker whose partitions are never
paused went 3x over it), and while the first part of the backlog is scored the worker's RSS
stays close to the idle worker's. Lag is reported, and it drains to zero.

The backlog: one partition, ten days of event time for 2,000 cards at 500 merchants, with long
optional fields that no state keeps (`channel`, `device_id`): buffering costs memory per
message, the worker's own state does not grow with them.

The idle worker is warm from a first, smaller backlog (20,000 transactions produced at once),
so its RSS already holds what draining costs at any backlog size: full fetches and queues,
full micro-batches, the collector's young generation, the allocator's arenas. Warmed with a
trickle instead (2,000 transactions), the same worker grew by 70-79 MiB at 5 % of the backlog
and then by 36 MiB more over the remaining 95 %: the step was the drain's working set, not
buffering, and it left the old 75 MiB limit no margin (it failed so on a fresh clone). Warmed
by the first backlog, it grew by 7-10 MiB. The RSS check alone no longer tells buffering apart:
a never-paused worker, warmed the same way, grew by 21-33 MiB (its warm-up had already grown
the heap by 165 MiB, which the second backlog reuses); the read-ahead bound does.
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
from stream_app.app import MAX_POLL_RECORDS

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

BACKLOG = 100_000
WARM_UP = 20_000
START = datetime(2024, 5, 6, tzinfo=UTC)
SPAN = timedelta(days=10)
MEASURE_AT = 0.05
"""RSS is compared with the idle worker's once this share of the backlog is scored."""
GROWTH_LIMIT_BYTES = 50 * 2**20
"""Allowed RSS growth over the idle worker at that point (measured: +7 to +14 MiB)."""
MAX_QUEUED = 4_000
"""`FRAUD_MAX_QUEUED` for the worker: decoded transactions per partition before it pauses."""
MAX_AHEAD = MAX_QUEUED + 3 * MAX_POLL_RECORDS
"""Transactions read but not yet counted as scored, at most: a full queue, the read that
filled it, and two reads' worth of scores sent but not yet delivered (scores are counted once
delivered, and the worker scores the next read while the previous one's delivery is in flight:
`stream_app.deliveries`). Measured: 5,516 and 5,595 (8,333 in one run while the sink waited
for deliveries in a thread; 5,614 before deliveries overlapped); with
`FRAUD_MAX_QUEUED=200000`, i.e. a partition never paused, 19,296."""


def rss_bytes(pid: int) -> int:
    value = bench.rss_bytes(pid)
    assert value is not None, f"no VmRSS for process {pid}"
    return value


def lag(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("fraudstream_consumer_lag_messages"))


def ahead(samples: dict[str, float]) -> float:
    """Transactions the worker has read and not scored (there are no dead letters here)."""
    return samples.get("fraudstream_transactions_consumed_total", 0.0) - samples.get(
        "fraudstream_transactions_scored_total", 0.0
    )


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
        worker = stack.start_worker(env={"FRAUD_MAX_QUEUED": str(MAX_QUEUED)})
        # Idle, but warm: a first backlog has loaded the model and filled the pools.
        stack.scores(stack.replay(warm_up, linger_ms=100), timeout=300)
        worker.wait_for_metrics(lambda m: lag(m) == 0, what="caught up after the warm-up")
        idle = rss_bytes(worker.pid)

        stack.replay(backlog, linger_ms=100)
        measured: int | None = None
        peak_lag = peak_ahead = 0.0
        deadline = time.monotonic() + 600
        while True:
            samples = worker.scrape()
            scored = samples.get("fraudstream_transactions_scored_total", 0.0) - WARM_UP
            peak_lag = max(peak_lag, lag(samples))
            peak_ahead = max(peak_ahead, ahead(samples))
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
    print(
        f"idle RSS {idle / 2**20:.0f} MiB, +{growth / 2**20:.0f} MiB at {MEASURE_AT:.0%} scored; "
        f"at most {peak_ahead:.0f} read and not scored"
    )
    assert peak_ahead <= MAX_AHEAD, (
        f"{peak_ahead:.0f} transactions read and not yet scored at once (at most {MAX_AHEAD}): "
        "the worker reads faster than it scores"
    )
    assert growth < GROWTH_LIMIT_BYTES, (
        f"RSS grew by {growth / 2**20:.0f} MiB over the idle worker's {idle / 2**20:.0f} MiB "
        f"with {MEASURE_AT:.0%} of a {BACKLOG:,}-message backlog scored: it is buffering input"
    )
