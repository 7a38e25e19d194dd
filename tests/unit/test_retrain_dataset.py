"""The training set from the scored feature log: de-duplication, order, label availability,
presumed genuine, counts, and parity with training from transactions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import xgboost as xgb

from models.features import FEATURE_NAMES
from models.fraud_labels import attributed_frauds
from models.scoring import Scorer, score_offline
from models.thresholds import Thresholds
from models.training import Dataset, TrainingConfig, train, train_on_dataset
from retrain.dataset import WindowCounts, dataset_from_scores
from schemas.errors import InputError, TrainingError
from schemas.events import FraudScore, Label, epoch_ms

if TYPE_CHECKING:
    from tests.conftest import SimulatedData

T0 = datetime(2024, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def _features(seed: float) -> dict[str, float]:
    return {name: seed + i for i, name in enumerate(FEATURE_NAMES)}


def _score(
    tx: str,
    when: timedelta,
    features: dict[str, float] | None = None,
    user: str = "u1",
    score: float = 0.1,
) -> FraudScore:
    at = T0 + when
    return FraudScore(
        transaction_id=tx,
        user_id=user,
        score=score,
        decision="approve",
        model_version="v1",
        reasons=[],
        features=features if features is not None else _features(int(tx[2:])),
        event_time=at,
        scored_at=at,
        latency_ms=1.0,
    )


def _label(tx: str, is_fraud: bool, when: timedelta | None) -> Label:
    return Label(
        transaction_id=tx, is_fraud=is_fraud, labeled_at=None if when is None else T0 + when
    )


def _ms(when: timedelta) -> int:
    return epoch_ms(T0 + when)


# -- rows -------------------------------------------------------------------------------------
def test_rows_are_the_logged_vectors_in_feature_order_by_event_time_then_id() -> None:
    scores = [
        _score("tx3", 2 * DAY),
        _score("tx2", 1 * DAY),
        _score("tx1", 1 * DAY),
        _score("tx0", 0 * DAY),
    ]
    labels = [_label(f"tx{i}", i == 2, None) for i in range(4)]
    log = dataset_from_scores(scores, labels)
    data = log.dataset
    assert data.transaction_ids == ["tx0", "tx1", "tx2", "tx3"]
    assert data.labels.tolist() == [False, False, True, False]
    assert data.event_time_ms.tolist() == [_ms(0 * DAY), _ms(DAY), _ms(DAY), _ms(2 * DAY)]
    assert data.matrix.shape == (4, len(FEATURE_NAMES))
    assert data.matrix[1].tolist() == [float(1 + i) for i in range(len(FEATURE_NAMES))]
    assert log.as_of_ms == _ms(2 * DAY)  # default: the latest event time


def test_feature_order_inside_the_record_does_not_matter() -> None:
    reordered = dict(reversed(list(_features(5).items())))
    log = dataset_from_scores([_score("tx5", DAY, reordered)], [_label("tx5", False, None)])
    assert log.dataset.matrix[0].tolist() == list(_features(5).values())


def test_identical_duplicates_are_dropped_and_counted() -> None:
    first = _score("tx1", DAY)
    again = first.model_copy(update={"score": 0.9, "scored_at": T0 + 3 * DAY})  # re-scored
    log = dataset_from_scores(
        [first, _score("tx2", DAY), again, first], [_label("tx1", True, None)]
    )
    assert log.counts.records == 4
    assert log.counts.duplicates == 2
    assert log.dataset.transaction_ids == ["tx1"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"features": {**_features(1), "amount": 99.0}},
            r"different features \(amount: 1\.0 and 99\.0\)",
        ),
        ({"event_time": T0 + 2 * DAY}, "different event times"),
        ({"user_id": "u2"}, r"different users \(u1 and u2\)"),
    ],
)
def test_duplicates_that_disagree_are_an_input_error(change: dict[str, Any], message: str) -> None:
    first = _score("tx1", DAY)
    with pytest.raises(InputError, match=f"transaction tx1 appears twice .*{message}"):
        dataset_from_scores([first, first.model_copy(update=change)], [])


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({k: v for k, v in _features(1).items() if k != "amount"}, r"missing: amount; unknown: -"),
        ({**_features(1), "device_age": 3.0}, r"missing: -; unknown: device_age"),
    ],
)
def test_other_feature_names_are_refused(features: dict[str, float], message: str) -> None:
    with pytest.raises(InputError, match=f"transaction tx1 \\(model v1\\) .*{message}"):
        dataset_from_scores([_score("tx1", DAY, features)], [])


# -- label availability -----------------------------------------------------------------------
def test_only_labels_known_at_as_of_count() -> None:
    scores = [_score(f"tx{i}", i * timedelta(hours=1)) for i in range(4)]
    as_of = timedelta(days=3)
    labels = [
        _label("tx0", True, as_of - timedelta(hours=1)),
        _label("tx1", True, as_of),  # known at as_of exactly
        _label("tx2", True, as_of + timedelta(milliseconds=1)),  # too late
        _label("tx3", False, None),  # no labeled_at: always known
    ]
    log = dataset_from_scores(scores, labels, _ms(as_of))
    assert log.dataset.transaction_ids == ["tx0", "tx1", "tx3"]
    assert log.dataset.labels.tolist() == [True, True, False]
    assert log.counts.kept.unlabelled_dropped == 1


def test_the_latest_known_label_wins_whatever_the_input_order() -> None:
    scores = [_score("tx1", DAY), _score("tx2", DAY), _score("tx3", DAY)]
    labels = [
        _label("tx1", True, 2 * DAY),
        _label("tx1", False, 3 * DAY),  # chargeback reversed: genuine after all
        _label("tx2", False, 2 * DAY),
        _label("tx2", True, 2 * DAY),  # same time: fraud wins
        _label("tx3", True, 2 * DAY),
        _label("tx3", False, 9 * DAY),  # not known yet at as_of
    ]
    expected = [False, True, True]
    for seed in range(3):
        shuffled = list(labels)
        random.Random(seed).shuffle(shuffled)
        log = dataset_from_scores(scores, shuffled, _ms(4 * DAY))
        assert log.dataset.labels.tolist() == expected


def test_presumed_genuine_after_the_given_age_unless_a_fraud_is_known() -> None:
    as_of = 10 * DAY
    scores = [
        _score("tx1", as_of - 3 * DAY - timedelta(milliseconds=1)),  # older than 3 days
        _score("tx2", as_of - 3 * DAY),  # exactly 3 days old: presumed too
        _score("tx3", as_of - 3 * DAY + timedelta(milliseconds=1)),  # younger: dropped
        _score("tx4", as_of - 5 * DAY),  # old, fraud known
        _score("tx5", as_of - 5 * DAY + timedelta(hours=1)),  # old, fraud known only later
        _score("tx6", as_of - 6 * DAY),  # old, confirmed genuine
    ]
    labels = [
        _label("tx4", True, as_of - DAY),
        _label("tx5", True, as_of + DAY),
        _label("tx6", False, as_of - DAY),
    ]
    log = dataset_from_scores(scores, labels, _ms(as_of), presume_genuine_after_days=3)
    rows = dict(zip(log.dataset.transaction_ids, log.dataset.labels.tolist(), strict=True))
    presumed = dict(zip(log.dataset.transaction_ids, log.presumed.tolist(), strict=True))
    assert rows == {"tx6": False, "tx4": True, "tx5": False, "tx1": False, "tx2": False}
    assert presumed == {"tx6": False, "tx4": False, "tx5": True, "tx1": True, "tx2": True}
    assert log.counts.kept == WindowCounts(
        rows=5, frauds=1, genuine=1, presumed_genuine=3, unlabelled_dropped=1
    )

    without = dataset_from_scores(scores, labels, _ms(as_of))
    assert without.dataset.transaction_ids == ["tx6", "tx4"]
    assert without.counts.kept.unlabelled_dropped == 4
    assert not without.presumed.any()


def test_counts_and_window_counts() -> None:
    scores = [_score(f"tx{i}", i * DAY) for i in range(6)]
    scores.append(scores[0])
    labels = [
        _label("tx0", True, DAY),
        _label("tx1", False, 8 * DAY),
        _label("tx9", True, DAY),  # not in the log (scored before it starts)
        _label("tx8", True, 30 * DAY),  # not in the log and not known yet: not counted
    ]
    log = dataset_from_scores(scores, labels, _ms(4 * DAY), presume_genuine_after_days=2)
    assert log.counts.to_dict() == {
        "records": 7,
        "duplicates": 1,
        "after_as_of": 1,  # tx5
        "unmatched_labels": 1,
        "rows": 3,  # tx0 fraud, tx1 + tx2 presumed (tx1's genuine label comes at day 8)
        "frauds": 1,
        "genuine": 0,
        "presumed_genuine": 2,
        "unlabelled_dropped": 2,  # tx3, tx4: younger than 2 days
    }
    assert log.window_counts(_ms(DAY), _ms(4 * DAY)) == WindowCounts(
        rows=2, frauds=0, genuine=0, presumed_genuine=2, unlabelled_dropped=1
    )


def test_bad_arguments_are_input_errors() -> None:
    with pytest.raises(InputError, match="score log is empty"):
        dataset_from_scores([], [])
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="presume_genuine_after_days"):
            dataset_from_scores([_score("tx1", DAY)], [], presume_genuine_after_days=bad)


def test_an_empty_log_with_an_as_of_gives_an_empty_dataset() -> None:
    log = dataset_from_scores([], [_label("tx1", True, None)], _ms(DAY))
    assert len(log.dataset) == 0
    assert log.dataset.matrix.shape == (0, len(FEATURE_NAMES))
    assert log.counts.unmatched_labels == 1


# -- Dataset checks (models.training) ---------------------------------------------------------
def test_dataset_rejects_misaligned_or_unordered_rows() -> None:
    width = len(FEATURE_NAMES)
    good = {
        "matrix": np.zeros((2, width)),
        "labels": np.array([True, False]),
        "event_time_ms": np.array([1, 2], dtype=np.int64),
        "transaction_ids": ["a", "b"],
    }
    Dataset(**good)
    with pytest.raises(InputError, match="event-time order"):
        Dataset(**{**good, "event_time_ms": np.array([2, 1], dtype=np.int64)})
    with pytest.raises(InputError, match="differ in length"):
        Dataset(**{**good, "transaction_ids": ["a"]})
    with pytest.raises(InputError, match=f"must have {width} features"):
        Dataset(**{**good, "matrix": np.zeros((2, width - 1))})
    with pytest.raises(InputError, match="booleans"):
        Dataset(**{**good, "labels": np.array([1, 0])})


# -- the log trains the same model as the transactions ----------------------------------------
def _any_scorer() -> Scorer:
    """A throwaway model: the logged features do not depend on the model that scored them."""
    rng = np.random.default_rng(0)
    rows = rng.random((40, len(FEATURE_NAMES)))
    data = xgb.DMatrix(rows, label=rng.random(40) < 0.5, feature_names=list(FEATURE_NAMES))
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1}, data, num_boost_round=2)
    return Scorer(booster, "v0", Thresholds(review=0.5, decline=0.9))


def test_training_from_the_log_equals_training_from_transactions(
    tiny_dataset: SimulatedData,
) -> None:
    """Same rows, same labels, same order: the same model, bit for bit, and the same metadata."""
    config = TrainingConfig()
    expected = train(tiny_dataset.transactions, tiny_dataset.labels, config)
    scores = list(
        score_offline(
            tiny_dataset.transactions, _any_scorer(), attributed_frauds(tiny_dataset.labels).frauds
        )
    )
    log = dataset_from_scores(scores, tiny_dataset.labels)
    assert log.as_of_ms == max(epoch_ms(tx.timestamp) for tx in tiny_dataset.transactions)

    result = train_on_dataset(log.dataset, config, log.as_of_ms)

    assert result.model_bytes == expected.model_bytes
    assert result.metadata == expected.metadata
    assert result.thresholds == expected.thresholds


def _empty() -> Dataset:
    return Dataset(
        matrix=np.zeros((0, len(FEATURE_NAMES))),
        labels=np.zeros(0, dtype=bool),
        event_time_ms=np.zeros(0, dtype=np.int64),
        transaction_ids=[],
    )


def test_train_on_dataset_refuses_a_contradicting_as_of() -> None:
    with pytest.raises(InputError, match="contradicts as_of_ms"):
        train_on_dataset(_empty(), TrainingConfig(as_of=T0), _ms(DAY))


def test_train_on_dataset_without_rows_in_the_window_is_a_training_error() -> None:
    with pytest.raises(TrainingError, match="fit part of the training window has no labelled"):
        train_on_dataset(_empty(), TrainingConfig(), _ms(DAY))
