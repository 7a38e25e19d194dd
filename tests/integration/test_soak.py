"""Soak: steady traffic for a long while; memory and state stay flat once the windows are full.

Marked slow (`make soak`). Duration and load come from the environment:

* FRAUD_SOAK_S (default 300): how long traffic flows. On the embedded broker the fetch cost
  grows with the batches stored per partition (docs/CONTRACT.md), which bounds how long a soak
  can run there (the replayers batch for 250 ms to stay inside it; with 20 ms batches every
  partition stalled after ~30,000 transactions); against real Kafka (testcontainers, when a
  Docker engine answers) use 1800 or more.
* FRAUD_SOAK_RATE (default 150): transactions per second offered.

The traffic is a simulated world replayed at a constant event-time speed chosen so that the run
covers 120 days of event time: the 30-day merchant windows (and the 32 days of events kept for
exact rebuilds) fill up in the first third, so the rest shows whether old state really expires.
Transactions and their labels are replayed side by side (`fraudstream replay --speed`).

Asserted: every transaction is scored; after warm-up the worker's RSS grows by less than 10 %;
the state gauges (`fraudstream_state_entries`) stop growing once the windows are full; no
error-level log line.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from pathlib import Path

import pytest

from fraudstream.broker import free_port
from fraudstream.testing import Stack
from tests.integration.test_backpressure import rss_bytes

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow]

SOAK_S = float(os.environ.get("FRAUD_SOAK_S", "300"))
RATE = float(os.environ.get("FRAUD_SOAK_RATE", "150"))
EVENT_DAYS = 120
SAMPLE_EVERY_S = 5.0
RSS_GROWTH_LIMIT = 0.10
STATE_GROWTH_LIMIT = 0.15


def state(samples: dict[str, float]) -> dict[str, float]:
    prefix = 'fraudstream_state_entries{kind="'
    return {k[len(prefix) : -2]: v for k, v in samples.items() if k.startswith(prefix)}


def simulate_world(out: Path) -> tuple[Path, Path, int]:
    """A world with ~RATE × SOAK_S transactions over EVENT_DAYS days."""
    from producers.simulator import SimulationConfig, simulate, write_traffic

    wanted = RATE * SOAK_S
    # ~1.75 transactions per customer and day in the default world
    customers = max(200, round(wanted / EVENT_DAYS / 1.75))
    traffic = simulate(
        SimulationConfig(customers=customers, merchants=max(300, customers), days=EVENT_DAYS)
    )
    tx_file, label_file = write_traffic(traffic, out)
    return tx_file, label_file, len(traffic)


def test_soak_memory_and_state_stay_flat(fraudstream_stack: Stack, tmp_path: Path) -> None:
    stack = fraudstream_stack
    tx_file, label_file, total = simulate_world(tmp_path / "world")
    speed = EVENT_DAYS * 86_400 / SOAK_S
    worker = stack.start("worker-w", "worker", "--loglevel", "info", metrics_port=free_port())
    worker.wait_for_metrics(lambda m: "fraudstream_transactions_scored_total" in m, 90)
    began = time.monotonic()
    replayers = [
        stack.start(
            name,
            "replay",
            str(path),
            "--topic",
            stack.topics[role],
            "--speed",
            f"{speed}",
            "--linger-ms",
            "250",  # fewer, bigger batches: the embedded broker's cost grows with them
        )
        for name, role, path in (
            ("replay-tx", "transactions", tx_file),
            ("replay-labels", "labels", label_file),
        )
    ]
    samples: list[tuple[float, int, dict[str, float]]] = []
    deadline = began + SOAK_S * 1.5 + 120
    scored = 0.0
    while scored < total:
        assert worker.running, f"the worker died\n{worker.logs(3000)}"
        assert time.monotonic() < deadline, (
            f"{scored:.0f} of {total} scored after {time.monotonic() - began:.0f} s\n"
            f"{worker.logs(3000)}"
        )
        metrics = worker.scrape()
        scored = metrics.get("fraudstream_transactions_scored_total", 0.0)
        samples.append((time.monotonic() - began, rss_bytes(worker.pid), state(metrics)))
        time.sleep(SAMPLE_EVERY_S)  # the sampling interval of the measurement, not a wait
    tx_replayer, label_replayer = replayers
    tx_replayer.stop()  # finished: every transaction was scored; exit code 0 asserted
    # Labels arrive days after their transactions (event time): that replay may still run.
    assert label_replayer.stop(expect=None) in (0, -signal.SIGTERM)
    worker.stop()

    report(samples)
    assert scored >= total
    # Warm-up: the first third (windows filling, code paths warming). Compare the rest with it.
    third = len(samples) // 3
    assert third >= 3, f"too few samples ({len(samples)}) for a soak: raise FRAUD_SOAK_S"
    warm = statistics.median(rss for _, rss, _ in samples[third - 3 : third])
    late = max(rss for _, rss, _ in samples[2 * third :])
    assert late <= warm * (1 + RSS_GROWTH_LIMIT), (
        f"RSS grew from {warm / 2**20:.0f} MiB after warm-up to {late / 2**20:.0f} MiB"
    )
    for kind in ("users", "merchant_history", "merchant_timeline", "feedback_scores"):
        at_warm = max(s[2].get(kind, 0.0) for s in samples[third - 3 : third])
        at_end = max(s[2].get(kind, 0.0) for s in samples[2 * third :])
        assert at_end <= max(at_warm * (1 + STATE_GROWTH_LIMIT), 1000), (
            f"state {kind!r} kept growing: {at_warm:.0f} after warm-up, {at_end:.0f} at the end"
        )
    errors = [line for line in worker.logs().splitlines() if "[ERROR]" in line]
    assert not errors, "\n".join(errors[:20])


def report(samples: list[tuple[float, int, dict[str, float]]]) -> None:
    print(f"\nsoak: {len(samples)} samples, {SOAK_S:.0f} s at {RATE:.0f} tx/s")
    step = max(1, len(samples) // 12)
    for at, rss, kinds in samples[::step]:
        detail = " ".join(f"{k}={v:.0f}" for k, v in sorted(kinds.items()))
        print(f"  t={at:6.0f}s rss={rss / 2**20:6.1f} MiB {detail}")
