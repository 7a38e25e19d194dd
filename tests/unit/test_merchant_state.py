"""Merchant state from hourly partials: equal to the definition, whatever the number of
partitions, the order in which their partials arrive, or the restarts of their owners."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.merchant_history import MerchantHistory
from models.merchant_partials import FinalHours, PartitionHours, Source, hour_of
from models.merchant_window import MERCHANT_WINDOWS, boundary_hour
from models.user_window import HOUR_MS, MINUTE_MS

T0 = 1_709_251_200_000  # 2024-03-01T00:00:00Z
LATENESS = 10 * MINUTE_MS


@dataclass(frozen=True)
class Event:
    ts: int
    merchant: str
    labeled: int | None  # when its fraud label became known (None: genuine)


def brute_force(events: list[Event], boundary: int, merchant: str) -> tuple[tuple[int, ...], ...]:
    """(tx counts, fraud counts known before the boundary) per window, from the definition."""
    counts, frauds = [], []
    for window in MERCHANT_WINDOWS:
        inside = [
            e
            for e in events
            if e.merchant == merchant and boundary - window.hours <= hour_of(e.ts) < boundary
        ]
        counts.append(len(inside))
        frauds.append(
            sum(1 for e in inside if e.labeled is not None and hour_of(e.labeled) < boundary)
        )
    return tuple(counts), tuple(frauds)


steps = st.lists(
    st.tuples(
        st.one_of(
            st.integers(0, 59).map(lambda m: m * MINUTE_MS),
            st.integers(1, 30).map(lambda h: h * HOUR_MS),
            st.integers(1, 40).map(lambda d: d * 24 * HOUR_MS),
        ),
        st.sampled_from(["a", "b", "c"]),
        # None: genuine; otherwise the fraud's reporting delay (minutes to weeks).
        st.one_of(st.none(), st.integers(1, 60 * 24 * 20).map(lambda m: m * MINUTE_MS)),
    ),
    min_size=1,
    max_size=150,
)


def events_of(raw: list[tuple[int, str, int | None]]) -> list[Event]:
    events, ts = [], T0
    for delta, merchant, delay in raw:
        ts += delta
        events.append(Event(ts, merchant, None if delay is None else ts + delay))
    return events


@settings(max_examples=300, deadline=None)
@given(steps)
def test_one_ordered_partition_equals_the_definition(
    raw: list[tuple[int, str, int | None]],
) -> None:
    """What offline scoring does: one source, transactions in event-time order."""
    events = events_of(raw)
    source = Source("tx", 0)
    history = MerchantHistory([source])
    hours = PartitionHours(source, LATENESS)
    for e in events:
        if e.labeled is not None:
            history.schedule_fraud(e.merchant, hour_of(e.ts), hour_of(e.labeled))
    for offset, e in enumerate(events):
        assert hours.add(offset, e.ts, e.merchant)
        final = hours.take_final()
        if final is not None:
            history.apply(final)
        boundary = boundary_hour(e.ts)
        for merchant in "abc":
            got = history.values(boundary, merchant)
            seen = events[:offset]
            assert (got.tx_counts, got.fraud_counts) == brute_force(seen, boundary, merchant)
    assert history.inexact == 0


def label_partials(events: list[Event], partitions: int) -> list[tuple[int, Event]]:
    """Each fraud label on a label partition, in labeled_at order (as a fraud-ops feed sends)."""
    frauds = sorted((e for e in events if e.labeled is not None), key=lambda e: e.labeled or 0)
    return [(i % partitions, e) for i, e in enumerate(frauds)]


@settings(max_examples=200, deadline=None)
@given(steps, st.integers(1, 4), st.integers(1, 3), st.randoms(use_true_random=False))
def test_partitions_progressing_unevenly_combine_to_the_definition(
    raw: list[tuple[int, str, int | None]], tx_parts: int, label_parts: int, rng: random.Random
) -> None:
    """The stream: transactions and labels spread over partitions whose owners publish their
    final hours at their own pace, in any interleaving. Every boundary the combination calls
    final equals the definition over all the events."""
    events = events_of(raw)
    sources = [Source("tx", p) for p in range(tx_parts)] + [
        Source("labels", q) for q in range(label_parts)
    ]
    owners = {s: PartitionHours(s, LATENESS) for s in sources}
    queues: dict[Source, list[tuple[int, Event]]] = {s: [] for s in sources}
    for e in events:
        queues[Source("tx", rng.randrange(tx_parts))].append((e.ts, e))
    for q, e in label_partials(events, label_parts):
        queues[Source("labels", q)].append((e.labeled or 0, e))
    history = MerchantHistory(sources, lookback_hours=10**6)  # every boundary below is exact
    offsets = Counter[Source]()
    # A partition's finals arrive in the order its owner published them; across partitions in
    # any order (the log interleaves owners, and a worker applies its own at once).
    finals: dict[Source, list[FinalHours]] = {s: [] for s in sources}
    while any(queues.values()):
        source = rng.choice([s for s in sources if queues[s]])
        for _ in range(rng.randint(1, 5)):
            if not queues[source]:
                break
            at, e = queues[source].pop(0)
            key = e.merchant if source.kind == "tx" else (e.merchant, hour_of(e.ts))
            assert owners[source].add(offsets[source], at, key)
            offsets[source] += 1
        final = owners[source].take_final()
        if final is not None:
            finals[source].append(final)
        waiting = [s for s in sources if finals[s]]
        if waiting and rng.random() < 0.5:
            history.apply(finals[rng.choice(waiting)].pop(0))
    for source in sources:
        for final in finals[source]:
            history.apply(final)
    for owner in owners.values():  # the end of the traffic: every partition goes idle
        owner.close_before(hour_of(events[-1].ts) + 2)
        final = owner.take_final()
        if final is not None:
            history.apply(final)
    assert history.final is not None and history.final >= boundary_hour(events[-1].ts)
    for boundary in {boundary_hour(e.ts) for e in events}:
        assert boundary <= history.final
        for merchant in "abc":
            got = history.values(boundary, merchant)
            assert (got.tx_counts, got.fraud_counts) == brute_force(events, boundary, merchant)


@settings(max_examples=200, deadline=None)
@given(steps, st.integers(0, 150), st.integers(1, 7), st.randoms(use_true_random=False))
def test_a_restored_owner_publishes_what_the_first_would_have(
    raw: list[tuple[int, str, int | None]], crash_at: int, batch: int, rng: random.Random
) -> None:
    """A new owner restores from the last published final and re-reads from its resume offset:
    its final hours are the ones an owner that never stopped would have published, and late
    records are counted once."""
    events = events_of(raw)
    # Out of order by up to two hours: some records within the lateness, some late.
    records = [(e.ts - rng.choice([0, 0, 5 * MINUTE_MS, 2 * HOUR_MS]), e.merchant) for e in events]
    source = Source("tx", 0)

    def run(owner: PartitionHours, start: int, stop: int) -> list[FinalHours]:
        finals = []
        for offset in range(start, stop):
            owner.add(offset, *records[offset])
            if offset % batch == batch - 1:
                final = owner.take_final()
                if final is not None:
                    finals.append(final)
        final = owner.take_final()
        return finals + ([final] if final is not None else [])

    never_stopped = PartitionHours(source, LATENESS)
    straight = run(never_stopped, 0, len(records))
    first = PartitionHours(source, LATENESS)
    crash = min(crash_at, len(records))
    published = run(first, 0, crash)
    if not published:
        return  # nothing was published: a new owner starts from the beginning
    restored = PartitionHours.restore(published[-1], LATENESS)
    resumed = run(restored, published[-1].resume_offset, len(records))
    assert merged(published + resumed) == merged(straight)
    assert restored.late == never_stopped.late
    assert restored.resume_offset() == never_stopped.resume_offset()


def merged(finals: list[FinalHours]) -> tuple[int | None, dict[int, Counter[object]]]:
    """The hours a list of finals closes, as the combination sees them (repeats ignored)."""
    closed: int | None = None
    hours: dict[int, Counter[object]] = {}
    for final in finals:
        for hour, counts in final.hours.items():
            if closed is None or hour >= closed:
                hours.setdefault(hour, Counter()).update(counts)
        closed = final.closed_before if closed is None else max(closed, final.closed_before)
    return closed, hours


def test_a_record_behind_its_partitions_closure_is_late_and_not_counted() -> None:
    hours = PartitionHours(Source("tx", 0), LATENESS)
    assert hours.add(0, T0 + 5 * HOUR_MS, "a")
    assert not hours.add(1, T0, "a")  # five hours behind, far beyond the lateness
    assert hours.add(2, T0 + 5 * HOUR_MS - 5 * MINUTE_MS, "a")  # within the lateness
    assert hours.late == 1


def test_an_idle_partition_stops_holding_the_others_back() -> None:
    busy, idle = Source("tx", 0), Source("tx", 1)
    history = MerchantHistory([busy, idle])
    owner = PartitionHours(busy, LATENESS)
    owner.add(0, T0, "a")
    owner.add(1, T0 + 3 * HOUR_MS, "a")
    final = owner.take_final()
    assert final is not None
    history.apply(final)
    assert history.final is None  # partition 1 has said nothing yet
    quiet = PartitionHours(idle, LATENESS)
    newest = history.newest_closed()
    assert newest is not None and quiet.close_before(newest)
    closed = quiet.take_final()
    assert closed is not None
    history.apply(closed)
    assert history.final == hour_of(T0 + 3 * HOUR_MS - LATENESS)
    assert history.values(history.final, "a").tx_counts == (1, 1, 1)
    assert not quiet.add(0, T0, "b")  # the idle partition's old news is late now


def test_an_old_boundary_costs_a_few_lookups_and_memory_stays_bounded() -> None:
    """Ninety days at one transaction per merchant and hour: the state stops growing after the
    longest window plus the lookback, and a boundary two weeks back is still exact."""
    source = Source("tx", 0)
    history = MerchantHistory([source])
    owner = PartitionHours(source, LATENESS)
    sizes = []
    offset = 0
    for hour in range(90 * 24):
        for merchant in range(20):
            owner.add(offset, T0 + hour * HOUR_MS + merchant * MINUTE_MS, f"m{merchant}")
            offset += 1
        final = owner.take_final()
        if final is not None:
            history.apply(final)
        if hour % 24 == 0:
            sizes.append(history.entries())
    assert history.final is not None
    old = history.final - 13 * 24
    assert history.values(old, "m3").tx_counts == (24, 7 * 24, 30 * 24)
    assert history.inexact == 0
    settled = sizes[45:]
    assert max(settled) - min(settled) <= 20 * 24 * 2, "the state kept growing"
    history.values(history.final - 60 * 24, "m3")
    assert history.inexact == 1
    # A micro-batch's memo: the same numbers, one lookup per (boundary, merchant), and every
    # request for a boundary beyond the kept history still counted.
    values = history.memo()
    first = values(old, "m3")
    assert values(old, "m3") is first
    assert (first.tx_counts, first.fraud_counts) == (
        history.values(old, "m3").tx_counts,
        history.values(old, "m3").fraud_counts,
    )
    assert first.features() == (24.0, 168.0, 720.0, 0.0, 0.0, 0.0)
    values(history.final - 60 * 24, "m3")
    values(history.final - 60 * 24, "m3")
    assert history.inexact == 3


def test_a_boundary_that_is_not_final_is_refused() -> None:
    history = MerchantHistory([Source("tx", 0)])
    with pytest.raises(ValueError, match="not final"):
        history.values(0, "m")
