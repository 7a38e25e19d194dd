"""Backpressure: a producer far faster than the worker. Lag builds up and is reported, the
worker's memory stays bounded while it works through the backlog, and the lag drains to zero."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fraudstream import bench
from tests.integration.conftest import Stack, free_port, stop
from tests.integration.test_worker import TRAFFIC, scrape, wait_for_metrics

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

RSS_LIMIT_BYTES = 1024**3


def rss_bytes(pid: int) -> int:
    value = bench.rss_bytes(pid)
    assert value is not None, f"no VmRSS for process {pid}"
    return value


def lag(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("fraudstream_consumer_lag_messages"))


COPIES = 6
"""The recorded traffic six times over (renamed users and ids): a backlog of ~36,000."""


def backlog_file(directory: Path) -> Path:
    lines = []
    for line in TRAFFIC.read_bytes().splitlines():
        tx = json.loads(line)
        for copy in range(COPIES):
            lines.append(
                {
                    **tx,
                    "transaction_id": f"c{copy}{tx['transaction_id']}",
                    "user_id": f"c{copy}{tx['user_id']}",
                }
            )
    path = directory / "backlog.jsonl"
    path.write_text("".join(json.dumps(tx) + "\n" for tx in lines))
    return path


def test_lag_builds_up_memory_stays_bounded_and_lag_drains(stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    stack.extra_env["FRAUD_METRICS_PORT"] = str(port)
    traffic = backlog_file(tmp_path)
    worker = stack.start_worker()
    total = len(traffic.read_bytes().splitlines())
    peak_lag, peak_rss = 0.0, 0
    try:
        wait_for_metrics(port, lambda m: "fraudstream_transactions_scored_total" in m, 60)
        stack.replay(traffic)  # ~36,000 transactions in a few seconds
        deadline = time.monotonic() + 180
        while True:
            samples = scrape(port)
            peak_lag = max(peak_lag, lag(samples))
            peak_rss = max(peak_rss, rss_bytes(worker.pid))
            if (
                samples.get("fraudstream_transactions_scored_total", 0) >= total
                and lag(samples) == 0
            ):
                break
            scored = samples.get("fraudstream_transactions_scored_total")
            assert time.monotonic() < deadline, (
                f"backlog not drained within 180 s: {scored} of {total} scored, "
                f"lag {lag(samples)}\n{stack.worker_logs()[-2000:]}"
            )
            time.sleep(0.2)
        assert worker.poll() is None
    finally:
        assert stop(worker) == 0, stack.worker_logs()[-3000:]
    assert peak_lag > 0, "the worker never reported a backlog"
    assert peak_rss < RSS_LIMIT_BYTES, f"worker RSS peaked at {peak_rss / 2**20:.0f} MiB"
