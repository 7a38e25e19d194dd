"""The cluster's drift monitor: one set of events per change, whatever the partitioning, the
interleaving of partitions or a failover in between."""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.cluster_drift import ClusterDetectors, ClusterDriftCore, Topic
from models.drift_config import DAY_MS, HOUR_MS, MISS_SIGNAL
from models.drift_records import (
    HourRecord,
    LabelHour,
    LabelInput,
    ScoreHour,
    ScoreInput,
    decode_record,
    encode_record,
)
from models.drift_replay import OfflineRun, by_time, detect_offline, replay_offline, restore
from schemas.events import DriftEvent, epoch_ms
from tests.drift_world import CONFIG, LATENESS_MS, T0, inputs, interleave, world

CHANGE_MS = T0 + int(4.5 * DAY_MS)
Feed = list[tuple[Topic, int, ScoreInput | LabelInput]]
SLOW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sides(events: list[DriftEvent]) -> tuple[list[DriftEvent], list[DriftEvent]]:
    """(data events, concept events), each in its own order."""
    return (
        [e for e in events if e.signal != MISS_SIGNAL],
        [e for e in events if e.signal == MISS_SIGNAL],
    )


def detector_inputs(records: list[HourRecord]) -> list[Any]:
    """What the detectors are fed, without the resume points (those depend on partitioning)."""
    return sorted(
        (
            (r.hour, 0, r.model_version, r.stats)
            if isinstance(r, ScoreHour)
            else (r.hour, 1, r.model_version, r.frauds)
        )
        for r in records
    )


def run(feed: Feed, score_parts: int, label_parts: int, poll_every: int = 500) -> OfflineRun:
    return replay_offline(feed, score_parts, label_parts, CONFIG, LATENESS_MS, poll_every)


@lru_cache(maxsize=1)
def reference() -> OfflineRun:
    scores, labels = inputs(world(), 1, 1)
    return run(list(by_time(scores, labels)), 1, 1)


@lru_cache(maxsize=32)
def partitioned(
    score_parts: int, label_parts: int
) -> tuple[list[list[ScoreInput]], list[list[LabelInput]]]:
    """The world's inputs, partitioned (shared between examples: read only)."""
    return inputs(world(), score_parts, label_parts)


def lags(draw: st.DrawFn, topic: Topic, parts: int) -> dict[tuple[Topic, int], int]:
    hours = draw(st.lists(st.integers(0, 72), min_size=parts, max_size=parts))
    return {(topic, p): h * HOUR_MS for p, h in enumerate(hours)}


@st.composite
def layouts(draw: st.DrawFn) -> tuple[int, int, Feed]:
    """A partitioning of the world and an interleaving in which partitions run up to three days
    behind one another."""
    score_parts, label_parts = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    scores, labels = partitioned(score_parts, label_parts)
    lag = lags(draw, "scores", score_parts) | lags(draw, "labels", label_parts)
    return score_parts, label_parts, interleave(scores, labels, lag, draw(st.integers(0, 2**32)))


# -- determinism -------------------------------------------------------------------------------
def test_the_world_gives_one_event_per_changed_signal_after_the_change() -> None:
    events = reference().events
    assert [(e.signal, e.detector) for e in events] == [
        ("user_tx_count_1h", "PageHinkley"),
        ("score", "PageHinkley"),  # frauds the model misses now score low
        (MISS_SIGNAL, "PageHinkley"),
    ]
    assert all(CHANGE_MS <= epoch_ms(e.detected_at) <= CHANGE_MS + DAY_MS for e in events)


@SLOW
@given(layout=layouts(), poll_every=st.sampled_from([1, 61, 500, 10**9]))
def test_events_do_not_depend_on_partitioning_interleaving_or_polling(
    layout: tuple[int, int, Feed], poll_every: int
) -> None:
    score_parts, label_parts, feed = layout
    result = run(feed, score_parts, label_parts, poll_every)
    ref = reference()
    assert sides(result.events) == sides(ref.events)
    assert detector_inputs(result.records) == detector_inputs(ref.records)
    assert result.core.counts == ref.core.counts
    assert result.core.statistics()["late_scores"] == 0


