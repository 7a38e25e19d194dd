"""The pieces of the cluster's drift monitor: exact sums, hourly closure, the hour-ordered join."""

from __future__ import annotations

import doctest
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import models.drift
import models.drift_join
import models.drift_records
import models.drift_signals
import models.hourly_closure
import models.score_columns
from models.drift_join import HourlyJoin
from models.drift_signals import BucketSums
from models.feedback import Scored
from models.hourly_closure import HourlyClosure

values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@pytest.mark.parametrize(
    "module",
    [
        models.drift,
        models.drift_join,
        models.drift_records,
        models.drift_signals,
        models.hourly_closure,
        models.score_columns,
    ],
)
def test_the_usage_examples_in_docstrings_run(module: object) -> None:
    result = doctest.testmod(module, raise_on_error=False)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0


# -- exact sums --------------------------------------------------------------------------------
@given(rows=st.lists(st.tuples(values, values | st.none()), max_size=60), seed=st.integers(0, 99))
def test_bucket_sums_do_not_depend_on_order_or_grouping(
    rows: list[tuple[float, float | None]], seed: int
) -> None:
    whole = BucketSums(2)
    for row in rows:
        whole.add(row)
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    cut = len(shuffled) // 3
    left, right = BucketSums(2), BucketSums(2)
    for row in shuffled[:cut]:
        left.add(row)
    for row in shuffled[cut:]:
        right.add(row)
    right.merge(left)
    assert right.stats() == whole.stats()
    assert whole.stats().counts == (len(rows), sum(v is not None for _, v in rows))
    exact = math.fsum(v for v, _ in rows)
    assert whole.stats().totals[0] == pytest.approx(exact, abs=1e-9 * max(1, len(rows)))


def test_float_sums_would_depend_on_the_order() -> None:
    # Why the sums are integers: plain float addition is not associative.
    assert (0.1 + 0.2) + 0.3 != 0.1 + (0.2 + 0.3)
    a, b = BucketSums(1), BucketSums(1)
    for v in (0.1, 0.2, 0.3):
        a.add((v,))
    for v in (0.3, 0.2, 0.1):
        b.add((v,))
    assert a.stats() == b.stats()


# -- hourly closure ----------------------------------------------------------------------------
def _records(seed: int, partitions: int, n: int) -> list[tuple[int, int]]:
    """(partition, time) in arrival order; times move forward with jitter, a few far behind."""
    rng = random.Random(seed)
    clocks = [0] * partitions
    out = []
    for _ in range(n):
        p = rng.randrange(partitions)
        clocks[p] += rng.randrange(0, 400)
        behind = rng.choice([0, 0, 0, 30, 150, 1_500])  # up to 15 hours of 100
        out.append((p, max(0, clocks[p] - behind)))
    return out


def _run(
    closure: HourlyClosure[list[int]], records: list[tuple[int, int, int]]
) -> list[tuple[int, list[list[int]]]]:
    popped = []
    for p, offset, t in records:
        payload = closure.add(p, offset, t)
        if payload is not None:
            payload.append(t)
        while (hour := closure.pop(closure.ready_through())) is not None:
            popped.append(hour)
    return popped


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), partitions=st.integers(1, 4), cut=st.floats(0.0, 1.0))
def test_a_closure_rebuilt_from_its_resume_point_closes_the_same_hours(
    seed: int, partitions: int, cut: float
) -> None:
    arrivals = _records(seed, partitions, 300)
    offsets = [0] * partitions
    records = []
    for p, t in arrivals:
        records.append((p, offsets[p], t))
        offsets[p] += 1

    def fresh(resume: object = None) -> HourlyClosure[list[int]]:
        return HourlyClosure(partitions, 100, 50, list, resume)  # type: ignore[arg-type]

    whole = fresh()
    expected = _run(whole, records)
    k = int(cut * len(records))
    first = fresh()
    before = _run(first, records[:k])
    resume = first.resume()
    again = fresh(resume)
    start = {p: w.offset for p, w in enumerate(resume.partitions)}
    after = _run(again, [r for r in records if r[1] >= start[r[0]]])
    assert before + after == expected


def test_late_records_are_counted_and_their_hour_is_not_reopened() -> None:
    closure: HourlyClosure[list[int]] = HourlyClosure(1, 100, 10, list)
    for offset, t in enumerate((5, 50, 120)):
        payload = closure.add(0, offset, t)
        assert payload is not None
        payload.append(t)
    assert closure.pop(closure.ready_through()) == (0, [[5, 50]])
    assert closure.add(0, 3, 99) is None  # hour 0 closed: late
    assert closure.add(0, 4, 105) == [120]  # within the lateness of 120: still counts
    assert closure.late == 1


