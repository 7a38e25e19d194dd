"""Merchant snapshots from final hourly partials: exact, bounded by merchants x hours, and
answerable for any recent boundary in O(log hours).

Definition (`models.merchant_window`): at boundary B (an hour index), a merchant's transaction
count over a window of W hours is the number of its transactions in hours [B - W, B), and its
fraud count the number of those with a fraud label known before B (labeled in an hour l with
l < B, counted from boundary max(h, l) + 1 for a transaction of hour h).

Every input partition (`Source`) contributes final hours (`FinalHours`) in its own time; the
*final boundary* is the smallest `closed_before` over all sources: every hour before it is
complete everywhere, so a snapshot at B <= final is the same in every worker and equal to the
offline computation. Sums are per merchant and order-free, so it does not matter in which order
the partials of different sources arrive.

Storage: per merchant, the cumulative transaction count at each hour it was active, and per
window the cumulative fraud count at each boundary where it changed. A window's count at B is a
difference of two cumulative values found by bisection, so a boundary hours or days behind the
newest one (a lagging partition, a restart, a replay) costs the same few lookups as the newest.
Entries older than the longest window plus `lookback_hours` are dropped once a day of event
time; a request older than that is answered from what is left and counted in `inexact`.

>>> from collections import Counter
>>> from models.merchant_partials import FinalHours, Source
>>> history = MerchantHistory([Source("tx", 0)])
>>> history.apply(FinalHours(Source("tx", 0), None, 5, {2: Counter({"m1": 3})}, 0, 3, None, 0))
True
>>> history.final, history.values(5, "m1").tx_counts
(5, (3, 3, 3))
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable

from models.merchant_partials import FinalHours, Source
from models.merchant_window import EMPTY, MERCHANT_WINDOWS, MerchantValues

_WINDOW_HOURS = tuple(w.hours for w in MERCHANT_WINDOWS)
_LONGEST = max(_WINDOW_HOURS)
DEFAULT_LOOKBACK_HOURS = 14 * 24
"""How far behind the final boundary a snapshot stays exact (beyond: inexact, counted)."""
_TRIM_EVERY_HOURS = 24


class _Cumulative:
    """(key, cumulative value) pairs in key order, with the value before the first pair."""

    __slots__ = ("base", "keys", "values")

    def __init__(self) -> None:
        self.keys = array("q")
        self.values = array("q")
        self.base = 0

    def add(self, key: int, amount: int) -> None:
        last = self.values[-1] if self.values else self.base
        if self.keys and self.keys[-1] == key:
            self.values[-1] = last + amount
        else:
            self.keys.append(key)
            self.values.append(last + amount)

    def before(self, key: int) -> int:
        """Cumulative value over keys < `key`."""
        index = bisect_left(self.keys, key)
        return self.values[index - 1] if index else self.base

    def through(self, key: int) -> int:
        """Cumulative value over keys <= `key`."""
        index = bisect_right(self.keys, key)
        return self.values[index - 1] if index else self.base

    def trim(self, oldest: int) -> None:
        """Forget pairs with keys below `oldest` (their total moves into `base`)."""
        index = bisect_left(self.keys, oldest)
        if index:
            self.base = self.values[index - 1]
            del self.keys[:index]
            del self.values[:index]

    def __len__(self) -> int:
        return len(self.keys)


class MerchantHistory:
    """The combined merchant state of every source's final hours (no I/O)."""

    def __init__(
        self, sources: Iterable[Source] = (), lookback_hours: int = DEFAULT_LOOKBACK_HOURS
    ) -> None:
        self.lookback_hours = lookback_hours
        self._closed: dict[Source, int | None] = dict.fromkeys(sources)
        self._declared = bool(self._closed)
        """The final boundary waits until the input partitions are known (`declare`)."""
        self.final: int | None = None
        """The final boundary (hour index): snapshots at or before it are complete."""
        self._pending_tx: dict[int, Counter[str]] = {}
        self._pending_fraud: dict[int, list[tuple[str, int, int]]] = {}
        self._tx: dict[str, _Cumulative] = {}
        self._fraud: dict[str, list[_Cumulative]] = {}
        self._trimmed_before: int | None = None
        self._last_trim: int | None = None
        self.inexact = 0
        """Requests for boundaries older than what is kept (answered from what is left)."""
        self.hold: Callable[[], int | None] = lambda: None
        """The oldest boundary a waiting transaction still needs (nothing from it back to the
        lookback is trimmed; None: only the final boundary counts). Set by the scorer."""
        self.duplicates = 0
        """Hours received again for a source that had closed them already (restarts)."""

    # -- inputs -----------------------------------------------------------------------------
    def declare(self, sources: Iterable[Source]) -> None:
        """Sources the final boundary waits for (every input partition)."""
        for source in sources:
            self._closed.setdefault(source, None)
        self._declared = True
        self._advance()

    def closed_before(self, source: Source) -> int | None:
        return self._closed.get(source)

    def newest_closed(self, kind: str | None = None) -> int | None:
        """The largest `closed_before` of any source (of one kind): where an idle source may
        catch up to."""
        known = [
            c
            for source, c in self._closed.items()
            if c is not None and (kind is None or source.kind == kind)
        ]
        return max(known) if known else None

    def apply(self, final: FinalHours) -> bool:
        """Add a source's final hours (hours it had closed already are ignored); True when the
        final boundary moved."""
        before = self._closed.get(final.source)
        for hour, counts in final.hours.items():
            if before is not None and hour < before:
                self.duplicates += 1
                continue
            pending = self._pending_tx.get(hour)
            for key, n in counts.items():
                if isinstance(key, tuple):  # a fraud label: (merchant, transaction hour)
                    self.schedule_fraud(key[0], key[1], hour, n)
                    continue
                if pending is None:
                    pending = self._pending_tx[hour] = Counter()
                pending[key] += n
        if before is None or final.closed_before > before:
            self._closed[final.source] = final.closed_before
        return self._advance()

    def schedule_fraud(self, merchant: str, tx_hour: int, labeled_hour: int, n: int = 1) -> None:
        """`n` fraud labels, known in `labeled_hour`, of the merchant's transactions of
        `tx_hour`: counted from boundary max(tx_hour, labeled_hour) + 1 while in each window."""
        start = max(tx_hour, labeled_hour) + 1
        for index, hours in enumerate(_WINDOW_HOURS):
            end = tx_hour + hours  # the last boundary whose window holds the transaction
            if start <= end:
                self._pending_fraud.setdefault(start, []).append((merchant, index, n))
                self._pending_fraud.setdefault(end + 1, []).append((merchant, index, -n))

    def _advance(self) -> bool:
        marks = list(self._closed.values())
        if not self._declared or not marks or any(m is None for m in marks):
            return False
        target = min(m for m in marks if m is not None)
        old = self.final
        if old is not None and target <= old:
            return False
        for hour in sorted(h for h in self._pending_tx if old is None or h >= old):
            if hour >= target:
                break
            for merchant, count in self._pending_tx.pop(hour).items():
                cumulative = self._tx.get(merchant)
                if cumulative is None:
                    cumulative = self._tx[merchant] = _Cumulative()
                cumulative.add(hour, count)
        for boundary in sorted(b for b in self._pending_fraud if b <= target):
            for merchant, index, delta in self._pending_fraud.pop(boundary):
                windows = self._fraud.get(merchant)
                if windows is None:
                    windows = self._fraud[merchant] = [_Cumulative() for _ in _WINDOW_HOURS]
                windows[index].add(boundary, delta)
        self.final = target
        if self._last_trim is None or target - self._last_trim >= _TRIM_EVERY_HOURS:
            self._trim(target)
        return True

    # -- lookups ----------------------------------------------------------------------------
    def values(self, boundary: int, merchant_id: str) -> MerchantValues:
        """A merchant's numbers at a final boundary (an hour index <= `final`)."""
        if self.final is None or boundary > self.final:
            raise ValueError(f"boundary {boundary} is not final (final: {self.final})")
        self._count_inexact(boundary)
        tx = self._tx.get(merchant_id)
        fraud = self._fraud.get(merchant_id)
        if tx is None and fraud is None:
            return EMPTY
        if tx is None:
            counts: tuple[int, ...] = (0,) * len(_WINDOW_HOURS)
        else:
            upto = tx.before(boundary)
            counts = tuple(upto - tx.before(boundary - hours) for hours in _WINDOW_HOURS)
        frauds = (
            (0,) * len(_WINDOW_HOURS)
            if fraud is None
            else tuple(window.through(boundary) for window in fraud)
        )
        return MerchantValues(counts, frauds)

    def memo(self) -> Callable[[int, str], MerchantValues]:
        """`values`, remembered: for one micro-batch, during which the history does not change.
        The transactions of a merchant in one hour then share one lookup and one feature
        tuple (`MerchantValues.features`); `inexact` still counts every request."""
        found: dict[tuple[int, str], MerchantValues] = {}

        def values(boundary: int, merchant_id: str) -> MerchantValues:
            key = (boundary, merchant_id)
            known = found.get(key)
            if known is None:
                known = found[key] = self.values(boundary, merchant_id)
            else:
                self._count_inexact(boundary)
            return known

        return values

    def _count_inexact(self, boundary: int) -> None:
        """A request reaching back beyond the kept history is counted (`inexact`)."""
        trimmed = self._trimmed_before
        if trimmed is not None and boundary - _LONGEST < trimmed:
            self.inexact += 1

    # -- memory -----------------------------------------------------------------------------
    def _trim(self, final: int) -> None:
        self._last_trim = final
        held = self.hold()
        keep = final if held is None else min(final, held)
        oldest_boundary = keep - self.lookback_hours
        oldest_hour = oldest_boundary - _LONGEST
        self._trimmed_before = oldest_hour
        for merchant in list(self._tx):
            cumulative = self._tx[merchant]
            cumulative.trim(oldest_hour)
            if not cumulative:
                del self._tx[merchant]  # every window at every kept boundary: zero
        for merchant in list(self._fraud):
            windows = self._fraud[merchant]
            for window in windows:
                window.trim(oldest_boundary)
            if all(not w and w.base == 0 for w in windows):
                del self._fraud[merchant]

    def entries(self) -> int:
        """Stored (key, value) pairs: the state's size (merchants x active hours)."""
        return sum(len(c) for c in self._tx.values()) + sum(
            len(w) for windows in self._fraud.values() for w in windows
        )

    def longest_series(self) -> int:
        """The most pairs one merchant's lookup bisects: what an old-boundary lookup costs."""
        lengths = [len(c) for c in self._tx.values()]
        lengths += [len(w) for windows in self._fraud.values() for w in windows]
        return max(lengths, default=0)

    def pending_hours(self) -> int:
        """Hours received but not final yet (waiting for the slowest source)."""
        return len(self._pending_tx)

    def merchants(self) -> int:
        return len(self._tx.keys() | self._fraud.keys())
