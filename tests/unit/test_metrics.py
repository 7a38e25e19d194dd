"""Bulk histogram observations give what one `observe` per value gives."""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client import CollectorRegistry, Histogram

from stream_app.metrics import LATENCY_BUCKETS, observe_all


def _samples(histogram: Histogram) -> dict[str, float]:
    return {
        f"{s.name}{s.labels.get('le', '')}": s.value
        for metric in histogram.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def _pair() -> tuple[Histogram, Histogram]:
    return (
        Histogram("one", "by one", buckets=LATENCY_BUCKETS, registry=CollectorRegistry()),
        Histogram("all", "in bulk", buckets=LATENCY_BUCKETS, registry=CollectorRegistry()),
    )


def test_bulk_observations_land_in_the_same_buckets_as_single_ones() -> None:
    rng = random.Random(7)
    # bucket bounds exactly, values between them, beyond the last bound, and zero
    values = [*LATENCY_BUCKETS, 0.0, 11.0, math.nan, *(rng.expovariate(10) for _ in range(5000))]
    one, bulk = _pair()
    for value in values:
        one.observe(value)
    observe_all(bulk, values[:2000])
    observe_all(bulk, values[2000:])
    expected, got = _samples(one), _samples(bulk)
    assert {k: v for k, v in got.items() if not k.endswith("_sum")} == {
        k.replace("one", "all"): v for k, v in expected.items() if not k.endswith("_sum")
    }
    assert math.isnan(expected["one_sum"])  # `observe` lets one NaN spoil the sum for ever
    assert not math.isnan(got["all_sum"])


def test_bulk_sum_matches_single_observations() -> None:
    one, bulk = _pair()
    values = [0.001 * i for i in range(1000)]
    for value in values:
        one.observe(value)
    observe_all(bulk, values)
    assert _samples(bulk)["all_sum"] == pytest.approx(_samples(one)["one_sum"], rel=1e-12)


def test_nothing_observed_changes_nothing() -> None:
    _, bulk = _pair()
    observe_all(bulk, [])
    assert _samples(bulk)["all_count"] == 0