def test_an_idle_partition_stops_holding_the_topic_back() -> None:
    closure: HourlyClosure[list[int]] = HourlyClosure(2, 100, 0, list)
    for offset, t in enumerate((10, 150, 250)):
        closure.add(0, offset, t)
    assert closure.ready_through() == -math.inf  # partition 1 has said nothing yet
    closure.set_idle(1)
    assert closure.ready_through() == 1
    assert closure.add(1, 0, 20) == [] and closure.ready_through() == -1  # it speaks again
    closure.set_idle(0)
    closure.set_idle(1)
    assert closure.ready_through() == 1  # all quiet: as far as the furthest has come


# -- join --------------------------------------------------------------------------------------
def _scored(hour: int) -> Scored:
    return Scored(hour * 3_600_000, 0.5, True, "v1")


def test_a_label_meets_only_scores_of_its_hour_or_before() -> None:
    join = HourlyJoin(horizon_hours=100, max_scores=100)
    join.insert(3, [("a", _scored(3))])
    join.insert(7, [("b", _scored(7)), ("a", _scored(7))])  # a repeated id keeps the first
    assert join.counts.duplicate_scores == 1
    assert join.claim("b", label_hour=6) is None
    assert join.claim("b", label_hour=7) == _scored(7)
    assert join.claim("a", label_hour=7) == _scored(3)
    assert join.claim("a", label_hour=9) == "repeat"
    with pytest.raises(ValueError, match="after a later one"):
        join.insert(5, [])


@given(
    sizes=st.lists(st.integers(0, 6), min_size=1, max_size=30),
    steps=st.lists(st.integers(0, 40), min_size=1, max_size=6),
)
def test_expiry_up_to_an_hour_does_not_depend_on_the_expiries_before_it(
    sizes: list[int], steps: list[int]
) -> None:
    def build() -> HourlyJoin:
        join = HourlyJoin(horizon_hours=8, max_scores=10)
        for hour, size in enumerate(sizes):
            join.insert(hour, [(f"{hour}-{i}", _scored(hour)) for i in range(size)])
        return join

    target = max(steps)
    stepwise, direct = build(), build()
    for before in sorted(steps):
        stepwise.expire(before)
    direct.expire(target)
    assert len(stepwise) == len(direct)
    for hour, size in enumerate(sizes):
        for i in range(size):
            assert (stepwise.claim(f"{hour}-{i}", 10**6) is None) == (
                direct.claim(f"{hour}-{i}", 10**6) is None
            )
    kept_before = sum(
        size
        for hour, size in enumerate(sizes)
        if hour < target and direct.claim(f"{hour}-0", 10**6) is not None
    )
    assert kept_before <= 10


_SCORE = {
    "transaction_id": "tx-1",
    "user_id": "u-1",
    "score": 0.25,
    "decision": "review",
    "model_version": "v3",
    "reasons": [],
    "features": {"amount": 12.5, "user_tx_count_1h": 3.0, "user_seconds_since_prev": -1.0},
    "event_time": "2024-03-01T12:30:00.123456+01:00",
    "scored_at": "2024-03-01T12:30:01Z",
    "latency_ms": 4.0,
}


@settings(max_examples=200, deadline=None)
@given(
    score=st.floats(0.0, 1.0),
    amount=st.floats(0.0, 1e9) | st.none(),
    decision=st.sampled_from(["approve", "review", "decline"]),
    shadow=st.none() | st.tuples(st.floats(0.0, 1.0), st.sampled_from(["approve", "decline"])),
)
def test_the_monitor_s_fast_score_reader_agrees_with_the_validated_one(
    score: float, amount: float | None, decision: str, shadow: tuple[float, str] | None
) -> None:
    import orjson

    from models.drift_config import DriftConfig
    from models.drift_records import ScoreInput
    from schemas.events import FraudScore

    record = dict(_SCORE, score=score, decision=decision, features=dict(_SCORE["features"]))
    if amount is None:
        del record["features"]["amount"]
    else:
        record["features"]["amount"] = amount
    if shadow is not None:
        record["shadow"] = {"model_version": "v4", "score": shadow[0], "decision": shadow[1]}
    value = orjson.dumps(record)
    config = DriftConfig()
    validated = ScoreInput.from_event(FraudScore.model_validate_json(value), config)
    assert ScoreInput.from_json(value, config) == validated


@pytest.mark.parametrize(
    "change",
    [
        {"score": 1.5},
        {"score": "high"},
        {"decision": "maybe"},
        {"features": []},
        {"event_time": "2024-03-01T12:30:00"},
        {"event_time": 17},
        {"model_version": None},
        {"features": []},
        {"shadow": 3},
    ],
)
def test_the_fast_score_reader_refuses_what_is_not_a_score(change: dict[str, object]) -> None:
    import orjson

    from models.drift_config import DriftConfig
    from models.drift_records import ScoreInput

    with pytest.raises(ValueError, match="not a FraudScore"):
        ScoreInput.from_json(orjson.dumps(dict(_SCORE, **change)), DriftConfig())
    with pytest.raises(ValueError, match="not a FraudScore"):
        ScoreInput.from_json(b"\xff not json", DriftConfig())
