"""Rebuilding the cluster's drift monitor: from its inputs log (failover) or from whole topics.

`restore` is what a monitor that becomes leader does: replay the log of hour records into fresh
detectors (the same state the previous leader's had) and build a core that reads the topics again
from a checkpoint `rejoin_hours` of score hours back, silently up to the log's last record, so
that its join knows those hours' scores again. `replay_offline` and `detect_offline` run the same
core over records already in hand: with no late record, what the stream publishes.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.cluster_drift import DEFAULT_LATENESS_MS, ClusterDetectors, ClusterDriftCore, Topic
from models.drift_config import DEFAULT_DRIFT_CONFIG, DriftConfig
from models.drift_records import HourRecord, LabelInput, Resume, ScoreHour, ScoreInput
from schemas.events import DriftEvent, FraudScore, Label


@dataclass
class Restored:
    """A monitor rebuilt from its inputs log (`restore`)."""

    detectors: ClusterDetectors
    core: ClusterDriftCore
    silent: tuple[int | None, int | None]
    """(score hour, label hour) the log covers: the core's records up to them are not new."""
    replayed: int
    logged_scores: dict[int, ScoreHour]
    """Logged score hours the core will compute again, to check that it computes the same."""

    def is_new(self, record: HourRecord) -> bool:
        through = self.silent[0] if isinstance(record, ScoreHour) else self.silent[1]
        return through is None or record.hour > through


def restore(
    records: Iterable[HourRecord],
    score_partitions: int,
    label_partitions: int,
    config: DriftConfig = DEFAULT_DRIFT_CONFIG,
    lateness_ms: int = DEFAULT_LATENESS_MS,
    rejoin_hours: int = 0,
) -> Restored:
    """Detectors fed the whole log, and a core reading again from `rejoin_hours` of score hours
    before the log's last record (from the start if the log is shorter)."""
    detectors = ClusterDetectors(config)
    applied: list[HourRecord] = []
    for record in records:
        if detectors.accepts(record):
            detectors.apply(record)
            applied.append(record)
    if not applied:
        core = ClusterDriftCore(score_partitions, label_partitions, config, lateness_ms)
        return Restored(detectors, core, (None, None), 0, {})
    last = applied[-1].resume
    target = None if last.scores.through is None else last.scores.through - rejoin_hours
    checkpoint: Resume | None = None
    if target is not None:
        for record in reversed(applied):
            through = record.resume.scores.through
            if through is not None and through <= target:
                checkpoint = record.resume
                break
    start = -1
    if checkpoint is not None and checkpoint.scores.through is not None:
        start = checkpoint.scores.through
    score_hours = [r for r in applied if isinstance(r, ScoreHour)]
    champions = [(r.hour, r.model_version) for r in score_hours if r.hour <= start]
    core = ClusterDriftCore(
        score_partitions, label_partitions, config, lateness_ms, checkpoint, champions
    )
    logged = {r.hour: r for r in score_hours if r.hour > start}
    return Restored(
        detectors, core, (last.scores.through, last.labels.through), len(applied), logged
    )


# -- offline ---------------------------------------------------------------------------------
Feed = Iterable[tuple[Topic, int, ScoreInput | LabelInput | None]]


@dataclass
class OfflineRun:
    events: list[DriftEvent]
    records: list[HourRecord]
    core: ClusterDriftCore
    detectors: ClusterDetectors


def replay_offline(
    feed: Feed,
    score_partitions: int,
    label_partitions: int,
    config: DriftConfig = DEFAULT_DRIFT_CONFIG,
    lateness_ms: int = DEFAULT_LATENESS_MS,
    poll_every: int = 500,
) -> OfflineRun:
    """Records in the order given (each partition's in offset order), then every partition idle:
    what a monitor that read all of both topics publishes."""
    core = ClusterDriftCore(score_partitions, label_partitions, config, lateness_ms)
    detectors = ClusterDetectors(config)
    run = OfflineRun([], [], core, detectors)

    def drain() -> None:
        for record in core.poll():
            run.records.append(record)
            run.events.extend(detectors.apply(record))

    offsets: dict[tuple[Topic, int], int] = {}
    for step, (topic, partition, item) in enumerate(feed):
        offset = offsets.get((topic, partition), 0)
        offsets[topic, partition] = offset + 1
        if topic == "scores":
            assert item is None or isinstance(item, ScoreInput)  # noqa: S101 - caller's contract
            core.add_score(partition, offset, item)
        else:
            assert item is None or isinstance(item, LabelInput)  # noqa: S101 - caller's contract
            core.add_label(partition, offset, item)
        if step % poll_every == poll_every - 1:
            drain()
    for p in range(score_partitions):
        core.set_idle("scores", p)
    for p in range(label_partitions):
        core.set_idle("labels", p)
    drain()
    return run


