"""Merchant state at a payments team's size, in process: tens of millions of events over 90 days
through the per-partition hourly partials and the combined history, as the workers run them.

What must hold: the state (stored pairs) and the process's RSS stop growing once the longest
window (30 days) plus the lookback (14 days) is full, whatever the number of events; a lookup
13 days behind the final boundary (a lagging partition, a restart) bisects series no longer at
day 89 than at day 45, and is exact. The curve is printed (`pytest -s`); the 20-million-event
run is `slow` (`make scale`), the default suite runs the same code with 2 million.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import pytest

from fraudstream.bench.procfs import rss_bytes
from models.merchant_history import DEFAULT_LOOKBACK_HOURS, MerchantHistory
from models.merchant_partials import PartitionHours, Source
from models.merchant_window import MERCHANT_WINDOWS
from models.user_window import HOUR_MS

DAYS = 90
PARTITIONS = 4
MERCHANTS = 4_000
SAMPLED = 40
"""Merchants whose hourly counts are also kept densely, to check lookups against."""
DAY_MS = 24 * HOUR_MS
LATENESS_MS = 600_000
FULL_DAY = (max(w.hours for w in MERCHANT_WINDOWS) + DEFAULT_LOOKBACK_HOURS) // 24 + 1
"""From this day on nothing more may be kept: the longest window and the lookback are full."""


@dataclass
class Day:
    day: int
    events: int
    entries: int
    open_entries: int
    series: int
    rss_mib: float
    lookup_us: float


def run(events: int, seed: int = 7) -> list[Day]:
    rng = np.random.default_rng(seed)
    names = [f"m{i:05d}" for i in range(MERCHANTS)]
    tx = [PartitionHours(Source("tx", p), LATENESS_MS) for p in range(PARTITIONS)]
    labels = [PartitionHours(Source("labels", p), LATENESS_MS) for p in range(PARTITIONS)]
    history = MerchantHistory([h.source for h in tx + labels])
    dense = np.zeros((DAYS * 24, SAMPLED), dtype=np.int64)
    offsets = [0] * PARTITIONS
    label_offsets = [0] * PARTITIONS
    due: dict[int, list[tuple[int, str, int]]] = {}
    per_day = events // DAYS
    curve: list[Day] = []
    for day in range(DAYS):
        start = day * DAY_MS
        times = np.sort(rng.integers(start, start + DAY_MS, per_day))
        merchants = rng.zipf(1.3, per_day) % MERCHANTS  # a few big merchants, a long tail
        partition = rng.integers(0, PARTITIONS, per_day)
        sampled = merchants < SAMPLED
        np.add.at(dense, (times[sampled] // HOUR_MS, merchants[sampled]), 1)
        for p in range(PARTITIONS):
            chosen = partition == p
            hours, offset = tx[p], offsets[p]
            for t, m in zip(times[chosen].tolist(), merchants[chosen].tolist(), strict=True):
                hours.add(offset, t, names[m])
                offset += 1
            offsets[p] = offset
        frauds = np.flatnonzero(rng.random(per_day) < 0.002)
        delays = rng.integers(DAY_MS, 7 * DAY_MS, frauds.size)
        for i, delay in zip(frauds.tolist(), delays.tolist(), strict=True):
            known = int(times[i]) + delay
            due.setdefault(known // DAY_MS, []).append((known, names[merchants[i]], int(times[i])))
        for j, (known, merchant, t) in enumerate(sorted(due.pop(day, []))):
            p = j % PARTITIONS
            labels[p].add(label_offsets[p], known, (merchant, t // HOUR_MS))
            label_offsets[p] += 1
        for p in range(PARTITIONS):  # genuine labels carry time only
            labels[p].add(label_offsets[p], start + DAY_MS - 1, None)
            label_offsets[p] += 1
        del times, merchants, partition, sampled
        for hours in tx + labels:
            final = hours.take_final()
            if final is not None:
                history.apply(final)
        assert history.final is not None
        old = max(history.final - 13 * 24, 1)
        began = time.perf_counter()
        for name in names[:1000]:
            history.values(old, name)
        lookup_us = (time.perf_counter() - began) * 1e3
        for m in range(SAMPLED):
            got = history.values(old, names[m]).tx_counts
            want = tuple(int(dense[max(old - w.hours, 0) : old, m].sum()) for w in MERCHANT_WINDOWS)
            assert got == want, f"day {day + 1}, merchant {names[m]}: {got} != {want}"
        rss = rss_bytes(os.getpid())
        assert rss is not None
        curve.append(
            Day(
                day=day + 1,
                events=sum(offsets),
                entries=history.entries(),
                open_entries=sum(h.open_entries() for h in tx + labels),
                series=history.longest_series(),
                rss_mib=rss / 2**20,
                lookup_us=lookup_us,
            )
        )
    assert history.inexact == 0
    return curve


def show(curve: list[Day]) -> None:
    print(
        f"\n{'day':>4} {'events':>12} {'entries':>9} {'open':>6} {'series':>6} {'RSS MiB':>8} "
        f"{'lookup us':>9}"
    )
    for d in curve:
        if d.day % 5 == 0 or d.day in (1, 31, FULL_DAY, 89):
            print(
                f"{d.day:>4} {d.events:>12,} {d.entries:>9,} {d.open_entries:>6,} "
                f"{d.series:>6,} {d.rss_mib:>8.1f} {d.lookup_us:>9.2f}"
            )


@pytest.mark.parametrize(
    "events", [2_000_000, pytest.param(20_000_000, marks=pytest.mark.slow)], ids=["2M", "20M"]
)
def test_merchant_state_stops_growing_after_the_longest_window(events: int) -> None:
    curve = run(events)
    show(curve)
    full = curve[FULL_DAY - 1]
    late = curve[FULL_DAY:]
    assert curve[-1].events >= events * 0.99
    assert full.entries > curve[FULL_DAY // 2].entries, "the state did not fill up: test is void"
    assert max(d.entries for d in late) <= full.entries * 1.03, (
        f"stored pairs kept growing after day {FULL_DAY}: {full.entries:,} -> "
        f"{max(d.entries for d in late):,}"
    )
    assert max(d.series for d in late) <= full.series, "an old-boundary lookup got costlier"
    assert curve[88].series <= curve[30].series * 1.5, (
        f"lookup series at day 89 ({curve[88].series}) vs day 31 ({curve[30].series})"
    )
    assert max(d.open_entries for d in curve) <= MERCHANTS * 2 * 2 * PARTITIONS
    growth = max(d.rss_mib for d in late) - full.rss_mib
    assert growth < 24, f"RSS grew {growth:.1f} MiB after day {FULL_DAY} with the state flat"
