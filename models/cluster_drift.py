"""One drift monitor for the whole cluster: every partition's scores and labels, deterministic.

    fraud-scores ─► HourlyClosure (per partition, then for the topic) ─► closed score hour H
                      champion of H = the version that scored most of it
                      ├─ ScoreHour(H): the champion's exact bucket sums ─► data detectors
                      └─ H's scores (sorted) ─► HourlyJoin
    labels ───────► HourlyClosure ─► closed label hour L, once score hour L is closed too
                      labels sorted by (labeled_at, transaction_id) meet scores of hours <= L
                      ├─ OnlineQuality (champion and shadow)
                      └─ LabelHour(L): the champion's fraud labels, missed or not ─► concept

Why the events are a function of the topics' contents and per-partition order only — not of
the number of workers, of how partitions interleave, or (when no record is late) of how many
partitions there are: which records count is decided per partition (`models.hourly_closure`);
a score hour's sums are exact integers, the same whatever order and grouping added them
(`models.drift_signals.BucketSums`); labels are processed per closed hour in a sorted order,
only once every score they could meet has arrived (a score is either in its hour or late), and
the join sees nothing of later hours (`models.drift_join`). Score hours feed the data detectors
and label hours the concept detectors, two independent states: how far one side runs ahead of
the other changes when an event is published, never which. The champion is read from the
scores themselves, per hour, so both sides reset on a new champion at the same hours.

Each hour record carries a `Resume` and is all a new monitor needs to rebuild the detectors
(`models.drift_replay.restore`). What a failover loses: the join's scores older than the
checkpoint the new monitor reads again from (`rejoin_hours` back) that were still waiting for
their label; their labels, if they come, are unmatched.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from models.drift import DriftMonitor
from models.drift_config import DEFAULT_DRIFT_CONFIG, MISS_SIGNAL, DriftConfig
from models.drift_join import HourlyJoin
from models.drift_records import (
    FraudOutcome,
    HourRecord,
    LabelHour,
    LabelInput,
    Resume,
    ScoreHour,
    ScoreInput,
    champion_of,
)
from models.drift_signals import BucketSums
from models.feedback import Joined, OnlineQuality
from models.hourly_closure import HourlyClosure
from models.score_columns import ScoreColumns
from schemas.events import DriftEvent

Topic = Literal["scores", "labels"]
DEFAULT_LATENESS_MS = 600_000
JOIN_HORIZON_HOURS = 45 * 24
JOIN_MAX_SCORES = 1_000_000


@dataclass
class CoreCounts:
    scores: int = 0
    labels: int = 0
    unreadable_scores: int = 0
    unreadable_labels: int = 0
    duplicate_scores: int = 0
    untimed_labels: int = 0
    """Labels without `labeled_at` (no place in event time)."""
    labels_joined: int = 0
    unmatched_labels: int = 0
    """No score of an hour up to the label's: never scored, late, or forgotten."""
    repeated_labels: int = 0
    other_version_labels: int = 0
    """Fraud labels of transactions another version than the hour's champion scored."""
    score_hours: int = 0
    label_hours: int = 0


class _ScorePart:
    """One partition's share of an open score hour: its scores in columns, in arrival order."""

    __slots__ = ("ids", "rows")

    def __init__(self, signals: int) -> None:
        self.ids: set[str] = set()
        self.rows = ScoreColumns(signals)


class Champions:
    """Which version was champion from which score hour on (change points only)."""

    def __init__(self, changes: Iterable[tuple[int, str]] = ()) -> None:
        self._hours: list[int] = []
        self._versions: list[str] = []
        for hour, version in changes:
            self.note(hour, version)

    def note(self, hour: int, version: str) -> None:
        if self._hours and hour <= self._hours[-1]:
            return  # already known (a replayed stretch)
        if not self._versions or self._versions[-1] != version:
            self._hours.append(hour)
            self._versions.append(version)

    def at(self, hour: int) -> str | None:
        i = bisect.bisect_right(self._hours, hour)
        return self._versions[i - 1] if i else None

    def changes(self) -> list[tuple[int, str]]:
        return list(zip(self._hours, self._versions, strict=True))


