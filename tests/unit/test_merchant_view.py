"""The stream's replicated merchant view gives the offline feature builder's numbers."""

from __future__ import annotations

import zlib

from models.features import FEATURE_NAMES, FeatureBuilder, fraud_label_times
from models.merchant_window import MERCHANT_WINDOWS, snapshot_boundary
from models.user_window import HOUR_MS
from schemas.events import epoch_ms
from stream_app.merchant_view import MerchantView
from tests.conftest import SimulatedData

PARTITIONS = 4


def partition_of(user_id: str) -> int:
    return zlib.crc32(user_id.encode()) % PARTITIONS


def offline_merchant_values(data: SimulatedData) -> dict[str, tuple[tuple[float, ...], ...]]:
    """transaction id -> (merchant counts, merchant fraud rates) as `fraudstream score` has them."""
    rows = FeatureBuilder(fraud_labels=fraud_label_times(data.labels)).build(data.transactions)
    counts = [FEATURE_NAMES.index(f"merchant_tx_count_{w.name}") for w in MERCHANT_WINDOWS]
    rates = [FEATURE_NAMES.index(f"merchant_fraud_rate_{w.name}") for w in MERCHANT_WINDOWS]
    return {
        tx.transaction_id: (tuple(row[counts]), tuple(row[rates]))
        for tx, row in zip(data.transactions, rows.matrix, strict=True)
    }


def test_view_equals_offline_with_transactions_and_labels_interleaved(
    small_dataset: SimulatedData,
) -> None:
    expected = offline_merchant_values(small_dataset)
    view = MerchantView()
    view.set_partitions(transactions=PARTITIONS, labels=2)
    # Merge transactions and labels in time order as a live system would see them.
    events = [(epoch_ms(tx.timestamp), 0, tx) for tx in small_dataset.transactions]
    events += [(epoch_ms(lab.labeled_at), 1, lab) for lab in small_dataset.labels if lab.labeled_at]
    events.sort(key=lambda e: (e[0], e[1]))
    pending = []  # transactions read by the replica, waiting to be scored
    checked = 0
    for when, kind, event in events:
        if kind == 0:
            view.add_transaction(
                partition_of(event.user_id), event.transaction_id, event.merchant_id, when
            )
            pending.append(event)
        else:
            view.add_label(
                zlib.crc32(event.transaction_id.encode()) % 2,
                event.transaction_id,
                event.is_fraud,
                when,
            )
        # Score whatever is final now, in order (a scorer waits for the rest).
        while pending:
            tx = pending[0]
            got = view.lookup(snapshot_boundary(epoch_ms(tx.timestamp)), tx.merchant_id)
            if got is None:
                break
            assert (got.tx_counts, got.fraud_rates()) == expected[tx.transaction_id], tx
            pending.pop(0)
            checked += 1
    for source in range(PARTITIONS):
        view.set_idle("transactions", source)
    for source in range(2):
        view.set_idle("labels", source)
    for tx in pending:
        got = view.lookup(snapshot_boundary(epoch_ms(tx.timestamp)), tx.merchant_id)
        assert got is not None
        assert (got.tx_counts, got.fraud_rates()) == expected[tx.transaction_id]
        checked += 1
    assert checked == len(small_dataset.transactions)
    assert view.stale_requests == 0
    assert view.counts.late_events == 0 and view.counts.late_labels == 0
    assert_history_bounded(view)


def assert_history_bounded(view: MerchantView) -> None:
    """Per merchant, at most one entry older than the retained hours (plus the pruning slack)."""
    current = view.counts.boundary_ms
    assert current is not None
    horizon = current // HOUR_MS - view.max_snapshots - max(24, view.max_snapshots // 2)
    for merchant, (hours, values) in view._timeline.items():
        assert hours == sorted(hours) and len(hours) == len(values), merchant
        assert sum(1 for h in hours if h < horizon) <= 1, (merchant, hours[:5], horizon)


def view_of_everything(data: SimulatedData, max_snapshots: int) -> MerchantView:
    """A view that has read all of `data` on one partition each, then gone idle."""
    view = MerchantView(max_snapshots=max_snapshots)
    view.set_partitions(transactions=1, labels=1)
    for tx in data.transactions:
        view.add_transaction(0, tx.transaction_id, tx.merchant_id, epoch_ms(tx.timestamp))
    for lab in data.labels:
        view.add_label(0, lab.transaction_id, lab.is_fraud, epoch_ms(lab.labeled_at))
    view.set_idle("transactions", 0)
    view.set_idle("labels", 0)
    return view