def test_labels_read_long_before_their_scores_still_meet_them() -> None:
    scores, labels = inputs(world(), 3, 2)
    labels_first: Feed = [
        *(("labels", p, lab) for p, part in enumerate(labels) for lab in part),
        *(("scores", p, s) for p, part in enumerate(scores) for s in part),
    ]
    result = run(labels_first, 3, 2)
    assert result.core.counts.labels_joined == reference().core.counts.labels_joined > 7000
    assert result.core.counts.unmatched_labels == 0
    assert sides(result.events) == sides(reference().events)


def test_redelivered_scores_count_once() -> None:
    ref = reference()
    once = dataclasses.replace(world(), duplicated=frozenset())
    scores, labels = inputs(once, 1, 1)
    without = run(list(by_time(scores, labels)), 1, 1)
    assert detector_inputs(without.records) == detector_inputs(ref.records)
    assert ref.core.counts.duplicate_scores == len(world().duplicated) > 0


def test_detect_offline_is_the_monitor_over_records_in_hand() -> None:
    w = world()
    events = detect_offline(reversed(w.scores), reversed(w.labels), CONFIG, LATENESS_MS)
    assert sides(events) == sides(reference().events)


# -- late data ---------------------------------------------------------------------------------
def _hour_of_score(records: list[HourRecord], hour: int) -> ScoreHour:
    return next(r for r in records if isinstance(r, ScoreHour) and r.hour == hour)


def test_a_score_behind_its_partition_by_more_than_the_lateness_is_counted_not_used() -> None:
    scores, labels = inputs(world(), 1, 1)
    rows = scores[0]
    target = next(i for i, s in enumerate(rows) if s.event_time_ms >= T0 + 50 * HOUR_MS)
    straggler = rows.pop(target)
    # Re-inserted two hours later in the partition: its hour has closed by then.
    later = next(
        i for i, s in enumerate(rows) if s.event_time_ms >= straggler.event_time_ms + 2 * HOUR_MS
    )
    late = [*rows[:later], straggler, *rows[later:]]
    without = run(list(by_time([rows], labels)), 1, 1)
    with_late = run(
        [("scores", 0, s) for s in late] + [("labels", 0, lab) for lab in labels[0]], 1, 1
    )
    assert with_late.core.statistics()["late_scores"] == 1
    hour = straggler.event_time_ms // HOUR_MS
    assert (
        _hour_of_score(with_late.records, hour).stats == _hour_of_score(without.records, hour).stats
    )


def test_a_score_within_the_lateness_still_counts_in_its_hour() -> None:
    scores, labels = inputs(world(), 1, 1)
    rows = scores[0]
    i = next(i for i, s in enumerate(rows) if s.event_time_ms % HOUR_MS > HOUR_MS - 120_000)
    j = next(j for j in range(i, len(rows)) if rows[j].event_time_ms % HOUR_MS > 120_000)
    early, moved = rows[: i + 1], rows[i + 1 : j + 1]
    # The last scores of an hour arrive after a few of the next hour's: less than 10 min behind.
    shuffled = [*early, *rows[j + 1 : j + 4], *moved, *rows[j + 4 :]]
    result = run(
        [("scores", 0, s) for s in shuffled] + [("labels", 0, lab) for lab in labels[0]], 1, 1
    )
    assert result.core.statistics()["late_scores"] == 0
    assert detector_inputs(result.records) == detector_inputs(reference().records)


# -- idle partitions ---------------------------------------------------------------------------
def test_an_empty_partition_holds_the_hours_back_until_it_is_idle() -> None:
    scores, labels = inputs(world(), 2, 1)
    core = ClusterDriftCore(3, 1, CONFIG, LATENESS_MS)  # score partition 2 never gets a record
    for offset, s in enumerate(scores[0]):
        core.add_score(0, offset, s)
    for offset, s in enumerate(scores[1]):
        core.add_score(1, offset, s)
    assert core.poll() == []
    core.set_idle("scores", 2)
    records = core.poll()
    assert records and all(isinstance(r, ScoreHour) for r in records)  # no label read yet
    core.set_idle("labels", 0)  # a label feed with nothing in it holds back only the labels
    assert core.poll() == []
    for offset, lab in enumerate(labels[0]):
        core.add_label(0, offset, lab)
    label_hours = [r for r in core.poll() if isinstance(r, LabelHour)]
    assert len(label_hours) == reference().core.counts.label_hours
    assert core.counts.labels_joined == reference().core.counts.labels_joined


