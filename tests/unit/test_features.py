"""Incremental features equal a brute-force recomputation of their definition."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.features import FEATURE_NAMES, FeatureBuilder, assemble
from models.fraud_labels import FraudLabel
from models.merchant_window import EMPTY
from models.user_window import (
    DISTINCT_MERCHANTS_WINDOW,
    HOUR_MS,
    MINUTE_MS,
    NO_PREVIOUS,
    USER_WINDOWS,
    UserWindows,
)
from schemas.errors import InputError
from schemas.events import Transaction, epoch_ms

T0 = epoch_ms(datetime(2024, 3, 1, tzinfo=UTC))
LATENESS = 10 * MINUTE_MS


@dataclass(frozen=True)
class Ev:
    ts: int
    cents: int
    merchant: str


def brute_force_user(events: list[Ev], lateness: int) -> list[tuple]:
    """The definition in user_window.py, computed from the whole history for every event."""
    accepted: list[Ev] = []
    last: int | None = None
    out = []
    for ev in events:
        too_late = last is not None and ev.ts < last - lateness
        anchor = last if too_late and last is not None else ev.ts
        pool = [*accepted, Ev(anchor, ev.cents, ev.merchant)]
        counts, sums = [], []
        for w in USER_WINDOWS:
            hi = anchor // w.bucket_ms
            inside = [e for e in pool if hi - w.n_buckets < e.ts // w.bucket_ms <= hi]
            counts.append(len(inside))
            sums.append(sum(e.cents for e in inside))
        w = DISTINCT_MERCHANTS_WINDOW
        hi = anchor // w.bucket_ms
        distinct = len({e.merchant for e in pool if hi - w.n_buckets < e.ts // w.bucket_ms <= hi})
        since = NO_PREVIOUS
        if last is not None:
            since = (ev.ts - last) / 1000.0 if ev.ts >= last else 0.0
        out.append((tuple(counts), tuple(sums), distinct, since, too_late))
        if not too_late:
            accepted.append(ev)
            last = ev.ts if last is None else max(last, ev.ts)
    return out


# Steps mostly forward (seconds to days), sometimes backwards (within and beyond lateness).
step = st.one_of(
    st.integers(0, 90).map(lambda s: s * 1000),
    st.integers(1, 180).map(lambda m: m * MINUTE_MS),
    st.integers(1, 40).map(lambda h: h * HOUR_MS),
    st.integers(1, 20).map(lambda m: -m * MINUTE_MS),
)
event_stream = st.lists(
    st.tuples(step, st.integers(1, 500_00), st.sampled_from(["m1", "m2", "m3", "m4", "m5"])),
    min_size=1,
    max_size=120,
)


def to_events(raw: list[tuple[int, int, str]]) -> list[Ev]:
    ts = T0
    events = []
    for delta, cents, merchant in raw:
        ts += delta
        events.append(Ev(ts, cents, merchant))
    return events


@settings(max_examples=300, deadline=None)
@given(event_stream, st.sampled_from([0, LATENESS, 2 * HOUR_MS]))
def test_user_windows_equal_brute_force(raw: list[tuple[int, int, str]], lateness: int) -> None:
    events = to_events(raw)
    expected = brute_force_user(events, lateness)
    state = UserWindows()
    for ev, want in zip(events, expected, strict=True):
        got = state.observe(ev.ts, ev.cents, ev.merchant, lateness)
        assert (
            got.counts,
            got.sums_cents,
            got.distinct_merchants,
            got.seconds_since_prev,
            got.too_late,
        ) == want


@settings(max_examples=100, deadline=None)
@given(event_stream, st.integers(0, 119))
def test_state_survives_serialisation(raw: list[tuple[int, int, str]], cut: int) -> None:
    """A worker restored from its changelog continues exactly as one that never stopped."""
    events = to_events(raw)
    cut = min(cut, len(events))
    straight, restored = UserWindows(), UserWindows()
    for ev in events[:cut]:
        straight.observe(ev.ts, ev.cents, ev.merchant, LATENESS)
        restored.observe(ev.ts, ev.cents, ev.merchant, LATENESS)
    restored = UserWindows.from_json(json.loads(json.dumps(restored.to_json())))
    for ev in events[cut:]:
        assert straight.observe(ev.ts, ev.cents, ev.merchant, LATENESS) == restored.observe(
            ev.ts, ev.cents, ev.merchant, LATENESS
        )


def test_state_is_bounded_by_the_windows() -> None:
    """Ten transactions a day for a year keep at most a window's worth of buckets."""
    state = UserWindows()
    for i in range(3650):
        state.observe(T0 + i * 144 * MINUTE_MS, 1000, f"m{i % 50}", LATENESS)
    # 60 minute + 24 hour + 30 day buckets, plus the lateness margin on each level.
    assert state.bucket_count() <= (60 + 10 + 1) + (24 + 1 + 1) + (30 + 1 + 1)
    assert len(json.dumps(state.to_json())) < 8000


