"""Labels meet scores: the join of delayed labels with what the model said, and online quality.

A label arrives days after its transaction was scored, on a topic keyed by transaction id, so a
worker remembers a little of each transaction it scored (`Scored`, ~100 bytes) until the label
horizon has passed. Memory is bounded twice: by event time (entries older than the horizon are
dropped) and by count. A label whose score is not known yet (replays can deliver labels before the
worker has scored the transaction) waits, just as bounded, for its score.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import average_precision_score

DAY_MS = 86_400_000


@dataclass(slots=True)  # not frozen: see "Hot value objects", models/stages.py
class Scored:
    """What is kept of a scored transaction until its label arrives (slots: the drift monitor
    keeps up to a million of them)."""

    event_time_ms: int
    score: float
    flagged: bool  # decision is review or decline
    model_version: str
    shadow_version: str | None = None
    shadow_score: float | None = None
    shadow_flagged: bool | None = None


@dataclass(frozen=True)
class Joined:
    transaction_id: str
    scored: Scored
    is_fraud: bool
    labeled_at_ms: int


@dataclass
class JoinCounts:
    joined: int = 0
    expired_scores: int = 0
    expired_labels: int = 0
    repeated_labels: int = 0


class FeedbackJoin:
    """Bounded join of scores (by transaction id) with labels that arrive in any order."""

    def __init__(
        self,
        horizon_ms: int = 45 * DAY_MS,
        max_scores: int = 1_000_000,
        max_pending_labels: int = 200_000,
    ) -> None:
        self.horizon_ms = horizon_ms
        self.max_scores = max_scores
        self.max_pending_labels = max_pending_labels
        self._scores: OrderedDict[str, Scored] = OrderedDict()
        self._pending: OrderedDict[str, tuple[bool, int]] = OrderedDict()
        self._labelled: OrderedDict[str, int] = OrderedDict()  # joined ids, to drop repeats
        self._latest_ms = 0
        self.counts = JoinCounts()

    def __len__(self) -> int:
        return len(self._scores)

    @property
    def latest_ms(self) -> int:
        """The newest event or label time seen (the join's notion of "now")."""
        return self._latest_ms

    @property
    def pending_labels(self) -> int:
        return len(self._pending)

    def add_score(self, transaction_id: str, scored: Scored) -> Joined | None:
        """Remember a score; returns the join if its label was already waiting."""
        self._latest_ms = max(self._latest_ms, scored.event_time_ms)
        waiting = self._pending.pop(transaction_id, None)
        if waiting is not None:
            return self._join(transaction_id, scored, *waiting)
        if transaction_id not in self._labelled:
            self._scores[transaction_id] = scored
        self._expire()
        return None

    def add_label(self, transaction_id: str, is_fraud: bool, labeled_at_ms: int) -> Joined | None:
        """Join a label with its score, or keep it until the score comes (bounded)."""
        self._latest_ms = max(self._latest_ms, labeled_at_ms)
        if transaction_id in self._labelled:
            self.counts.repeated_labels += 1
            return None
        scored = self._scores.pop(transaction_id, None)
        if scored is not None:
            return self._join(transaction_id, scored, is_fraud, labeled_at_ms)
        self._pending[transaction_id] = (is_fraud, labeled_at_ms)
        self._expire()
        return None

    def _join(self, transaction_id: str, scored: Scored, is_fraud: bool, at_ms: int) -> Joined:
        self.counts.joined += 1
        self._labelled[transaction_id] = scored.event_time_ms
        return Joined(transaction_id, scored, is_fraud, at_ms)

    def _expire(self) -> None:
        oldest = self._latest_ms - self.horizon_ms
        while self._scores:
            tid, first = next(iter(self._scores.items()))
            if first.event_time_ms >= oldest and len(self._scores) <= self.max_scores:
                break
            del self._scores[tid]
            self.counts.expired_scores += 1
        while self._pending:
            tid, (_, at_ms) = next(iter(self._pending.items()))
            if at_ms >= oldest and len(self._pending) <= self.max_pending_labels:
                break
            del self._pending[tid]
            self.counts.expired_labels += 1
        while self._labelled:
            tid, event_ms = next(iter(self._labelled.items()))
            if event_ms >= oldest and len(self._labelled) <= self.max_scores:
                break
            del self._labelled[tid]


@dataclass
class _Window:
    scores: deque[float]
    flagged: deque[bool]
    frauds: deque[bool]


@dataclass
class OnlineQuality:
    """Rolling precision, recall and average precision over each model's last labelled scores."""

    window: int = 5000
    _by_model: dict[str, _Window] = field(default_factory=dict)

    def add(self, model_version: str, score: float, flagged: bool, is_fraud: bool) -> None:
        slot = self._by_model.get(model_version)
        if slot is None:
            slot = _Window(*(deque(maxlen=self.window) for _ in range(3)))
            self._by_model[model_version] = slot
        slot.scores.append(score)
        slot.flagged.append(flagged)
        slot.frauds.append(is_fraud)

    def add_joined(self, joined: Joined) -> None:
        """Count a labelled transaction for its model and, if it was shadowed, the shadow."""
        scored = joined.scored
        self.add(scored.model_version, scored.score, scored.flagged, joined.is_fraud)
        if scored.shadow_version is not None and scored.shadow_score is not None:
            shadow_flagged = bool(scored.shadow_flagged)
            self.add(scored.shadow_version, scored.shadow_score, shadow_flagged, joined.is_fraud)

    def report(self) -> dict[str, dict[str, float]]:
        """Per model: labelled n, frauds, precision and recall of flagging, average precision.

        Metrics without a defined value (no fraud yet, nothing flagged) are left out, not NaN.
        """
        result: dict[str, dict[str, float]] = {}
        for version, slot in self._by_model.items():
            y = np.fromiter(slot.frauds, dtype=bool, count=len(slot.frauds))
            flagged = np.fromiter(slot.flagged, dtype=bool, count=len(slot.flagged))
            frauds, hits = int(y.sum()), int((y & flagged).sum())
            stats: dict[str, float] = {"labelled": float(y.size), "frauds": float(frauds)}
            if flagged.any():
                stats["precision"] = hits / int(flagged.sum())
            if frauds:
                stats["recall"] = hits / frauds
                if frauds < y.size:
                    scores = np.fromiter(slot.scores, dtype=np.float64, count=len(slot.scores))
                    stats["average_precision"] = float(average_precision_score(y, scores))
            result[version] = stats
        return result