def by_time(
    scores: Sequence[Sequence[ScoreInput]], labels: Sequence[Sequence[LabelInput]]
) -> Iterator[tuple[Topic, int, ScoreInput | LabelInput]]:
    """Every partition's records merged by time (event time, labeled_at), as a live feed reads."""
    streams = [_timed("scores", p, rows) for p, rows in enumerate(scores)]
    streams += [_timed("labels", p, rows) for p, rows in enumerate(labels)]
    for *_, topic, partition, item in heapq.merge(*streams, key=lambda row: row[:2]):
        yield topic, partition, item


def lagged(
    scores: Sequence[Sequence[ScoreInput]],
    labels: Sequence[Sequence[LabelInput]],
    lag_ms: Mapping[tuple[Topic, int], int],
    noise_ms: float,
    seed: int,
) -> list[tuple[Topic, int, ScoreInput | LabelInput]]:
    """Every partition's records in its own order, partitions interleaved as a reader would see
    them if partition (topic, p) ran `lag_ms` behind the others, with exponential noise of mean
    `noise_ms` on top (for benchmarks and tests: a realistic, reproducible interleaving)."""
    rng = np.random.default_rng(seed)
    keyed: list[tuple[float, int, Topic, int, ScoreInput | LabelInput]] = []
    streams: list[tuple[Topic, int, Sequence[ScoreInput | LabelInput]]] = [
        *(("scores", p, rows) for p, rows in enumerate(scores)),
        *(("labels", p, rows) for p, rows in enumerate(labels)),
    ]
    for topic, p, rows in streams:
        lag = lag_ms.get((topic, p), 0)
        noise = rng.exponential(noise_ms, len(rows)) if noise_ms > 0 else np.zeros(len(rows))
        clock = -np.inf
        for row, extra in zip(rows, noise.tolist(), strict=True):
            at = row.event_time_ms if isinstance(row, ScoreInput) else row.labeled_at_ms
            clock = max(clock, at + lag + extra)
            keyed.append((clock, len(keyed), topic, p, row))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [(topic, p, row) for _, _, topic, p, row in keyed]


def _timed(
    topic: Topic, partition: int, rows: Sequence[ScoreInput] | Sequence[LabelInput]
) -> Iterator[tuple[int, int, Topic, int, ScoreInput | LabelInput]]:
    rank = 0 if topic == "scores" else 1
    for row in rows:
        at = row.event_time_ms if isinstance(row, ScoreInput) else row.labeled_at_ms
        yield at, rank, topic, partition, row


def detect_offline(
    scores: Iterable[FraudScore],
    labels: Iterable[Label],
    config: DriftConfig = DEFAULT_DRIFT_CONFIG,
    lateness_ms: int = DEFAULT_LATENESS_MS,
) -> list[DriftEvent]:
    """The cluster's monitor over scores and labels in hand (one partition each, scores in event-
    time order, labels by labeled_at): what the stream publishes for them when none is late.
    Labels without `labeled_at` are left out, as the stream leaves them out."""
    rows = sorted((ScoreInput.from_event(s, config) for s in scores), key=lambda s: s.event_time_ms)
    timed = [lab for lab in map(LabelInput.from_event, labels) if lab is not None]
    timed.sort(key=lambda lab: lab.labeled_at_ms)
    return replay_offline(by_time([rows], [timed]), 1, 1, config, lateness_ms).events
