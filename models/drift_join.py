"""Labels meet the scores of closed hours, in an order fixed by event time alone.

The cluster's drift monitor joins each label with the score its transaction got. Scores enter
per closed hour (`insert`, hours ascending); a label of hour L may only meet a score of an hour
up to L, and expiry (`expire`) only looks at hours before the label hour being processed. Scores
of later hours may already be inside — how far the score side has run ahead of the label side is
a matter of timing — but nothing a label hour sees or drops depends on them, so the joins are a
function of the two topics' contents. Memory is bounded by an event-time horizon and by a count
of remembered scores (oldest hours go first). Each hour's scores are kept in columns
(`models.score_columns`) sorted by transaction id; an id maps to its hour, then to its row by
bisection, so the only objects per score are its id and its entry in one dict.

>>> from models.feedback import Scored
>>> join = HourlyJoin(horizon_hours=24, max_scores=10)
>>> join.insert(5, [("t1", Scored(5 * 3_600_000, 0.9, True, "v1"))])
>>> join.claim("t1", label_hour=4) is None  # a label an hour before its score's hour
True
>>> join.claim("t1", label_hour=6).score
0.9
>>> join.claim("t1", label_hour=6)  # a repeated label counts once
'repeat'
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from models.feedback import Scored
from models.score_columns import ScoreColumns


@dataclass
class JoinCounts:
    inserted: int = 0
    duplicate_scores: int = 0
    expired_scores: int = 0


class HourlyJoin:
    """Scores of closed hours by transaction id, for the labels that come later (see module)."""

    def __init__(self, horizon_hours: int, max_scores: int) -> None:
        if horizon_hours < 1 or max_scores < 1:
            raise ValueError("horizon_hours and max_scores must be positive")
        self.horizon_hours = horizon_hours
        self.max_scores = max_scores
        self._hours: OrderedDict[int, ScoreColumns] = OrderedDict()
        """Each hour's scores, sorted by transaction id (a row is marked once a label met it)."""
        self._hour_of: dict[str, int] = {}
        self._expired_before: int | None = None
        self.counts = JoinCounts()

    def __len__(self) -> int:
        return len(self._hour_of)

    def insert(self, hour: int, rows: Iterable[tuple[str, Scored]]) -> None:
        """The scores of one closed hour, in a canonical order (see `insert_columns`)."""
        columns = ScoreColumns()
        for transaction_id, scored in rows:
            columns.append(transaction_id, scored)
        self.insert_columns(hour, columns)

    def insert_columns(self, hour: int, rows: ScoreColumns) -> None:
        """The scores of one closed hour, in a canonical order; hours come in ascending order.
        A transaction id seen before (in this hour or an earlier one) keeps its first score."""
        if self._hours and hour <= next(reversed(self._hours)):
            raise ValueError(f"hour {hour} inserted after a later one")
        known = self._hour_of
        seen: set[str] = set()
        kept: list[int] = []
        for row, transaction_id in enumerate(rows.ids):
            if transaction_id in known or transaction_id in seen:
                self.counts.duplicate_scores += 1
            else:
                seen.add(transaction_id)
                kept.append(row)
        del seen
        if kept:
            ids = rows.ids
            entries = rows.select(sorted(kept, key=ids.__getitem__), signals=False)
            self._hours[hour] = entries
            known.update(dict.fromkeys(entries.ids, hour))
            self.counts.inserted += len(entries)

    def claim(self, transaction_id: str, label_hour: int) -> Scored | Literal["repeat"] | None:
        """The score a label of `label_hour` meets: None if unknown (or of a later hour),
        'repeat' if an earlier label already met it."""
        hour = self._hour_of.get(transaction_id)
        if hour is None or hour > label_hour:
            return None
        entries = self._hours[hour]
        row = bisect.bisect_left(entries.ids, transaction_id)
        if entries.marked(row):
            return "repeat"
        entries.mark(row)
        return entries.scored(row)

    def expire(self, before_hour: int) -> None:
        """Forget hours older than the horizon before `before_hour`, then the oldest hours while
        those before `before_hour` hold more than `max_scores` scores."""
        if before_hour == self._expired_before:
            return
        self._expired_before = before_hour
        oldest_kept = before_hour - self.horizon_hours
        held = 0
        for hour, entries in self._hours.items():
            if hour >= before_hour:
                break
            held += len(entries)
        while self._hours:
            hour, entries = next(iter(self._hours.items()))
            if hour >= before_hour or (hour >= oldest_kept and held <= self.max_scores):
                break
            del self._hours[hour]
            held -= len(entries)
            for transaction_id in entries.ids:
                del self._hour_of[transaction_id]
            self.counts.expired_scores += len(entries)