def test_first_transaction_and_late_flag() -> None:
    state = UserWindows()
    first = state.observe(T0, 1234, "m1", LATENESS)
    assert first.counts == (1, 1, 1, 1)
    assert first.sums_cents == (1234,) * 4
    assert first.seconds_since_prev == NO_PREVIOUS
    state.observe(T0 + 2 * HOUR_MS, 100, "m2", LATENESS)
    within = state.observe(T0 + 2 * HOUR_MS - 5 * MINUTE_MS, 100, "m3", LATENESS)
    assert not within.too_late
    # Anchored at its own time: the later (already seen) 02:00 one is not in its windows.
    assert within.counts[0] == 1
    assert within.counts[1] == 2  # 24 h: the first one and itself
    beyond = state.observe(T0 + HOUR_MS, 100, "m4", LATENESS)
    assert beyond.too_late
    # Too late: not stored, so the next in-order transaction does not see it.
    after = state.observe(T0 + 2 * HOUR_MS + MINUTE_MS, 100, "m5", LATENESS)
    assert after.counts[1] == 4  # first, m2, m3, m5 in 24 h; not m4
    assert after.distinct_merchants == 4


def tx(
    i: int, when: datetime, amount: float, user: str = "u1", merchant: str = "m1"
) -> Transaction:
    return Transaction(
        transaction_id=f"t{i}", user_id=user, merchant_id=merchant, amount=amount, timestamp=when
    )


def test_feature_vector_layout_and_values() -> None:
    start = datetime(2024, 3, 2, 3, 0, tzinfo=UTC)  # a Saturday, 03:00 → weekend and night
    builder = FeatureBuilder()
    rows = builder.build(
        [
            tx(0, start, 10.0),
            tx(1, start + timedelta(minutes=30), 30.0, merchant="m2"),
            tx(2, start + timedelta(hours=3), 20.0, user="u2", merchant="m1"),
        ]
    )
    assert rows.matrix.shape == (3, len(FEATURE_NAMES))
    f = dict(zip(FEATURE_NAMES, rows.matrix[1], strict=True))
    assert f["amount"] == 30.0
    assert f["user_tx_count_1h"] == 2.0
    assert f["user_amount_sum_24h"] == 40.0
    assert f["user_amount_mean_30d"] == 20.0
    assert f["user_amount_to_mean_30d"] == 1.5
    assert f["user_seconds_since_prev"] == 1800.0
    assert f["user_distinct_merchants_24h"] == 2.0
    assert (f["hour_of_day"], f["is_weekend"], f["is_night"]) == (3.0, 1.0, 1.0)
    # m1's snapshot for a 06:00 transaction is the 05:00 boundary: it holds the 03:00 one.
    g = dict(zip(FEATURE_NAMES, rows.matrix[2], strict=True))
    assert (g["merchant_tx_count_1d"], g["merchant_tx_count_30d"]) == (1.0, 1.0)
    assert g["user_seconds_since_prev"] == NO_PREVIOUS
    assert not rows.too_late.any()


def test_merchant_fraud_rate_uses_only_labels_known_at_the_boundary() -> None:
    start = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
    reported = epoch_ms(start + timedelta(hours=5, minutes=30))  # known from 15:30
    builder = FeatureBuilder(frauds=[FraudLabel("m1", epoch_ms(start), reported)])
    txs = [
        tx(0, start, 10.0, user="u1"),
        tx(1, start + timedelta(hours=1), 10.0, user="u2"),
        tx(2, start + timedelta(hours=6, minutes=59), 10.0, user="u3"),  # boundary 15:00
        tx(3, start + timedelta(hours=7), 10.0, user="u4"),  # boundary 16:00
    ]
    rows = builder.build(txs).matrix
    rate = FEATURE_NAMES.index("merchant_fraud_rate_1d")
    count = FEATURE_NAMES.index("merchant_tx_count_1d")
    assert rows[0, rate] == 0.0  # its own label is never visible to it
    assert rows[2, rate] == 0.0  # boundary 15:00 < labeled_at: not known yet
    assert rows[2, count] == 2.0
    # Boundary 16:00: t0 and t1 are in the window (t2 at 16:59 is not), t0 is known as fraud.
    assert rows[3, count] == 2.0
    assert rows[3, rate] == 0.5


def test_local_time_features_use_the_transaction_offset() -> None:
    from datetime import timezone

    plus_nine = timezone(timedelta(hours=9))
    row, _ = FeatureBuilder().observe(tx(0, datetime(2024, 3, 4, 2, 0, tzinfo=plus_nine), 5.0))
    f = dict(zip(FEATURE_NAMES, row, strict=True))
    assert (f["hour_of_day"], f["is_night"], f["is_weekend"]) == (2.0, 1.0, 0.0)


def test_builder_refuses_out_of_order_merchant_snapshots() -> None:
    start = datetime(2024, 3, 2, 12, 0, tzinfo=UTC)
    builder = FeatureBuilder()
    builder.observe(tx(0, start, 5.0))
    with pytest.raises(InputError, match="event-time order"):
        builder.observe(tx(1, start - timedelta(hours=3), 5.0, user="u9"))


def test_assemble_matches_names() -> None:
    values = UserWindows().observe(T0, 500, "m", LATENESS)
    row = assemble(tx(0, datetime(2024, 3, 1, tzinfo=UTC), 5.0), values, EMPTY)
    assert len(row) == len(FEATURE_NAMES)
