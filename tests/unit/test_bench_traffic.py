"""Traffic shapes and the live pacer: schedules checked with an injected clock, no sleeping."""

from __future__ import annotations

import itertools
import json
from datetime import datetime

import pytest

from fraudstream.bench.pacing import Pacer, arrival_offsets
from fraudstream.bench.sender import SendLog, send_live
from fraudstream.bench.traffic import (
    DAY_MS,
    LiveTemplate,
    Record,
    many_user_records,
    shifted,
    whole_days_before,
)
from schemas.events import Transaction

TEMPLATE = Record(
    "tx1",
    b"u1",
    b'{"transaction_id":"tx1","user_id":"u1","merchant_id":"m7","amount":12.5,'
    b'"currency":"EUR","timestamp":"2018-04-01T23:30:00+02:00"}',
    1522618200000,
)


class FakeClock:
    """A clock that only moves when someone sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_uniform_arrivals_are_evenly_spaced() -> None:
    assert arrival_offsets(4, 1000.0, "uniform") == pytest.approx([0.0, 0.001, 0.002, 0.003])
    assert arrival_offsets(0, 10.0, "uniform") == []


def test_poisson_arrivals_are_seeded_ordered_and_at_the_mean_rate() -> None:
    offsets = arrival_offsets(20_000, 1000.0, "poisson", seed=3)
    assert offsets == arrival_offsets(20_000, 1000.0, "poisson", seed=3)  # same for every app
    assert offsets != arrival_offsets(20_000, 1000.0, "poisson", seed=4)
    assert offsets[0] == 0.0
    assert all(b >= a for a, b in itertools.pairwise(offsets))
    assert offsets[-1] == pytest.approx(20.0, rel=0.03)  # 20k arrivals at 1k/s
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert max(gaps) > 5 * (1 / 1000.0)  # bursts and lulls, unlike a uniform schedule
    with pytest.raises(ValueError):
        arrival_offsets(3, 0.0, "poisson")


def test_pacer_sleeps_until_each_message_is_due() -> None:
    clock = FakeClock()
    pacer = Pacer([0.0, 0.5, 0.75], clock=clock, sleep=clock.sleep)
    with pytest.raises(RuntimeError):
        pacer.wait(0)
    pacer.start()
    assert [pacer.wait(i) for i in range(3)] == [0.0, 0.0, 0.0]
    assert clock.sleeps == pytest.approx([0.5, 0.25])
    assert clock.now == pytest.approx(100.75)


def test_a_late_pacer_sends_at_once_and_reports_how_late() -> None:
    clock = FakeClock()
    pacer = Pacer([0.0, 0.1, 0.2, 0.3], clock=clock, sleep=clock.sleep)
    pacer.start()
    pacer.wait(0)
    clock.now += 0.25  # the generator was descheduled: 1 and 2 are overdue
    assert pacer.wait(1) == pytest.approx(0.15)
    assert pacer.wait(2) == pytest.approx(0.05)
    assert pacer.wait(3) == 0.0  # back on the schedule (open loop: the schedule does not move)
    assert clock.sleeps == pytest.approx([0.05])


class FakeProducer:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[tuple[str, bytes | None, bytes, int | None]] = []

    def send(self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int | None) -> float:
        self.sent.append((topic, key, value, timestamp_ms))
        return self.clock()


def test_send_live_stamps_each_send_with_the_wall_clock_as_event_time() -> None:
    clock = FakeClock()
    producer = FakeProducer(clock)
    templates = [LiveTemplate(TEMPLATE), LiveTemplate(TEMPLATE)]
    log = SendLog()
    walls = iter([1_750_000_000.123, 1_750_000_000.623])
    pacer = Pacer([0.0, 0.5], clock=clock, sleep=clock.sleep)
    send_live(producer, "in", templates, pacer, log, wall=lambda: next(walls))  # type: ignore[arg-type]
    assert log.ids == ["tx1", "tx1"]
    assert log.sent_at == pytest.approx([100.0, 100.5])
    assert log.lateness_s == [0.0, 0.0]
    (_, key, first, first_ms), (_, _, second, second_ms) = producer.sent
    assert key == b"u1"
    assert (first_ms, second_ms) == (1_750_000_000_123, 1_750_000_000_623)
    event = Transaction.model_validate_json(first)
    assert event.timestamp == datetime.fromisoformat("2025-06-15T15:06:40.123+00:00")
    assert json.loads(second)["merchant_id"] == "m7"


def test_history_is_shifted_by_whole_days_to_end_before_now() -> None:
    now_ms = TEMPLATE.timestamp_ms + 10 * DAY_MS + 3_600_000  # type: ignore[operator]
    shift = whole_days_before([TEMPLATE], now_ms)
    assert shift == 10 * DAY_MS
    (moved,) = shifted([TEMPLATE], shift)
    document = json.loads(moved.value)
    assert document["timestamp"] == "2018-04-11T23:30:00.000+02:00"  # same local time, offset
    assert moved.timestamp_ms == TEMPLATE.timestamp_ms + shift  # type: ignore[operator]
    assert moved.timestamp_ms < now_ms  # type: ignore[operator]
    Transaction.model_validate(document)
    assert whole_days_before([], now_ms) == 0


def test_many_user_records_add_one_new_user_each_ending_at_the_given_time() -> None:
    records = list(many_user_records([TEMPLATE], 3, end_ms=1522542300002))
    documents = [json.loads(r.value) for r in records]
    assert [d["user_id"] for d in documents] == [r.key.decode() for r in records if r.key]
    assert len({d["user_id"] for d in documents}) == 3
    assert [r.timestamp_ms for r in records] == [1522542300000, 1522542300001, 1522542300002]
    assert documents[1]["timestamp"] == "2018-04-01T00:25:00.001+00:00"
    assert all(d["merchant_id"] == "m7" and d["amount"] == 12.5 for d in documents)
    for document in documents:
        Transaction.model_validate(document)
    with pytest.raises(ValueError):
        next(many_user_records([], 1, 0))