class ClusterDriftCore:
    """Closes hours of both topics and turns them into hour records (see the module docstring).

    Feed records per partition in offset order (`add_score`, `add_label`; None for a record that
    could not be read), say which partitions are caught up and silent (`set_idle`), and `poll`
    for the records of the hours that closed meanwhile.
    """

    def __init__(
        self,
        score_partitions: int,
        label_partitions: int,
        config: DriftConfig = DEFAULT_DRIFT_CONFIG,
        lateness_ms: int = DEFAULT_LATENESS_MS,
        resume: Resume | None = None,
        champions: Iterable[tuple[int, str]] = (),
        join: HourlyJoin | None = None,
    ) -> None:
        resume = resume or Resume.start(score_partitions, label_partitions)
        self.config = config
        bucket = config.bucket_ms
        self._scores: HourlyClosure[_ScorePart] = HourlyClosure(
            score_partitions,
            bucket,
            lateness_ms,
            lambda: _ScorePart(len(config.signals)),
            resume.scores,
        )
        self._labels: HourlyClosure[list[LabelInput]] = HourlyClosure(
            label_partitions, bucket, lateness_ms, list, resume.labels
        )
        self.join = join or HourlyJoin(JOIN_HORIZON_HOURS, JOIN_MAX_SCORES)
        self.quality = OnlineQuality()
        self.counts = CoreCounts()
        self.champions = Champions(champions)

    # -- input -------------------------------------------------------------------------------
    def add_score(self, partition: int, offset: int, score: ScoreInput | None) -> None:
        if score is None:
            self.counts.unreadable_scores += 1
            self._scores.skip(partition, offset)
            return
        self.counts.scores += 1
        part = self._scores.add(partition, offset, score.event_time_ms)
        if part is None:
            return
        if score.transaction_id in part.ids:  # redelivered after a crash: identical
            self.counts.duplicate_scores += 1
            return
        part.ids.add(score.transaction_id)
        part.rows.append(score.transaction_id, score.scored, score.signals)

    def add_label(self, partition: int, offset: int, label: LabelInput | None) -> None:
        if label is None:
            self.counts.unreadable_labels += 1
            self._labels.skip(partition, offset)
            return
        self.counts.labels += 1
        hour = self._labels.add(partition, offset, label.labeled_at_ms)
        if hour is not None:
            hour.append(label)

    def untimed_label(self, partition: int, offset: int) -> None:
        """A valid label without `labeled_at`: counted, not used."""
        self.counts.untimed_labels += 1
        self._labels.skip(partition, offset)

    def set_idle(self, topic: Topic, partition: int, idle: bool = True) -> None:
        (self._scores if topic == "scores" else self._labels).set_idle(partition, idle)

    def next_offset(self, topic: Topic, partition: int) -> int:
        return (self._scores if topic == "scores" else self._labels).next_offset(partition)

    # -- closing hours -----------------------------------------------------------------------
    def poll(self) -> list[HourRecord]:
        """Records of every hour that closed since the last call: score hours, then labels."""
        records: list[HourRecord] = []
        limit = self._scores.ready_through()
        while (popped := self._scores.pop(limit)) is not None:
            records.append(self._close_scores(*popped))
        scores_through = self._scores.through
        if scores_through is None:
            return records
        limit = min(self._labels.ready_through(), float(scores_through))
        while (done := self._labels.pop(limit)) is not None:
            records.append(self._close_labels(*done))
        if self._labels.through is not None:
            self.join.expire(self._labels.through + 1)  # no-op unless the hour moved
        return records

    def _close_scores(self, hour: int, parts: list[_ScorePart]) -> ScoreHour:
        columns = [part.rows for part in parts]
        champion = champion_of([v for rows in columns for v in rows.versions()])
        sums = BucketSums(len(self.config.signals))
        # Exact integer sums: the same however the rows are grouped, so one call for the hour
        # (a call per partition cost more than its rows in a replay, ~10 rows per call).
        sums.add_matrix(np.concatenate([rows.signals(champion) for rows in columns]))
        self.champions.note(hour, champion)
        rows = ScoreColumns.concat(columns, signals=False)  # parts in order, rows as they came
        self.join.insert_columns(hour, rows.select(canonical(rows)))
        self.counts.score_hours += 1
        return ScoreHour(hour, champion, self.config.signals, sums.stats(), self.resume())

    def _close_labels(self, hour: int, parts: list[list[LabelInput]]) -> LabelHour:
        self.join.expire(hour)
        champion = self.champions.at(hour)
        counts = self.counts
        frauds: list[FraudOutcome] = []
        for label in sorted((lab for part in parts for lab in part), key=LabelInput.order):
            found = self.join.claim(label.transaction_id, hour)
            if found is None:
                counts.unmatched_labels += 1
                continue
            if isinstance(found, str):
                counts.repeated_labels += 1
                continue
            counts.labels_joined += 1
            self.quality.add_joined(
                Joined(label.transaction_id, found, label.is_fraud, label.labeled_at_ms)
            )
            if not label.is_fraud:
                continue
            if found.model_version != champion:
                counts.other_version_labels += 1
                continue
            frauds.append(FraudOutcome(label.labeled_at_ms, not found.flagged, found.score))
        counts.label_hours += 1
        return LabelHour(hour, champion, tuple(frauds), self.resume())

    def resume(self) -> Resume:
        return Resume(self._scores.resume(), self._labels.resume())

    def statistics(self) -> dict[str, float]:
        """Progress and bookkeeping for metrics (watermarks in ms; -1 while unknown)."""
        stats = {name: float(value) for name, value in vars(self.counts).items()}
        for name, closure in (("score", self._scores), ("label", self._labels)):
            through = closure.through
            stats[f"{name}_hours_through_ms"] = (
                -1.0 if through is None else float((through + 1) * closure.bucket_ms)
            )
            stats[f"late_{name}s"] = float(closure.late)
            stats[f"open_{name}_hours"] = float(closure.open_hours())
        stats["join_scores"] = float(len(self.join))
        stats["join_expired_scores"] = float(self.join.counts.expired_scores)
        return stats


