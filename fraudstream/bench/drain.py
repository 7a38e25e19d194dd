"""Backlog drain: how fast an app empties a backlog of replayed transactions.

The app is started on empty topics, made ready and probed end to end (with two workers,
until both own partitions); then the backlog is written in one burst from a warm producer
and the app drains it. Throughput runs from the receipt of output number `head` (a small
share, the start-up transient) to the last output, counted downstream per transaction id.
Event times are the simulation's (replay), so a worker may wait for merchant snapshots as it
would in any replay.
"""

from __future__ import annotations

import time
from typing import Any

from fraudstream.bench import steps
from fraudstream.bench.apps import AppSpec, wait_ready
from fraudstream.bench.session import INPUT, OUTPUT, Session
from fraudstream.bench.stats import rate_after_head, rounded

BACKLOG_LINGER_MS = 20  # batch like a replay does: few, large batches on the broker


def drain(session: Session, spec: AppSpec) -> dict[str, Any]:
    config = session.config
    session.progress(f"drain: {spec.title}, {config.backlog:,} transactions")
    topics = session.topics(*spec.roles)
    pool = session.records[: config.probe * 4]
    backlog = session.records[config.probe * 4 : config.probe * 4 + config.backlog]
    receiver = session.receiver(topics[OUTPUT])
    try:
        with spec.launch(session, topics) as apps, steps.explained(apps):
            wait_ready(apps, config.timeout_s)
            producer = session.producer(BACKLOG_LINGER_MS)
            warm_up_s = steps.probe(
                producer, receiver, topics[INPUT], pool[: config.probe], apps, config.timeout_s
            )
            group: dict[str, Any] = {}
            if spec.workers > 1:
                group = steps.settle_group(
                    producer, receiver, topics[INPUT], pool[config.probe :], apps, config.timeout_s
                )
            watch = steps.Watch(session, apps).start()
            began = time.monotonic()
            producer.burst(topics[INPUT], backlog)
            producer.flush()
            burst_s = time.monotonic() - began
            wanted = [r.transaction_id for r in backlog]
            receiver.wait_for(
                wanted, config.timeout_s + len(backlog) / 200, steps.all_alive(apps), "outputs"
            )
            watched = watch.stop(len(backlog))
    finally:
        receiver.stop()
    received = receiver.receipts.first
    times = sorted(received[t] for t in wanted)
    head = int(len(times) * config.drain_head_fraction)
    return {
        "app": spec.title,
        "workers": spec.workers,
        "backlog": len(backlog),
        "head": head,
        "tx_per_s": rounded(rate_after_head(times, head)),
        "window_s": round(times[-1] - times[head], 3),
        "burst_s": round(burst_s, 3),
        "producer_warm_up_s": round(warm_up_s, 3),
        "duplicates": receiver.receipts.duplicates,
        "group": group,
        **watched,
    }
