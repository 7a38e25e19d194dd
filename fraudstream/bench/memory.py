"""Worker memory with many users: one transaction for each of `users` new users, RSS sampled.

Progress is read from the worker's own `fraudstream_transactions_scored_total`, so a million
scores need not be read back through the broker. Each user gets one transaction (the smallest
state a user can have; users with weeks of history hold more window buckets). The phase stops
early, and says so, if the worker stops making progress for `STALL_S` or grows past
`rss_abort_mb` (the machine is shared).
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from fraudstream.bench import scrape, steps
from fraudstream.bench.apps import Running, pipeline, wait_ready
from fraudstream.bench.procfs import rss_bytes
from fraudstream.bench.session import INPUT, Session
from fraudstream.bench.stats import rate_between, rounded
from fraudstream.bench.traffic import many_user_records

MB = 1024 * 1024
STALL_S = 60.0
USERS_LINGER_MS = 20


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / MB, 1)


def memory(session: Session) -> dict[str, Any]:
    config = session.config
    session.progress(f"memory: one transaction each for {config.users:,} new users")
    spec = pipeline(1)
    topics = session.topics(*spec.roles)
    with spec.launch(session, topics) as apps, steps.explained(apps):
        wait_ready(apps, config.timeout_s)
        worker = apps[0]
        port = worker.metrics_port
        if port is None:
            raise RuntimeError("the worker has no metrics port")
        producer = session.producer(USERS_LINGER_MS)
        probe = session.records[: config.probe]
        producer.warm(topics[INPUT], probe[0])
        producer.burst(topics[INPUT], probe[1:])
        producer.flush()
        steps.wait_scored(port, len(probe), config.timeout_s, worker.alive)
        rss_at_start = rss_bytes(worker.pid)
        records = many_user_records(
            session.records[:1000], config.users, int(time.time() * 1000) - 1000
        )
        stopping = threading.Event()
        sender = threading.Thread(
            target=lambda: producer.burst(
                topics[INPUT], itertools.takewhile(lambda _: not stopping.is_set(), records)
            ),
            daemon=True,
        )
        sender.start()
        result = _follow(session, worker, port, len(probe) + config.users, stopping)
        stopping.set()
        sender.join(timeout=60)
        producer.flush()
        samples = scrape.scrape(port)
    result["state_entries"] = scrape.by_label(samples, "fraudstream_state_entries", "kind")
    result["rss_mb_at_start"] = _mb(rss_at_start)
    result["users"] = config.users
    return result


def _follow(
    session: Session, worker: Running, port: int, target: int, stopping: threading.Event
) -> dict[str, Any]:
    """Sample RSS and the scored counter each second until done, stalled or too big."""
    peak = 0
    outcome = "complete"
    first_at: float | None = None
    scored = progressed = 0.0
    last_progress = time.monotonic()
    while True:
        time.sleep(1.0)
        if not worker.alive():
            raise RuntimeError("the worker exited during the memory phase")
        rss = rss_bytes(worker.pid) or 0
        peak = max(peak, rss)
        now_scored = scrape.total(scrape.scrape(port), scrape.SCORED_METRIC)
        now = time.monotonic()
        if now_scored is not None and now_scored > scored:
            if first_at is None:
                first_at, progressed = now, now_scored
            scored, last_progress = now_scored, now
        if scored >= target:
            break
        if rss > session.config.rss_abort_mb * MB:
            outcome = f"stopped: RSS above {session.config.rss_abort_mb:,} MB"
            break
        if now - last_progress > STALL_S:
            outcome = f"stopped: no progress for {STALL_S:.0f} s"
            break
    stopping.set()
    users_scored = int(scored) - (target - session.config.users)
    return {
        "outcome": outcome,
        "users_scored": max(0, users_scored),
        "tx_per_s": rounded(rate_between(first_at, last_progress, int(scored - progressed) + 1)),
        "rss_mb_peak": _mb(peak),
        "rss_mb_end": _mb(rss_bytes(worker.pid)),
        "broker_rss_mb": _mb(rss_bytes(session.broker_pid)) if session.broker_pid else None,
    }
