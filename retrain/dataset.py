"""A training set from the scored feature log: the vectors the stream scored, with their labels.

Each `FraudScore` carries the exact feature vector the model saw, so training on the log has no
training/serving skew and needs neither the raw transactions nor a feature replay.

Label availability at `as_of` (labels are known days after the transaction):

* only labels with `labeled_at <= as_of` count (no `labeled_at`: known all along); if several
  are known for one transaction, the latest wins (a tie: the fraud label), so the result does
  not depend on the order labels were read in;
* a scored transaction without a known label is dropped, unless `presume_genuine_after_days`
  is set and it is at least that old at `as_of`: then it counts as genuine.

Presuming genuine trades label noise for freshness. Genuine transactions are only confirmed when
the chargeback window closes (7-8 days in the simulator), so without the rule the last week
holds almost nothing but the frauds reported so far, and a retrain must leave it out. With the
rule, a fraud reported later than its age at `as_of` is trained on (and evaluated) as genuine:
the noise sits in the youngest days and hits the kinds of fraud that are reported late. In
simulated worlds (a card is reported once, a lognormal delay after its first fraud) 5-15 % of
the frauds 3-7 days old were still unreported with a 3-day presumption, 1-5 % of those 7-11
days old with 7 days. Both models meet the same noise on the holdout, so the comparison stays
fair, but absolute metrics read low. Pick the largest value freshness allows, and keep
`delay_days` >= it (see `retrain.challenger`).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from models.features import FEATURE_NAMES
from models.training import Dataset
from schemas.errors import InputError
from schemas.events import FraudScore, Label, epoch_ms

MS_PER_DAY = 86_400_000
_NAMES = frozenset(FEATURE_NAMES)
_WIDTH = len(FEATURE_NAMES)


@dataclass(frozen=True)
class WindowCounts:
    """What one stretch of the log holds at `as_of`."""

    rows: int
    """Rows kept: labelled or presumed genuine."""
    frauds: int
    genuine: int
    """Confirmed genuine by a label."""
    presumed_genuine: int
    unlabelled_dropped: int
    """No label known yet and too young to presume genuine."""

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class DatasetCounts:
    """What happened to the records of the log while building the dataset."""

    records: int
    """FraudScore records read, duplicates included."""
    duplicates: int
    """Repeated deliveries of a transaction already read (identical, dropped)."""
    after_as_of: int
    """Transactions with an event time after `as_of` (not known then, ignored)."""
    unmatched_labels: int
    """Labels known at `as_of` for transactions not in the log (e.g. scored before it starts)."""
    kept: WindowCounts

    def to_dict(self) -> dict[str, int]:
        return {
            "records": self.records,
            "duplicates": self.duplicates,
            "after_as_of": self.after_as_of,
            "unmatched_labels": self.unmatched_labels,
            **self.kept.to_dict(),
        }


@dataclass(frozen=True, eq=False)
class LogDataset:
    """The labelled rows at `as_of`, which of them are presumed genuine, and the counts."""

    dataset: Dataset
    presumed: np.ndarray
    """Per row: genuine by presumption, not by a label."""
    unlabelled_event_time_ms: np.ndarray
    """Event times of the dropped unlabelled rows (for per-window counts)."""
    as_of_ms: int
    counts: DatasetCounts

    def window_counts(self, start_ms: int, end_ms: int) -> WindowCounts:
        """Counts for the rows with an event time in [start, end)."""
        times = self.dataset.event_time_ms
        inside = (times >= start_ms) & (times < end_ms)
        dropped = self.unlabelled_event_time_ms
        frauds = int((self.dataset.labels & inside).sum())
        presumed = int((self.presumed & inside).sum())
        rows = int(inside.sum())
        return WindowCounts(
            rows=rows,
            frauds=frauds,
            genuine=rows - frauds - presumed,
            presumed_genuine=presumed,
            unlabelled_dropped=int(((dropped >= start_ms) & (dropped < end_ms)).sum()),
        )


def dataset_from_scores(
    scores: Iterable[FraudScore],
    labels: Iterable[Label],
    as_of_ms: int | None = None,
    presume_genuine_after_days: float | None = None,
) -> LogDataset:
    """Labelled rows of the scored log known at `as_of_ms` (default: the latest event time).

    Rows are de-duplicated by transaction id and ordered by (event time, transaction id), so
    the result does not depend on how partitions interleaved when the log was read. Two copies
    of a transaction that differ (features, event time or user) are an InputError: the log then
    mixes feature computations and is no sound training set.
    """
    presume_ms = _presume_ms(presume_genuine_after_days)
    index: dict[str, int] = {}
    ids: list[str] = []
    users: list[str] = []
    times = array("q")
    values = array("d")
    records = duplicates = 0
    for score in scores:
        records += 1
        row = _row(score)
        when = epoch_ms(score.event_time)
        seen = index.get(score.transaction_id)
        if seen is not None:
            _check_duplicate(score, seen, row, when, users, times, values)
            duplicates += 1
            continue
        index[score.transaction_id] = len(ids)
        ids.append(score.transaction_id)
        users.append(score.user_id)
        times.append(when)
        values.extend(row)
    if as_of_ms is None:
        if not ids:
            raise InputError("the score log is empty: no as_of can be derived from it")
        as_of_ms = max(times)

    known, unmatched = _known_labels(labels, index, as_of_ms)

    time_arr = np.frombuffer(times, dtype=np.int64) if ids else np.empty(0, np.int64)
    matrix = (
        np.frombuffer(values, dtype=np.float64).reshape(len(ids), _WIDTH)
        if ids
        else np.empty((0, _WIDTH))
    )
    label_of = np.zeros(len(ids), dtype=np.int8)  # 0 unknown, 1 genuine, 2 fraud
    for row_index, is_fraud in known.items():
        label_of[row_index] = 2 if is_fraud else 1
    happened = time_arr <= as_of_ms
    presumed = (label_of == 0) & happened
    if presume_ms is None:
        presumed[:] = False
    else:
        presumed &= as_of_ms - time_arr >= presume_ms
    keep = happened & ((label_of > 0) | presumed)
    dropped = happened & ~keep

    id_arr = np.array(ids, dtype=np.str_)
    order = np.lexsort((id_arr, time_arr))
    order = order[keep[order]]
    dataset = Dataset(
        matrix=np.array(matrix[order], dtype=np.float64),
        labels=label_of[order] == 2,
        event_time_ms=np.array(time_arr[order], dtype=np.int64),
        transaction_ids=[ids[i] for i in order],
    )
    presumed_rows = presumed[order]
    frauds = int(dataset.labels.sum())
    n_presumed = int(presumed_rows.sum())
    counts = DatasetCounts(
        records=records,
        duplicates=duplicates,
        after_as_of=int((~happened).sum()),
        unmatched_labels=unmatched,
        kept=WindowCounts(
            rows=len(dataset),
            frauds=frauds,
            genuine=len(dataset) - frauds - n_presumed,
            presumed_genuine=n_presumed,
            unlabelled_dropped=int(dropped.sum()),
        ),
    )
    return LogDataset(
        dataset=dataset,
        presumed=presumed_rows,
        unlabelled_event_time_ms=np.sort(time_arr[dropped]),
        as_of_ms=as_of_ms,
        counts=counts,
    )


def _presume_ms(days: float | None) -> int | None:
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int | float) or not math.isfinite(days):
        raise InputError(f"presume_genuine_after_days must be a finite number, got {days!r}")
    if days < 0:
        raise InputError(f"presume_genuine_after_days must not be negative, got {days}")
    return round(days * MS_PER_DAY)


def _row(score: FraudScore) -> list[float]:
    """The feature vector in FEATURE_NAMES order; other names mean another feature version."""
    features = score.features
    if features.keys() != _NAMES:
        missing = sorted(_NAMES - features.keys())
        extra = sorted(features.keys() - _NAMES)
        raise InputError(
            f"score of transaction {score.transaction_id} (model {score.model_version}) carries "
            f"other features than this code builds (missing: {', '.join(missing) or '-'}; "
            f"unknown: {', '.join(extra) or '-'}): it was scored by another feature version, "
            "so its rows cannot train this one; start the log after the feature change"
        )
    return [features[name] for name in FEATURE_NAMES]


def _check_duplicate(
    score: FraudScore,
    seen: int,
    row: list[float],
    when: int,
    users: list[str],
    times: array[int],
    values: array[float],
) -> None:
    """At-least-once delivery repeats records; a repeat that differs is corrupt input."""
    where = f"transaction {score.transaction_id} appears twice in the score log with different"
    if users[seen] != score.user_id:
        raise InputError(f"{where} users ({users[seen]} and {score.user_id})")
    if times[seen] != when:
        raise InputError(f"{where} event times ({times[seen]} and {when} ms)")
    first = values[seen * _WIDTH : (seen + 1) * _WIDTH]
    for name, old, new in zip(FEATURE_NAMES, first, row, strict=True):
        if old != new:
            raise InputError(
                f"{where} features ({name}: {old!r} and {new!r}); repeats from at-least-once "
                "delivery are identical, so the log mixes two feature computations"
            )


def _known_labels(
    labels: Iterable[Label], index: dict[str, int], as_of_ms: int
) -> tuple[dict[int, bool], int]:
    """Row index -> is_fraud of the latest label known at as_of; and the unmatched count."""
    latest: dict[int, tuple[int, bool]] = {}
    unmatched = 0
    for label in labels:
        # Event times start at 1970: -1 sorts a label without a time before every timed one.
        when = epoch_ms(label.labeled_at) if label.labeled_at is not None else -1
        if when > as_of_ms:
            continue
        row = index.get(label.transaction_id)
        if row is None:
            unmatched += 1
            continue
        key = (when, label.is_fraud)
        if row not in latest or key > latest[row]:
            latest[row] = key
    return {row: is_fraud for row, (_, is_fraud) in latest.items()}, unmatched
