"""The drift monitor's runner without a broker: it idles unless leading, and an hour's events are
delivered before the log records the hour."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from models.cluster_drift import ClusterDetectors
from models.drift_records import decode_record
from stream_app.drift_log import LOG_KEY
from stream_app.drift_monitor import DriftMonitorRunner, MonitorConfig
from tests.drift_world import CONFIG
from tests.unit.test_cluster_drift import reference

SETTINGS = MonitorConfig(
    bootstrap="127.0.0.1:1",  # nothing listens: a runner that connects fails
    topic_scores="s",
    topic_labels="l",
    topic_drift="d",
    topic_inputs="i",
    fetch_wait_ms=5,
    allowed_lateness_ms=600_000,
    idle_partition_s=1.0,
    rejoin_hours=0,
    replication_factor=1,
    leader_poll_s=0.01,
)


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.calls.append(("send", (topic, key, value)))

    async def deliver(self) -> None:
        self.calls.append(("deliver", None))


def test_a_runner_that_does_not_lead_reads_nothing_and_stops_cleanly() -> None:
    asks: list[bool] = []

    def is_leader() -> bool:
        asks.append(False)
        return False

    async def scenario() -> DriftMonitorRunner:
        runner = DriftMonitorRunner(SETTINGS, RecordingSink(), is_leader, CONFIG)
        task = asyncio.create_task(runner.run())
        while len(asks) < 5:  # asked on every iteration
            await asyncio.sleep(0)
        await asyncio.wait_for(runner.stop(), timeout=10)
        await task
        return runner

    runner = asyncio.run(scenario())
    assert runner.counts["activations"] == 0 and not runner.leading
    assert runner.metrics() == {"leading": 0.0}


def test_an_hours_events_are_delivered_before_its_record_is_logged() -> None:
    sink = RecordingSink()
    runner = DriftMonitorRunner(SETTINGS, sink, lambda: True, CONFIG)
    records = reference().records
    runner._session = SimpleNamespace(detectors=ClusterDetectors(CONFIG))  # type: ignore[assignment]
    asyncio.run(runner._publish(records))
    expected = ClusterDetectors(CONFIG)
    logged: list[Any] = []
    sent: list[bytes] = []  # events sent since the last logged record
    delivered = True  # ... and delivered since the last of them was sent
    for kind, call in sink.calls:
        if kind == "deliver":
            delivered = True
            continue
        topic, key, value = call
        if topic == "d":
            sent.append(value)
            delivered = False
            continue
        assert (topic, key) == ("i", LOG_KEY)
        record = decode_record(value)
        events = [e.model_dump_json().encode() for e in expected.apply(record)]
        assert sent == events, f"hour {record.hour}: its events must come right before it"
        assert delivered, f"hour {record.hour} was logged before its events were delivered"
        logged.append(record)
        sent = []
    assert logged == records
    assert runner.counts["events_published"] == len(reference().events) == 3
    assert sink.calls[-1] == ("deliver", None)
