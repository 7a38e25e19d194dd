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

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
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
_DISTINCT_INDEX = USER_WINDOWS.index(DISTINCT_MERCHANTS_WINDOW)
# Per window, for the per-transaction loops (a property call per window and transaction was
# measurable): bucket size, number of buckets, whether it counts distinct merchants.
_WINDOW_BUCKET_MS: tuple[int, ...] = tuple(w.bucket_ms for w in USER_WINDOWS)
_WINDOW_N: tuple[int, ...] = tuple(w.n_buckets for w in USER_WINDOWS)
_IS_MERCHANT_WINDOW: tuple[bool, ...] = tuple(w is DISTINCT_MERCHANTS_WINDOW for w in USER_WINDOWS)
_DISTINCT_N = DISTINCT_MERCHANTS_WINDOW.n_buckets

_COUNT, _CENTS = itemgetter(1), itemgetter(2)
"""A running window's count and cents ([hi bucket, count, cents])."""

NO_PREVIOUS = -1.0
"""`seconds_since_prev` of a user's first transaction."""

# A bucket is [key, count, amount in cents] (+ list of merchant ids on the merchant level):
# its serialised form as it is, so writing a user's state builds no list per bucket.
Bucket = list[Any]


@dataclass(slots=True)  # not frozen: see "Hot value objects", models/stages.py
class UserWindowValues:
    """What the user's state says about one transaction (it included)."""

    counts: tuple[int, ...]  # per USER_WINDOWS
    sums_cents: tuple[int, ...]  # per USER_WINDOWS
    distinct_merchants: int
    seconds_since_prev: float
    too_late: bool  # arrived beyond the allowed lateness: scored, not stored