def canonical(rows: ScoreColumns) -> list[int]:
    """The rows in the join's canonical order: by event time, then transaction id; rows equal
    in both keep their order (`np.lexsort` is stable, and compares text by code point as
    Python does)."""
    if not len(rows):
        return []
    order: list[int] = np.lexsort((np.asarray(rows.ids), rows.times())).tolist()
    return order


@dataclass
class ClusterDetectors:
    """The data and the concept detectors, fed hour records (live, or from the inputs log).

    Each side follows the champion its records name and resets when it changes. A record of an
    hour already applied is skipped, so a log with a record twice (two monitors briefly both
    leading) replays into the same state.
    """

    config: DriftConfig = field(default_factory=DriftConfig)
    score_through: int | None = None
    label_through: int | None = None
    incompatible: int = 0
    """Score records of other signals (the monitored features changed): skipped."""
    _data: DriftMonitor | None = None
    _concept: DriftMonitor | None = None

    def accepts(self, record: HourRecord) -> bool:
        through = self.score_through if isinstance(record, ScoreHour) else self.label_through
        return through is None or record.hour > through

    def apply(self, record: HourRecord) -> list[DriftEvent]:
        if not self.accepts(record):
            return []
        if isinstance(record, ScoreHour):
            self.score_through = record.hour
            if record.signals != self.config.signals:
                self.incompatible += 1
                return []
            self._data = self._follow(self._data, record.model_version)
            return self._data.observe_bucket(record.hour, record.stats)
        self.label_through = record.hour
        if record.model_version is None:
            return []
        self._concept = concept = self._follow(self._concept, record.model_version)
        events: list[DriftEvent] = []
        for fraud in record.frauds:
            flagged = not fraud.missed
            events += concept.observe_label(fraud.labeled_at_ms, fraud.score, flagged, True)
        return events

    def _follow(self, monitor: DriftMonitor | None, version: str) -> DriftMonitor:
        if monitor is None:
            return DriftMonitor(version, self.config)
        if monitor.model_version != version:
            monitor.reset(version)
        return monitor

    def statistics(self) -> dict[str, float]:
        """Data-side statistics from the data detectors, miss-stream ones from the concept side."""
        stats: dict[str, float] = {}
        if self._data is not None:
            data = self._data.statistics()
            stats |= {k: v for k, v in data.items() if not k.startswith(MISS_SIGNAL)}
        if self._concept is not None:
            concept = self._concept.statistics()
            stats |= {k: v for k, v in concept.items() if k.startswith(MISS_SIGNAL)}
        return stats

    def versions(self) -> tuple[str | None, str | None]:
        """(data side's champion, concept side's champion)."""
        return (
            self._data.model_version if self._data else None,
            self._concept.model_version if self._concept else None,
        )
