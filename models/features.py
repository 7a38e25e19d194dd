"""THE feature definition: the single module used by training, offline scoring and the stream.

A feature vector is assembled from three parts, each defined in its own module:
* the transaction itself (amount, hour of day, weekend and night flags, in its own UTC offset),
* the user's windows (`models.user_window`), exact up to and including the transaction,
* the merchant's counts and fraud rate (from labels known by then) at the snapshot boundary
  behind it (`models.merchant_window`).

`FeatureBuilder` runs both kinds of state over transactions in order; it is what offline
training and scoring use, and the stream calls the same `UserWindows.observe`, `boundary_hour`,
`MerchantHistory.values` and `assemble` per transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from models.fraud_labels import FraudLabel
from models.merchant_history import MerchantHistory
from models.merchant_partials import PartitionHours, Source, hour_of
from models.merchant_window import MERCHANT_WINDOWS, MerchantValues, boundary_hour
from models.seen_ids import DEFAULT_DEDUPE_HORIZON_MS, SeenIds
from models.user_window import (
    DEFAULT_ALLOWED_LATENESS_MS,
    HOUR_MS,
    USER_WINDOWS,
    UserWindows,
    UserWindowValues,
)
from schemas.errors import InputError
from schemas.events import Transaction, epoch_ms

NIGHT_END_HOUR = 6
"""Transactions from 00:00 to 05:59 local time are night transactions."""


def _names() -> tuple[str, ...]:
    names = ["amount"]
    for window in USER_WINDOWS:
        names += [
            f"user_tx_count_{window.name}",
            f"user_amount_sum_{window.name}",
            f"user_amount_mean_{window.name}",
        ]
    names += [
        "user_amount_to_mean_30d",
        "user_seconds_since_prev",
        "user_distinct_merchants_24h",
        "hour_of_day",
        "is_weekend",
        "is_night",
    ]
    names += [f"merchant_tx_count_{window.name}" for window in MERCHANT_WINDOWS]
    names += [f"merchant_fraud_rate_{window.name}" for window in MERCHANT_WINDOWS]
    return tuple(names)


FEATURE_NAMES: tuple[str, ...] = _names()
"""Feature names in model column order (stored with every model version)."""

_MEAN_30D = [w.name for w in USER_WINDOWS].index("30d")


def amount_cents(amount: float) -> int:
    """Amounts are aggregated in integer cents so sums are exact and order-independent."""
    return round(amount * 100)


def assemble(tx: Transaction, user: UserWindowValues, merchant: MerchantValues) -> list[float]:
    """The feature vector of one transaction, in FEATURE_NAMES order."""
    amount = amount_cents(tx.amount) / 100.0
    row = [amount]
    for count, cents in zip(user.counts, user.sums_cents, strict=True):
        total = cents / 100.0
        row += [float(count), total, total / count]
    mean_30d = user.sums_cents[_MEAN_30D] / 100.0 / user.counts[_MEAN_30D]
    local = tx.timestamp
    row += [
        amount / mean_30d if mean_30d > 0 else 1.0,
        user.seconds_since_prev,
        float(user.distinct_merchants),
        float(local.hour),
        1.0 if local.weekday() >= 5 else 0.0,
        1.0 if local.hour < NIGHT_END_HOUR else 0.0,
    ]
    row += merchant.features()
    return row


@dataclass(frozen=True)
class FeatureRows:
    """Features of a sequence of transactions, aligned with their input order."""

    matrix: np.ndarray  # float64, shape (n, len(FEATURE_NAMES)); NaN rows for duplicates
    too_late: np.ndarray  # bool, shape (n,)
    duplicate: np.ndarray  # bool, shape (n,): an id the user's state had already applied


OFFLINE_SOURCE = Source("tx", 0)
"""Offline, every transaction comes from one ordered input."""


class FeatureBuilder:
    """Offline feature computation: user and merchant state over transactions in order.

    Feed transactions in event-time order (as `fraudstream score` and training do). Merchant
    state goes through the very code the stream uses — hourly partials closed by the allowed
    lateness (`models.merchant_partials`) combined into snapshots (`models.merchant_history`) —
    so every snapshot a transaction needs is final when it is used, exactly as in the stream.
    `frauds` (`models.fraud_labels.attributed_frauds`) feed the merchant risk features, each from
    the first boundary after its `labeled_ms`. A transaction id the user's state applied within
    `dedupe_horizon_ms` is a duplicate (`models.seen_ids`): it counts for its merchant (merchant
    counts are per message, as in the stream) but not in the user's windows, and gets no row.
    """

    def __init__(
        self,
        allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS,
        frauds: Iterable[FraudLabel] | None = None,
        dedupe_horizon_ms: int = DEFAULT_DEDUPE_HORIZON_MS,
    ) -> None:
        if not 0 <= allowed_lateness_ms <= HOUR_MS:
            raise InputError(
                f"allowed lateness must be between 0 and 1 h (got {allowed_lateness_ms} ms): "
                "merchant snapshots close an hour behind the transaction"
            )
        self.allowed_lateness_ms = allowed_lateness_ms
        self.dedupe_horizon_ms = dedupe_horizon_ms
        self.users: dict[str, tuple[UserWindows, SeenIds]] = {}
        self.merchants = MerchantHistory([OFFLINE_SOURCE])
        self._hours = PartitionHours(OFFLINE_SOURCE, allowed_lateness_ms)
        for fraud in frauds or ():
            self.merchants.schedule_fraud(
                fraud.merchant_id, hour_of(fraud.tx_ms), hour_of(fraud.labeled_ms)
            )
        self._position = 0

    def observe(self, tx: Transaction) -> tuple[list[float], bool] | None:
        """(row, too_late) of the next transaction in event-time order; None for a duplicate."""
        ts = epoch_ms(tx.timestamp)
        position = self._position
        self._position += 1
        if not self._hours.add(position, ts, tx.merchant_id):
            raise InputError(
                f"transaction {tx.transaction_id} is more than the allowed lateness behind "
                "earlier ones: feed transactions in event-time order"
            )
        final = self._hours.take_final()
        if final is not None:
            self.merchants.apply(final)
        merchant = self.merchants.values(boundary_hour(ts), tx.merchant_id)
        state = self.users.get(tx.user_id)
        if state is None:
            state = self.users[tx.user_id] = (UserWindows(), SeenIds())
        windows, seen = state
        if seen.first_offset(tx.transaction_id) is not None:
            return None
        user = windows.observe(
            ts, amount_cents(tx.amount), tx.merchant_id, self.allowed_lateness_ms
        )
        newest = windows.last_ts if windows.last_ts is not None else ts
        seen.add(tx.transaction_id, ts, position, newest, self.dedupe_horizon_ms)
        return assemble(tx, user, merchant), user.too_late

    def build(self, transactions: Iterable[Transaction]) -> FeatureRows:
        rows: list[list[float]] = []
        late: list[bool] = []
        duplicate: list[bool] = []
        missing = [float("nan")] * len(FEATURE_NAMES)
        for tx in transactions:
            observed = self.observe(tx)
            row, too_late = observed if observed is not None else (missing, False)
            rows.append(row)
            late.append(too_late)
            duplicate.append(observed is None)
        matrix = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))
        return FeatureRows(
            matrix=matrix,
            too_late=np.asarray(late, dtype=bool),
            duplicate=np.asarray(duplicate, dtype=bool),
        )


def sort_by_event_time(transactions: Sequence[Transaction]) -> list[Transaction]:
    """Stable event-time order (ties keep input order), as offline processing requires."""
    return sorted(transactions, key=lambda tx: epoch_ms(tx.timestamp))
