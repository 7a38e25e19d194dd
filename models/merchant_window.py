"""Per-merchant activity and risk, served as snapshots at hour boundaries.

A stream keyed by user cannot read merchant-keyed state deterministically while it is still
changing, so merchant features are defined *as of a snapshot boundary behind the transaction*:

    B = boundary(t) = start of the event-time hour before the one containing t
    merchant_tx_count_W(t)  = the merchant's transactions with event time in [B - W, B)
    merchant_fraud_count_W  = those of them with a fraud label whose labeled_at < B
    merchant_fraud_rate_W   = merchant_fraud_count_W / merchant_tx_count_W (0 if no transactions)

Only labels known at the boundary count, which is what makes the risk features honest: the
model never sees a label before it could have been reported (the Fraud Detection Handbook's
terminal risk features, with real label times instead of a fixed delay). A transaction never
sees its own label: its hour enters the windows after its own boundary.

A fraud label counts only with its merchant and transaction time (`models.fraud_labels`).

A snapshot for boundary B is final once no transaction or label older than B can still arrive
(every input partition's newest event time minus the allowed lateness has passed B). The
partials (`models.merchant_partials`) and their combination (`models.merchant_history`) are the
single implementation, run by the stream and, fed in event-time order, offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.user_window import HOUR_MS


@dataclass(frozen=True)
class MerchantWindow:
    name: str
    hours: int


MERCHANT_WINDOWS: tuple[MerchantWindow, ...] = (
    MerchantWindow("1d", 24),
    MerchantWindow("7d", 7 * 24),
    MerchantWindow("30d", 30 * 24),
)


@dataclass(slots=True)  # not frozen: see "Hot value objects", models/stages.py
class MerchantValues:
    """A merchant's numbers at one snapshot boundary, per MERCHANT_WINDOWS."""

    tx_counts: tuple[int, ...]
    fraud_counts: tuple[int, ...]
    _features: tuple[float, ...] | None = field(default=None, compare=False, repr=False)

    def features(self) -> tuple[float, ...]:
        """The merchant's part of a feature row: counts, then fraud rates (computed once: the
        transactions of a merchant in one hour share these values)."""
        if self._features is None:
            self._features = (*map(float, self.tx_counts), *self.fraud_rates())
        return self._features

    def fraud_rates(self) -> tuple[float, ...]:
        """Frauds per transaction, at most 1 (labels can name transactions counted late)."""
        return tuple(
            min(1.0, f / c) if c else 0.0
            for f, c in zip(self.fraud_counts, self.tx_counts, strict=True)
        )


EMPTY = MerchantValues((0,) * len(MERCHANT_WINDOWS), (0,) * len(MERCHANT_WINDOWS))


def snapshot_boundary(ts_ms: int) -> int:
    """The boundary (ms, hour-aligned) whose snapshot serves a transaction at `ts_ms`."""
    return boundary_hour(ts_ms) * HOUR_MS


def boundary_hour(ts_ms: int) -> int:
    """The boundary (an hour index) whose snapshot serves a transaction at `ts_ms`: the start of
    the hour before the one containing it."""
    return ts_ms // HOUR_MS - 1
