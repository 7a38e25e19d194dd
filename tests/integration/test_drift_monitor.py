"""The cluster's drift monitor on a real broker: the events the pure core computes offline, once
each, across a failover to another monitor."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from confluent_kafka import Producer

from fraudstream.testing import Broker, collect
from models.drift_config import DAY_MS, HOUR_MS
from models.drift_records import ScoreHour, decode_record
from models.drift_replay import by_time, replay_offline
from schemas.events import DriftEvent, FraudScore, Label, epoch_ms
from stream_app.drift_log import ProducerSink
from stream_app.drift_monitor import DriftMonitorRunner, MonitorConfig
from tests.drift_world import CONFIG, LATENESS_MS, T0, inputs, world

pytestmark = pytest.mark.integration

SCORE_PARTITIONS, LABEL_PARTITIONS = 4, 3
CUT_MS = T0 + 3 * DAY_MS  # the failover happens once everything before it has been read


def _produce(
    broker: Broker, topic: str, parts: Sequence[Sequence[FraudScore | Label]], key: str
) -> int:
    producer = Producer({**broker.client_config(), "linger.ms": 50, "batch.num.messages": 5000})
    count = 0
    for partition, rows in enumerate(parts):
        for row in rows:
            producer.produce(
                topic,
                row.model_dump_json().encode(),
                str(getattr(row, key)).encode(),
                partition=partition,
            )
            producer.poll(0)
            count += 1
    assert producer.flush(30) == 0, "records left undelivered"
    return count


def _split(
    parts: list[list[Any]], before: Callable[[Any], bool]
) -> tuple[list[list[Any]], list[list[Any]]]:
    """Each partition cut at its first record that is not `before` the cut (order kept)."""
    heads, tails = [], []
    for rows in parts:
        k = next((i for i, row in enumerate(rows) if not before(row)), len(rows))
        heads.append(rows[:k])
        tails.append(rows[k:])
    return heads, tails


async def _until(
    condition: Callable[[], bool], timeout_s: float, what: str, info: Callable[[], Any]
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}: {info()}")
        await asyncio.sleep(0.05)


def _key(event: DriftEvent) -> tuple[Any, ...]:
    return (event.detected_at, event.detector, event.signal, event.model_version)


async def _failover(
    broker: Broker, config: MonitorConfig, rest: Callable[[], None], expected: Any
) -> dict[str, Any]:
    sink = ProducerSink(broker.bootstrap)
    await sink.start()
    a_leads = [True]
    first = DriftMonitorRunner(config, sink, lambda: a_leads[0], CONFIG)
    second_leads = [False]
    second = DriftMonitorRunner(config, sink, lambda: second_leads[0], CONFIG)
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:
        cut_hour_end = (CUT_MS // HOUR_MS - 1) * HOUR_MS
        await _until(
            lambda: (
                first.metrics().get("core.score_hours_through_ms", -1) >= cut_hour_end - HOUR_MS
            ),
            60,
            "the first monitor to close the hours before the cut",
            first.metrics,
        )
        a_leads[0] = False  # the lead moves: the first monitor must let go
        await _until(lambda: not first.leading, 30, "the first monitor to resign", first.metrics)
        logged_by_first = first.counts["inputs_logged"]
        second_leads[0] = True
        rest()  # the rest of the traffic arrives while the second one leads
        last_label_hour = expected.records[-1].resume.labels.through
        await _until(
            lambda: (
                second.metrics().get("core.label_hours_through_ms", -1)
                >= (last_label_hour + 1) * HOUR_MS
            ),
            90,
            "the second monitor to close every label hour",
            second.metrics,
        )
        second_metrics = second.metrics()
    finally:
        await first.stop()
        await second.stop()
        await asyncio.gather(*tasks)
        await sink.stop()
    return {  # counted once both have stopped: every publication is in
        "second": second_metrics,
        "logged_by_first": logged_by_first,
        "first_published": first.counts["events_published"],
        "second_published": second.counts["events_published"],
    }


def test_a_failover_to_another_monitor_publishes_the_offline_events_once(
    fraudstream_broker: Broker, fraudstream_topics: Callable[..., dict[str, str]]
) -> None:
    broker, fresh_topics = fraudstream_broker, fraudstream_topics
    w = world()
    scores_topic = fresh_topics("fraud-scores", partitions=SCORE_PARTITIONS)["fraud-scores"]
    labels_topic = fresh_topics("labels", partitions=LABEL_PARTITIONS)["labels"]
    drift_topic = fresh_topics("drift-events", partitions=2)["drift-events"]
    inputs_topic = f"t-{uuid.uuid4().hex[:8]}-drift-inputs"  # the monitor creates its log
    config = MonitorConfig(
        bootstrap=broker.bootstrap,
        topic_scores=scores_topic,
        topic_labels=labels_topic,
        topic_drift=drift_topic,
        topic_inputs=inputs_topic,
        fetch_wait_ms=5,
        allowed_lateness_ms=LATENESS_MS,
        idle_partition_s=0.5,
        rejoin_hours=192,
        replication_factor=1,
    )
    score_rows, label_rows = (
        w.score_partitions(SCORE_PARTITIONS),
        w.label_partitions(LABEL_PARTITIONS),
    )
    s_head, s_tail = _split(score_rows, lambda s: epoch_ms(s.event_time) < CUT_MS)
    l_head, l_tail = _split(label_rows, lambda lab: epoch_ms(lab.labeled_at) < CUT_MS)
    _produce(broker, scores_topic, s_head, "user_id")
    _produce(broker, labels_topic, l_head, "transaction_id")

    def rest() -> None:
        _produce(broker, scores_topic, s_tail, "user_id")
        _produce(broker, labels_topic, l_tail, "transaction_id")

    scores, labels = inputs(w, SCORE_PARTITIONS, LABEL_PARTITIONS)
    expected = replay_offline(
        by_time(scores, labels), SCORE_PARTITIONS, LABEL_PARTITIONS, CONFIG, LATENESS_MS
    )
    assert len(expected.events) == 3  # one per changed signal, all after the cut

    outcome = asyncio.run(_failover(broker, config, rest, expected))

    messages = collect(
        broker.client_config(), drift_topic, lambda m: len(m) >= 3, 30, "the drift events"
    )
    published = [DriftEvent.model_validate_json(m.value()) for m in messages]
    assert sorted(map(_key, published)) == sorted(map(_key, expected.events))  # once each
    assert sorted(published, key=_key) == sorted(expected.events, key=_key)  # statistics too
    assert outcome["first_published"] == 0 and outcome["second_published"] == 3
    second = outcome["second"]
    assert outcome["logged_by_first"] > 0
    assert second["inputs_replayed"] == outcome["logged_by_first"]
    assert second["silent_hours"] > 0 and second["replay_mismatches"] == 0
    assert second["core.late_scores"] == second["core.late_labels"] == 0

    log = collect(
        broker.client_config(),
        inputs_topic,
        lambda m: len(m) >= len(expected.records),
        30,
        "the log",
    )
    records = [decode_record(m.value()) for m in log]
    hours = [(type(r).__name__, r.hour) for r in records]
    assert len(hours) == len(set(hours)) == len(expected.records)  # no hour logged twice
    ours = {r.hour: r.stats for r in records if isinstance(r, ScoreHour)}
    theirs = {r.hour: r.stats for r in expected.records if isinstance(r, ScoreHour)}
    assert ours == theirs
    assert json.loads(log[-1].value())["kind"] in ("scores", "labels")
