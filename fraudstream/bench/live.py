"""Live-paced latency: end to end, producer send → output received, at a steady offered rate.

Like production: a history (shifted by whole days to end before now) is sent and fully
processed first, so users and merchants have a past and the app is warm; then transactions
are sent on a seeded Poisson schedule, each stamped with event time = now as it is sent, from
a producer warmed before anything is timed. The first `head_s` of live traffic is discarded.
The raw pass-through and the pipeline get the identical schedule and records, so the
pipeline's excess over the raw pass-through is what the pipeline adds (broker, producer
linger and downstream fetch wait are in both).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from fraudstream.bench import scrape, steps
from fraudstream.bench.apps import AppSpec, Running, wait_ready
from fraudstream.bench.lag import LagSample, keep_up
from fraudstream.bench.matching import match
from fraudstream.bench.pacing import Pacer, arrival_offsets
from fraudstream.bench.receiver import Receiver
from fraudstream.bench.sender import SendLog, StampingProducer, send_live
from fraudstream.bench.session import INPUT, OUTPUT, Session
from fraudstream.bench.stats import latency_summary, percentile
from fraudstream.bench.traffic import LiveTemplate, shifted, whole_days_before

SAMPLE_EVERY_S = 0.25
SCRAPES_EVERY = 4  # samples per scrape of the workers' /metrics (once a second)


def live(session: Session, spec: AppSpec, rate: float) -> dict[str, Any]:
    config = session.config
    head, measured = config.live_count(rate)
    session.progress(f"live: {spec.title} at {rate:,.0f} tx/s for {config.seconds:g} s")
    history_end = config.probe + config.history
    history = session.records[:history_end]
    history = shifted(history, whole_days_before(history, int(time.time() * 1000)))
    templates = [
        LiveTemplate(r) for r in session.records[history_end : history_end + head + measured]
    ]
    topics = session.topics(*spec.roles)
    receiver = session.receiver(topics[OUTPUT])
    try:
        with spec.launch(session, topics) as apps, steps.explained(apps):
            wait_ready(apps, config.timeout_s)
            # One producer for the phase, warmed by the probe's first record.
            producer = session.producer(config.linger_ms)
            steps.probe(
                producer, receiver, topics[INPUT], history[: config.probe], apps, config.timeout_s
            )
            rest = history[config.probe :]
            producer.burst(topics[INPUT], rest)
            producer.flush()
            wanted = [r.transaction_id for r in rest]
            receiver.wait_for(wanted, config.timeout_s, steps.all_alive(apps), "history outputs")
            offsets = arrival_offsets(len(templates), rate, config.arrivals, config.seed)
            watch = steps.Watch(session, apps).start()
            log, samples = _send_and_sample(
                producer, receiver, topics[INPUT], templates, offsets, apps
            )
            lost_note = _wait_rest(receiver, log.ids, config.timeout_s, apps)
            watched = watch.stop(len(log.ids))
    finally:
        receiver.stop()
    return _summarise(spec, rate, head, log, receiver, samples, lost_note, producer) | watched


def _send_and_sample(
    producer: StampingProducer,
    receiver: Receiver,
    topic: str,
    templates: list[LiveTemplate],
    offsets: list[float],
    apps: list[Running],
) -> tuple[SendLog, list[LagSample]]:
    """Send on a thread; meanwhile sample sent vs received (and the worker's lag gauge)."""
    log = SendLog()
    errors: list[BaseException] = []
    stopping = threading.Event()

    def send() -> None:
        try:
            send_live(producer, topic, templates, Pacer(offsets), log, should_stop=stopping.is_set)
            producer.flush()
        except BaseException as exc:  # reported below
            errors.append(exc)

    base = receiver.receipts.count()
    sender = threading.Thread(target=send, name="bench-live-sender", daemon=True)
    began = time.monotonic()
    sender.start()
    samples: list[LagSample] = []
    alive = steps.all_alive(apps)
    while sender.is_alive():
        time.sleep(SAMPLE_EVERY_S)
        known: list[float] = []
        if len(samples) % SCRAPES_EVERY == 0:  # the gauge moves every 2 s: scrape sparingly
            gauges = [scrape.lag_messages(s) for s in steps.scrape_all(apps)]
            known = [g for g in gauges if g is not None]
        samples.append(
            LagSample(
                time.monotonic() - began,
                len(log.sent_at),
                receiver.receipts.count() - base,
                sum(known) if known else None,
            )
        )
        if not alive():
            stopping.set()
    sender.join()
    if errors:
        raise RuntimeError(f"live producer failed: {errors[0]}")
    if not alive():
        raise RuntimeError("an app under test exited during the live phase")
    return log, samples


def _wait_rest(
    receiver: Receiver, ids: list[str], timeout_s: float, apps: list[Running]
) -> str | None:
    """Wait for the remaining outputs; what is still missing then counts as lost."""
    try:
        receiver.wait_for(ids, timeout_s, steps.all_alive(apps))
    except TimeoutError as exc:
        return str(exc)
    return None


def _summarise(
    spec: AppSpec,
    rate: float,
    head: int,
    log: SendLog,
    receiver: Receiver,
    samples: list[LagSample],
    lost_note: str | None,
    producer: StampingProducer,
) -> dict[str, Any]:
    received = receiver.receipts.first
    matched = match(log.ids, log.sent_at, received, head)
    lateness_ms = [value * 1000 for value in log.lateness_s[head:]]
    arrived = [received[t] for t in log.ids if t in received]
    return {
        "app": spec.title,
        "offered_per_s": rate,
        "head": matched.head,
        "measured": matched.measured,
        "latency_ms": latency_summary(matched.latencies_ms, matched.lost),
        "duplicates": receiver.receipts.duplicates,
        "lost_note": lost_note,
        "generator": {
            "producer_warm_up_s": None
            if producer.warm_up_s is None
            else round(producer.warm_up_s, 3),
            "lateness_ms_p50": round(percentile(lateness_ms, 50), 3) if lateness_ms else None,
            "lateness_ms_p99": round(percentile(lateness_ms, 99), 3) if lateness_ms else None,
            "sent_s": round(log.sent_at[-1] - log.sent_at[0], 3) if log.sent_at else None,
        },
        "drain_after_s": round(max(arrived) - log.sent_at[-1], 3) if arrived else None,
        "keep_up": keep_up(samples, rate),
    }