class UserWindows:
    """Incremental window state of one user. Serialisable with `to_json` / `from_json`.

    Buckets per level are the source of truth. On top of them each window keeps a running
    (count, cents) anchored at the newest event, slid forward as time advances, so an in-order
    transaction costs O(1) amortised; an out-of-order one scans the few stored buckets.
    """

    __slots__ = ("_merchant_run", "_run", "last_ts", "levels")

    def __init__(self) -> None:
        self.last_ts: int | None = None
        self.levels: list[dict[int, Bucket]] = [{} for _ in _LEVEL_BUCKETS]
        self._run: list[list[int]] | None = None  # per window: [hi bucket, count, cents]
        # merchant -> hour buckets of the running 24 h window holding it (a plain dict kept by
        # hand: Counter.subtract and unary + were ~7 % of the features stage in a profile).
        self._merchant_run: dict[str, int] = {}

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
        if last is None or ts_ms >= last:
            since = NO_PREVIOUS if last is None else (ts_ms - last) / 1000.0
            run = self._slide(ts_ms)
            self._store(ts_ms, amount_cents, merchant_id, allowed_lateness_ms)
            return UserWindowValues(
                counts=tuple(map(_COUNT, run)),
                sums_cents=tuple(map(_CENTS, run)),
                distinct_merchants=len(self._merchant_run),
                seconds_since_prev=since,
                too_late=False,
            )
        too_late = ts_ms < last - allowed_lateness_ms
        if too_late:
            # Anchored at the newest event: exactly the running windows, plus this one.
            run = self._running()
            counts = [r[1] for r in run]
            sums = [r[2] for r in run]
            merchants = set(self._merchant_run)
        else:
            counts, sums, merchants = self._aggregate(ts_ms)
        merchants.add(merchant_id)
        values = UserWindowValues(
            counts=tuple(c + 1 for c in counts),
            sums_cents=tuple(s + amount_cents for s in sums),
            distinct_merchants=len(merchants),
            seconds_since_prev=0.0,
            too_late=too_late,
        )
        if not too_late:
            self._store(ts_ms, amount_cents, merchant_id, allowed_lateness_ms)
        return values

    # -- internals --------------------------------------------------------------------------
    def _aggregate(self, anchor: int) -> tuple[list[int], list[int], set[str]]:
        """Scan the stored buckets for windows anchored at `anchor` (out-of-order events)."""
        counts = [0] * len(USER_WINDOWS)
        sums = [0] * len(USER_WINDOWS)
        for i, window in enumerate(USER_WINDOWS):
            hi = anchor // window.bucket_ms
            lo = hi - window.n_buckets  # exclusive
            for key, bucket in self.levels[_WINDOW_LEVEL[i]].items():
                if lo < key <= hi:
                    counts[i] += bucket[1]
                    sums[i] += bucket[2]
        merchants: set[str] = set()
        m_hi = anchor // DISTINCT_MERCHANTS_WINDOW.bucket_ms
        m_lo = m_hi - DISTINCT_MERCHANTS_WINDOW.n_buckets
        for key, bucket in self.levels[_MERCHANT_LEVEL].items():
            if m_lo < key <= m_hi:
                merchants.update(bucket[3])
        return counts, sums, merchants

    def _running(self) -> list[list[int]]:
        """The running windows, rebuilt from the buckets after a restore."""
        if self._run is None:
            anchor = self.last_ts if self.last_ts is not None else 0
            counts, sums, merchants = self._aggregate(anchor)
            self._run = [
                [anchor // w.bucket_ms, counts[i], sums[i]] for i, w in enumerate(USER_WINDOWS)
            ]
            held: Counter[str] = Counter()
            m_hi = anchor // DISTINCT_MERCHANTS_WINDOW.bucket_ms
            for key, bucket in self.levels[_MERCHANT_LEVEL].items():
                if m_hi - DISTINCT_MERCHANTS_WINDOW.n_buckets < key <= m_hi:
                    held.update(bucket[3])
            self._merchant_run = dict(held)
            del merchants
        return self._run

    def _slide(self, ts_ms: int) -> list[list[int]]:
        """Move the running windows forward to an anchor at `ts_ms` (>= the newest event)."""
        run = self._running()
        levels = self.levels
        for entry, bucket_ms, n, level_index, is_merchant_window in zip(
            run, _WINDOW_BUCKET_MS, _WINDOW_N, _WINDOW_LEVEL, _IS_MERCHANT_WINDOW, strict=True
        ):
            hi_new = ts_ms // bucket_ms
            shift = hi_new - entry[0]
            if shift == 0:
                continue
            if shift >= n:
                entry[1] = entry[2] = 0
                if is_merchant_window:
                    self._merchant_run.clear()
            else:
                # Buckets leaving the window: keys in (old lo, new lo]. Walk whichever is
                # shorter, that key range or the (small) level itself.
                level = levels[level_index]
                old_lo, new_lo = entry[0] - n, hi_new - n
                if shift < len(level):
                    leaving = [level[k] for k in range(old_lo + 1, new_lo + 1) if k in level]
                else:
                    leaving = [b for k, b in level.items() if old_lo < k <= new_lo]
                for bucket in leaving:
                    entry[1] -= bucket[1]
                    entry[2] -= bucket[2]
                    if is_merchant_window:
                        held = self._merchant_run
                        for merchant in bucket[3]:  # each counted once per bucket holding it
                            left = held.get(merchant, 0) - 1
                            if left > 0:
                                held[merchant] = left
                            else:
                                held.pop(merchant, None)
            entry[0] = hi_new
        return run

    def _store(self, ts_ms: int, amount_cents: int, merchant_id: str, lateness_ms: int) -> None:
        if self.last_ts is None or ts_ms > self.last_ts:
            self.last_ts = ts_ms
        run = self._running()
        horizon = self.last_ts - lateness_ms
        for index, bucket_ms in enumerate(_LEVEL_BUCKETS):
            level = self.levels[index]
            key = ts_ms // bucket_ms
            bucket = level.get(key)
            if bucket is None:
                bucket = [key, 0, 0, []] if index == _MERCHANT_LEVEL else [key, 0, 0]
                level[key] = bucket
                # A new bucket is the only moment the level can have outgrown its span; keys
                # arrive mostly in order, so the first key tells whether anything is stale.
                oldest = horizon // bucket_ms - _LEVEL_SPAN[index] + 1
                if next(iter(level)) < oldest:
                    for stale in [k for k in level if k < oldest]:
                        del level[stale]
            bucket[1] += 1
            bucket[2] += amount_cents
            if index == _MERCHANT_LEVEL and merchant_id not in bucket[3]:
                bucket[3].append(merchant_id)
                m_hi = run[_DISTINCT_INDEX][0]
                if m_hi - _DISTINCT_N < key <= m_hi:
                    held = self._merchant_run
                    held[merchant_id] = held.get(merchant_id, 0) + 1
        for entry, bucket_ms, n in zip(run, _WINDOW_BUCKET_MS, _WINDOW_N, strict=True):
            if entry[0] - n < ts_ms // bucket_ms <= entry[0]:
                entry[1] += 1
                entry[2] += amount_cents

    # -- serialisation (Faust table values) -------------------------------------------------
    def to_json(self) -> list[Any]:
        """Compact JSON-ready form: [last_ts, [[key, count, cents(, merchants)], ...] per level],
        keys ascending. The bucket lists are the state's own: serialise them, do not keep them."""
        # Keys are unique, so sorting the buckets compares their keys only.
        return [self.last_ts, *[sorted(level.values()) for level in self.levels]]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> UserWindows:
        state = cls()
        state.last_ts = data[0]
        for index, rows in enumerate(data[1:]):
            state.levels[index] = {
                row[0]: [row[0], row[1], row[2], list(row[3])]
                if index == _MERCHANT_LEVEL
                else [row[0], row[1], row[2]]
                for row in rows
            }
        return state

    def bucket_count(self) -> int:
        """Number of stored buckets (the state's size, for tests and metrics)."""
        return sum(len(level) for level in self.levels)