def test_scorers_behind_by_less_than_the_retained_hours_get_exact_values(
    small_dataset: SimulatedData,
) -> None:
    """One partition far ahead of another (a backlog read partition by partition): the one
    behind asks for boundaries the view has passed, and gets them without a rebuild."""
    expected = offline_merchant_values(small_dataset)
    view = view_of_everything(small_dataset, max_snapshots=72)
    transactions = small_dataset.transactions
    last = snapshot_boundary(epoch_ms(transactions[-1].timestamp))
    ahead = last - 80 * HOUR_MS
    early = [tx for tx in transactions if snapshot_boundary(epoch_ms(tx.timestamp)) <= ahead]
    for tx in early:  # the partition ahead walks the view forward hour by hour
        assert view.lookup(snapshot_boundary(epoch_ms(tx.timestamp)), tx.merchant_id)
    behind = [
        tx for tx in early if snapshot_boundary(epoch_ms(tx.timestamp)) > ahead - 70 * HOUR_MS
    ]
    assert len(behind) > 50
    for tx in behind:  # the partition behind asks for boundaries up to 70 hours old
        got = view.lookup(snapshot_boundary(epoch_ms(tx.timestamp)), tx.merchant_id)
        assert got is not None
        assert (got.tx_counts, got.fraud_rates()) == expected[tx.transaction_id], tx
    assert view.stale_requests == 0
    assert_history_bounded(view)


def test_a_snapshot_is_not_final_until_every_partition_passed_it() -> None:
    view = MerchantView(allowed_lateness_ms=0)
    view.set_partitions(transactions=2)
    t0 = 1_700_000_000_000 // HOUR_MS * HOUR_MS
    view.add_transaction(0, "a", "m1", t0 + 3 * HOUR_MS)
    assert view.watermark() is None  # partition 1 has said nothing yet
    assert view.lookup(t0 + HOUR_MS, "m1") is None
    view.add_transaction(1, "b", "m1", t0 + HOUR_MS + 5)
    assert view.watermark() == t0 + HOUR_MS + 5
    assert view.lookup(t0 + HOUR_MS, "m1") is not None
    assert view.lookup(t0 + 2 * HOUR_MS, "m1") is None  # partition 1 is behind it
    view.set_idle("transactions", 1)
    assert view.lookup(t0 + 2 * HOUR_MS, "m1") is not None


def test_lateness_holds_the_watermark_back() -> None:
    view = MerchantView(allowed_lateness_ms=10 * 60_000)
    view.set_partitions(transactions=1)
    t0 = 1_700_000_000_000 // HOUR_MS * HOUR_MS
    view.add_transaction(0, "a", "m1", t0 + 5 * 60_000)
    assert view.lookup(t0, "m1") is None  # a transaction from before t0 may still come
    view.add_transaction(0, "b", "m1", t0 - 60_000)  # 6 minutes late: within lateness
    view.add_transaction(0, "c", "m1", t0 + 11 * 60_000)
    got = view.lookup(t0, "m1")
    assert got is not None and got.tx_counts == (1, 1, 1)


def test_an_old_boundary_is_rebuilt_exactly_after_the_view_moved_on(
    small_dataset: SimulatedData,
) -> None:
    expected = offline_merchant_values(small_dataset)
    view = view_of_everything(small_dataset, max_snapshots=4)
    last = snapshot_boundary(epoch_ms(small_dataset.transactions[-1].timestamp))
    assert view.snapshot_for(last) is not None
    # A partition re-read after a restart asks for boundaries up to two days behind the view.
    behind = [
        tx
        for tx in small_dataset.transactions
        if snapshot_boundary(epoch_ms(tx.timestamp)) >= last - 2 * 24 * HOUR_MS
    ]
    assert len(behind) > 40
    for tx in behind[:: len(behind) // 40]:
        got = view.lookup(snapshot_boundary(epoch_ms(tx.timestamp)), tx.merchant_id)
        assert got is not None
        assert (got.tx_counts, got.fraud_rates()) == expected[tx.transaction_id]
    assert view.stale_requests > 0
    assert view.inexact_requests == 0
    # Older than the retained events: answered from what is left, and counted as such.
    first = small_dataset.transactions[0]
    if snapshot_boundary(epoch_ms(first.timestamp)) < last - 33 * 24 * HOUR_MS:
        assert view.lookup(snapshot_boundary(epoch_ms(first.timestamp)), first.merchant_id)
        assert view.inexact_requests == 1
