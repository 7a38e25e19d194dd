"""Per-user event-time windows: compact, bounded, incremental state.

Definition (the brute-force reference in tests/unit/test_features.py implements it literally):

* Time is cut into buckets per window: 1 h uses minute buckets, 24 h hour buckets, 7 d and 30 d
  day buckets (UTC, aligned on the Unix epoch). A window of n buckets anchored at time `a` holds
  the events whose bucket lies in `[bucket(a) - n + 1, bucket(a)]`: the anchor's own bucket
  up to and including the current transaction, plus the n - 1 whole buckets before it.
* The anchor is the transaction's own event time. A transaction more than the allowed lateness
  behind the newest event already seen for the user ("too late") is anchored at that newest time
  instead and is not stored: its windows are already partly expired.
* Every feature includes the current transaction.

The state keeps only the buckets a future transaction can still need (those not older than
the user's newest event time minus the allowed lateness minus the longest window), so it is
bounded by the windows, not by the user's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

DEFAULT_ALLOWED_LATENESS_MS = 10 * MINUTE_MS
"""How far behind a user's newest event a transaction may arrive and still update its windows."""


@dataclass(frozen=True)
class WindowSpec:
    name: str
    length_ms: int
    bucket_ms: int

    @property
    def n_buckets(self) -> int:
        return self.length_ms // self.bucket_ms


USER_WINDOWS: tuple[WindowSpec, ...] = (
    WindowSpec("1h", HOUR_MS, MINUTE_MS),
    WindowSpec("24h", DAY_MS, HOUR_MS),
    WindowSpec("7d", 7 * DAY_MS, DAY_MS),
    WindowSpec("30d", 30 * DAY_MS, DAY_MS),
)
DISTINCT_MERCHANTS_WINDOW = USER_WINDOWS[1]
"""Distinct merchants are counted over the 24 h window (its hour buckets keep merchant ids)."""

# Levels: one bucket dict per distinct bucket size, kept as long as its longest window needs.
_LEVEL_BUCKETS: tuple[int, ...] = tuple(sorted({w.bucket_ms for w in USER_WINDOWS}))
_LEVEL_SPAN: tuple[int, ...] = tuple(
    max(w.n_buckets for w in USER_WINDOWS if w.bucket_ms == b) for b in _LEVEL_BUCKETS
)
_WINDOW_LEVEL: tuple[int, ...] = tuple(_LEVEL_BUCKETS.index(w.bucket_ms) for w in USER_WINDOWS)
_MERCHANT_LEVEL = _LEVEL_BUCKETS.index(DISTINCT_MERCHANTS_WINDOW.bucket_ms)

NO_PREVIOUS = -1.0
"""`seconds_since_prev` of a user's first transaction."""

# A bucket is [count, amount in cents] (+ list of merchant ids on the merchant level).
Bucket = list[Any]


@dataclass(frozen=True, slots=True)
class UserWindowValues:
    """What the user's state says about one transaction (it included)."""

    counts: tuple[int, ...]  # per USER_WINDOWS
    sums_cents: tuple[int, ...]  # per USER_WINDOWS
    distinct_merchants: int
    seconds_since_prev: float
    too_late: bool  # arrived beyond the allowed lateness: scored, not stored


class UserWindows:
    """Incremental window state of one user. Serialisable with `to_json` / `from_json`."""

    __slots__ = ("last_ts", "levels")

    def __init__(self) -> None:
        self.last_ts: int | None = None
        self.levels: list[dict[int, Bucket]] = [{} for _ in _LEVEL_BUCKETS]

    # -- the one operation ------------------------------------------------------------------
    def observe(
        self,
        ts_ms: int,
        amount_cents: int,
        merchant_id: str,
        allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS,
    ) -> UserWindowValues:
        """Window values for a transaction, including it; stores it unless it is too late."""
        last = self.last_ts
        too_late = last is not None and ts_ms < last - allowed_lateness_ms
        anchor = last if too_late and last is not None else ts_ms
        if last is None:
            since_prev = NO_PREVIOUS
        else:
            since_prev = (ts_ms - last) / 1000.0 if ts_ms >= last else 0.0

        counts, sums, merchants = self._aggregate(anchor)
        merchants.add(merchant_id)
        values = UserWindowValues(
            counts=tuple(c + 1 for c in counts),
            sums_cents=tuple(s + amount_cents for s in sums),
            distinct_merchants=len(merchants),
            seconds_since_prev=since_prev,
            too_late=too_late,
        )
        if not too_late:
            self._store(ts_ms, amount_cents, merchant_id, allowed_lateness_ms)
        return values

    # -- internals --------------------------------------------------------------------------
    def _aggregate(self, anchor: int) -> tuple[list[int], list[int], set[str]]:
        counts = [0] * len(USER_WINDOWS)
        sums = [0] * len(USER_WINDOWS)
        merchants: set[str] = set()
        m_lo = anchor // DISTINCT_MERCHANTS_WINDOW.bucket_ms - DISTINCT_MERCHANTS_WINDOW.n_buckets
        for i, window in enumerate(USER_WINDOWS):
            hi = anchor // window.bucket_ms
            lo = hi - window.n_buckets  # exclusive
            level = self.levels[_WINDOW_LEVEL[i]]
            c = s = 0
            for key, bucket in level.items():
                if lo < key <= hi:
                    c += bucket[0]
                    s += bucket[1]
            counts[i] = c
            sums[i] = s
        m_hi = anchor // DISTINCT_MERCHANTS_WINDOW.bucket_ms
        for key, bucket in self.levels[_MERCHANT_LEVEL].items():
            if m_lo < key <= m_hi:
                merchants.update(bucket[2])
        return counts, sums, merchants

    def _store(self, ts_ms: int, amount_cents: int, merchant_id: str, lateness_ms: int) -> None:
        if self.last_ts is None or ts_ms > self.last_ts:
            self.last_ts = ts_ms
        horizon = self.last_ts - lateness_ms
        for index, bucket_ms in enumerate(_LEVEL_BUCKETS):
            level = self.levels[index]
            key = ts_ms // bucket_ms
            bucket = level.get(key)
            if bucket is None:
                bucket = [0, 0, []] if index == _MERCHANT_LEVEL else [0, 0]
                level[key] = bucket
                # A new bucket is the only moment the level can have outgrown its span.
                oldest = horizon // bucket_ms - _LEVEL_SPAN[index] + 1
                for stale in [k for k in level if k < oldest]:
                    del level[stale]
            bucket[0] += 1
            bucket[1] += amount_cents
            if index == _MERCHANT_LEVEL and merchant_id not in bucket[2]:
                bucket[2].append(merchant_id)

    # -- serialisation (Faust table values) -------------------------------------------------
    def to_json(self) -> list[Any]:
        """Compact JSON-ready form: [last_ts, [[key, count, cents(, merchants)], ...] per level]."""
        return [self.last_ts, *[[[k, *b] for k, b in sorted(lvl.items())] for lvl in self.levels]]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> UserWindows:
        state = cls()
        state.last_ts = data[0]
        for index, rows in enumerate(data[1:]):
            state.levels[index] = {
                row[0]: [row[1], row[2], list(row[3])] if index == _MERCHANT_LEVEL else row[1:]
                for row in rows
            }
        return state

    def bucket_count(self) -> int:
        """Number of stored buckets (the state's size, for tests and metrics)."""
        return sum(len(level) for level in self.levels)