# -- champion changes --------------------------------------------------------------------------
def test_a_new_champion_resets_both_sides_at_the_same_hour() -> None:
    switch = T0 + 3 * DAY_MS
    w = world()
    renamed = tuple(
        s.model_copy(update={"model_version": "v2"}) if epoch_ms(s.event_time) >= switch else s
        for s in w.scores
    )
    scores, labels = inputs(dataclasses.replace(w, scores=renamed), 2, 2)
    result = run(list(by_time(scores, labels)), 2, 2)
    versions = {
        (type(r).__name__, r.hour >= switch // HOUR_MS, r.model_version) for r in result.records
    }
    assert versions == {
        ("ScoreHour", False, "v1"),
        ("ScoreHour", True, "v2"),
        ("LabelHour", False, "v1"),
        ("LabelHour", True, "v2"),
    }
    # v1's frauds reported after the switch are not v2's misses.
    assert result.core.counts.other_version_labels > 0
    assert {e.model_version for e in result.events} == {"v2"}


# -- failover ----------------------------------------------------------------------------------
def _offsets(feed: Feed) -> list[tuple[Topic, int, int, ScoreInput | LabelInput]]:
    seen: dict[tuple[Topic, int], int] = {}
    out = []
    for topic, p, item in feed:
        offset = seen.get((topic, p), 0)
        seen[topic, p] = offset + 1
        out.append((topic, p, offset, item))
    return out


def _feed_core(core: ClusterDriftCore, rows: list[tuple[Topic, int, int, Any]]) -> list[HourRecord]:
    records: list[HourRecord] = []
    for step, (topic, p, offset, item) in enumerate(rows):
        if topic == "scores":
            core.add_score(p, offset, item)
        else:
            core.add_label(p, offset, item)
        if step % 97 == 0:
            records += core.poll()
    return records


def _finish(core: ClusterDriftCore, score_parts: int, label_parts: int) -> list[HourRecord]:
    for p in range(score_parts):
        core.set_idle("scores", p)
    for p in range(label_parts):
        core.set_idle("labels", p)
    return core.poll()


@SLOW
@given(layout=layouts(), cut=st.floats(0.02, 0.98), rejoin=st.sampled_from([0, 24, 10**6]))
def test_a_monitor_restored_from_the_inputs_log_goes_on_as_if_uninterrupted(
    layout: tuple[int, int, Feed], cut: float, rejoin: int
) -> None:
    score_parts, label_parts, feed = layout
    rows = _offsets(feed)
    k = int(cut * len(rows))
    first = ClusterDriftCore(score_parts, label_parts, CONFIG, LATENESS_MS)
    logged = _feed_core(first, rows[:k])
    detectors = ClusterDetectors(CONFIG)
    before = [e for r in logged for e in detectors.apply(r)]

    log = [decode_record(encode_record(r)) for r in logged]
    restored = restore(log, score_parts, label_parts, CONFIG, LATENESS_MS, rejoin)
    resume = restored.core.resume()
    start = {("scores", p): w.offset for p, w in enumerate(resume.scores.partitions)}
    start |= {("labels", p): w.offset for p, w in enumerate(resume.labels.partitions)}
    again = [row for row in rows if row[2] >= start[row[0], row[1]]]
    produced = _feed_core(restored.core, again) + _finish(restored.core, score_parts, label_parts)
    new = [r for r in produced if restored.is_new(r)]
    for r in produced:
        if not restored.is_new(r) and isinstance(r, ScoreHour) and r.hour in restored.logged_scores:
            assert r.stats == restored.logged_scores[r.hour].stats  # recomputed alike
    after = [e for r in new for e in restored.detectors.apply(r)]

    data, concept = sides(before + after)
    ref_data, ref_concept = sides(reference().events)
    assert data == ref_data  # the data side never depends on the join
    if rejoin == 10**6:  # the whole history read again: nothing forgotten
        assert concept == ref_concept
        assert detector_inputs([*logged, *new]) == detector_inputs(reference().records)


def test_a_record_logged_twice_replays_into_the_same_state() -> None:
    records = reference().records
    doubled = [r for record in records for r in (record, record)]
    once = ClusterDetectors(CONFIG)
    twice = ClusterDetectors(CONFIG)
    assert [e for r in records for e in once.apply(r)] == [
        e for r in doubled for e in twice.apply(r)
    ]
    assert once.statistics() == twice.statistics()


def test_hour_records_round_trip_through_json_exactly() -> None:
    for record in reference().records:
        assert decode_record(encode_record(record)) == record
