"""Training: a useful model, complete metadata, determinism, label cut-off, thresholds, errors."""

from __future__ import annotations

import dataclasses
import itertools
import platform
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import sklearn
import xgboost as xgb

from models.evaluation import Costs
from models.features import FEATURE_NAMES
from models.thresholds import Thresholds, choose_thresholds
from models.training import TrainingConfig, TrainingResult, join_labels, train
from schemas.errors import InputError, TrainingError
from schemas.events import Label, Transaction, epoch_ms

if TYPE_CHECKING:
    from tests.conftest import SimulatedData

DAY_MS = 86_400_000


def _when(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


# -- the trained model and its metadata -------------------------------------------------------
def test_validation_average_precision_clearly_beats_the_fraud_rate(
    small_training: TrainingResult,
) -> None:
    validation = small_training.metadata["metrics"]["validation"]
    base_rate = validation["n_frauds"] / validation["n_transactions"]
    assert validation["n_frauds"] >= 10
    assert validation["average_precision"] > 10 * base_rate
    assert 0.8 < validation["auc_roc"] <= 1.0


def test_thresholds_are_ordered_and_recorded(small_training: TrainingResult) -> None:
    th = small_training.thresholds
    assert 0.0 <= th.review <= th.decline <= 1.0
    assert small_training.metadata["thresholds"] == th.to_dict()
    assert small_training.metadata["costs"] == dataclasses.asdict(Costs())


def test_model_bytes_load_as_the_booster_described_by_the_metadata(
    small_training: TrainingResult,
) -> None:
    booster = xgb.Booster()
    booster.load_model(bytearray(small_training.model_bytes))
    assert booster.feature_names == list(FEATURE_NAMES)
    assert booster.num_boosted_rounds() == small_training.metadata["params"]["num_boost_round"]
    rows = np.zeros((3, len(FEATURE_NAMES)))
    scores = booster.predict(xgb.DMatrix(rows, feature_names=list(FEATURE_NAMES)))
    assert ((scores >= 0.0) & (scores <= 1.0)).all()


def test_metadata_describes_features_window_data_libraries_and_lineage(
    small_training: TrainingResult, small_dataset: SimulatedData
) -> None:
    meta = small_training.metadata
    config = TrainingConfig()
    assert meta["feature_names"] == list(FEATURE_NAMES)

    window = meta["training_window"]
    last_tx = max(tx.timestamp for tx in small_dataset.transactions)
    as_of = epoch_ms(_when(window["as_of"]))
    assert as_of == epoch_ms(last_tx)  # default: the last transaction
    end = epoch_ms(_when(window["end"]))
    start = epoch_ms(_when(window["start"]))
    fit_end = epoch_ms(_when(window["fit_end"]))
    valid_start = epoch_ms(_when(window["validation_start"]))
    assert end == as_of - config.delay_days * DAY_MS
    assert start == end - config.train_days * DAY_MS
    assert valid_start == end - config.valid_days * DAY_MS
    assert fit_end == valid_start - config.gap_days * DAY_MS
    assert (window["delay_days"], window["gap_days"]) == (config.delay_days, config.gap_days)

    data = meta["data"]
    assert len(data["fingerprint"]) == 64
    int(data["fingerprint"], 16)
    assert 0 < data["n_frauds"] < data["n_transactions"]
    # The gap belongs to neither part.
    assert 0 < data["n_fit"] + data["n_validation"] < data["n_transactions"]
    assert data["n_validation"] == meta["metrics"]["validation"]["n_transactions"]

    assert meta["library_versions"] == {
        "python": platform.python_version(),
        "xgboost": xgb.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }
    assert meta["lineage"] == {"parent": None, "trigger": "manual"}
    assert meta["feature_spec"]["allowed_lateness_ms"] == config.allowed_lateness_ms


def test_training_is_deterministic(
    small_training: TrainingResult, small_dataset: SimulatedData
) -> None:
    lineage = {"parent": "v1", "trigger": "drift"}
    again = train(small_dataset.transactions, small_dataset.labels, TrainingConfig(), lineage)
    assert again.model_bytes == small_training.model_bytes
    assert again.metadata["data"] == small_training.metadata["data"]
    assert again.thresholds == small_training.thresholds
    assert again.metadata["metrics"] == small_training.metadata["metrics"]
    assert again.metadata["lineage"] == lineage


def test_labels_known_after_as_of_are_not_used(
    small_training: TrainingResult, small_dataset: SimulatedData
) -> None:
    window = small_training.metadata["training_window"]
    as_of, start, end = (_when(window[key]) for key in ("as_of", "start", "end"))
    tx_time = {tx.transaction_id: tx.timestamp for tx in small_dataset.transactions}
    known_frauds = sorted(
        lab.transaction_id
        for lab in small_dataset.labels
        if lab.is_fraud
        and lab.labeled_at is not None
        and lab.labeled_at <= as_of
        and start <= tx_time[lab.transaction_id] < end
    )
    assert len(known_frauds) >= 40
    reported_late = set(known_frauds[::3])
    labels = [
        lab.model_copy(update={"labeled_at": as_of + timedelta(seconds=1)})
        if lab.transaction_id in reported_late
        else lab
        for lab in small_dataset.labels
    ]

    result = train(small_dataset.transactions, labels, TrainingConfig(as_of=as_of))

    assert result.metadata["training_window"] == window
    before, after = small_training.metadata["data"], result.metadata["data"]
    assert after["n_frauds"] == before["n_frauds"] - len(reported_late)
    assert after["n_transactions"] == before["n_transactions"] - len(reported_late)
    assert after["fingerprint"] != before["fingerprint"]


# -- joining labels ---------------------------------------------------------------------------
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _tx(number: int) -> Transaction:
    return Transaction(
        transaction_id=f"tx{number}",
        user_id="u1",
        merchant_id="m1",
        amount=10.0,
        timestamp=T0 + timedelta(minutes=number),
    )


def test_join_labels_keeps_only_labels_known_at_as_of() -> None:
    txs = [_tx(i) for i in range(4)]
    as_of = T0 + timedelta(days=2)
    labels = [
        Label(transaction_id="tx0", is_fraud=True, labeled_at=as_of - timedelta(hours=1)),
        Label(transaction_id="tx1", is_fraud=True, labeled_at=as_of),
        Label(transaction_id="tx2", is_fraud=True, labeled_at=as_of + timedelta(milliseconds=1)),
        Label(transaction_id="tx3", is_fraud=False),  # no labeled_at: always known
    ]
    assert join_labels(txs, labels, epoch_ms(as_of)) == {"tx0": True, "tx1": True, "tx3": False}
    assert join_labels(txs, labels) == {"tx0": True, "tx1": True, "tx2": True, "tx3": False}


def test_join_labels_rejects_labels_of_unknown_transactions() -> None:
    labels = [
        Label(transaction_id="tx0", is_fraud=False),
        Label(transaction_id="ghost-1", is_fraud=True),
        Label(transaction_id="ghost-2", is_fraud=True),
    ]
    with pytest.raises(InputError, match=r"2 label\(s\) refer to .* \(first: ghost-1\)"):
        join_labels([_tx(0)], labels)


# -- data that cannot give a sound model ----------------------------------------------------
def test_a_validation_part_without_frauds_is_a_training_error(
    tiny_dataset: SimulatedData,
) -> None:
    as_of = max(tx.timestamp for tx in tiny_dataset.transactions)
    config = TrainingConfig(as_of=as_of)
    valid_from = as_of - timedelta(days=config.delay_days + config.valid_days)
    in_validation = {
        tx.transaction_id for tx in tiny_dataset.transactions if tx.timestamp >= valid_from
    }
    labels = [
        lab.model_copy(update={"is_fraud": False}) if lab.transaction_id in in_validation else lab
        for lab in tiny_dataset.labels
    ]
    with pytest.raises(TrainingError, match="validation part has only one class"):
        train(tiny_dataset.transactions, labels, config)


def test_too_few_frauds_is_a_training_error(tiny_dataset: SimulatedData) -> None:
    with pytest.raises(TrainingError, match=r"only \d+ frauds \(need at least 100000\)"):
        train(tiny_dataset.transactions, tiny_dataset.labels, TrainingConfig(min_frauds=100_000))


def test_no_transactions_is_a_training_error() -> None:
    with pytest.raises(TrainingError, match="no transactions"):
        train([], [])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train_days": 7.0}, "must be longer than gap \\+ validation"),
        ({"train_days": 6.0, "gap_days": 2.0}, "must be longer than gap \\+ validation"),
        ({"gap_days": 0.0, "valid_days": 21.0}, "must be longer than gap \\+ validation"),
        ({"valid_days": 0.0}, "must be positive"),
        ({"train_days": -1.0}, "must be positive"),
        ({"gap_days": -1.0}, "must not be negative"),
        ({"delay_days": -0.5}, "must not be negative"),
    ],
)
def test_config_validation_rejects_impossible_windows(
    changes: dict[str, Any], message: str
) -> None:
    config = TrainingConfig(**changes)
    with pytest.raises(InputError, match=message):
        config.validate()
    with pytest.raises(InputError, match=message):
        train([_tx(0)], [], config)  # checked before any work


def test_config_validation_accepts_the_defaults_and_a_tight_window() -> None:
    TrainingConfig().validate()
    TrainingConfig(train_days=7.5, gap_days=3.0, valid_days=4.0).validate()


# -- thresholds -------------------------------------------------------------------------------
COSTS = Costs(review=5.0, missed_fraud=100.0, false_decline=50.0)


def _total_cost(th: Thresholds, scores: np.ndarray, is_fraud: np.ndarray, costs: Costs) -> float:
    """Cost of deciding every score with `th`, from the definition of the costs."""
    total = 0.0
    for score, fraud in zip(scores.tolist(), is_fraud.tolist(), strict=True):
        decision = th.decide(score)
        if decision == "review":
            total += costs.review
        elif decision == "approve" and fraud:
            total += costs.missed_fraud
        elif decision == "decline" and not fraud:
            total += costs.false_decline
    return total


def _brute_force(
    scores: np.ndarray, is_fraud: np.ndarray, costs: Costs
) -> tuple[float, list[Thresholds]]:
    """Lowest cost over every distinct pair of decisions, and the pairs that reach it.

    Thresholds only matter through the scores they separate, so each score, plus "above every
    score", is a candidate for either threshold.
    """
    candidates = sorted({*scores.tolist(), 1.0})
    best, argmin = float("inf"), []
    for review, decline in itertools.combinations_with_replacement(candidates, 2):
        th = Thresholds(review=review, decline=decline)
        cost = _total_cost(th, scores, is_fraud, costs)
        if cost < best:
            best, argmin = cost, [th]
        elif cost == best:
            argmin.append(th)
    return best, argmin


def test_choose_thresholds_minimises_cost_on_a_hand_made_example() -> None:
    #            genuine ....................................  fraud .......................
    scores = np.array([0.05, 0.10, 0.20, 0.30, 0.45, 0.60, 0.70, 0.40, 0.55, 0.80, 0.90, 0.95])
    is_fraud = np.array([False] * 7 + [True] * 5)
    best, argmin = _brute_force(scores, is_fraud, COSTS)
    assert len(argmin) == 1, "the example must have one optimum to pin it down"
    chosen = choose_thresholds(scores, is_fraud, COSTS)
    assert chosen == argmin[0]
    assert _total_cost(chosen, scores, is_fraud, COSTS) == best
    # For the record, and as a check on the brute force itself: review the middle band
    # (0.40 .. 0.70: 2 frauds, 3 genuine), decline from 0.80 (3 frauds), approve the rest.
    assert chosen == Thresholds(review=0.40, decline=0.80)
    assert best == 5 * 5.0


def test_choose_thresholds_can_do_without_a_review_band() -> None:
    # Reviews cost more than the mistakes they would prevent: one threshold does it all.
    costs = Costs(review=60.0, missed_fraud=100.0, false_decline=50.0)
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9])
    is_fraud = np.array([False, False, False, True, False, True, True])
    best, _ = _brute_force(scores, is_fraud, costs)
    chosen = choose_thresholds(scores, is_fraud, costs)
    assert _total_cost(chosen, scores, is_fraud, costs) == best == 50.0
    assert chosen.decline == 0.6
    assert not any(chosen.decide(s) == "review" for s in scores.tolist())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_choose_thresholds_matches_brute_force_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    is_fraud = rng.random(80) < 0.2
    is_fraud[:2] = [True, False]
    # Rounded scores, frauds higher on average: many ties, overlapping classes.
    scores = np.round(np.clip(rng.normal(0.3 + 0.4 * is_fraud, 0.2), 0.0, 1.0), 1)
    best, _ = _brute_force(scores, is_fraud, COSTS)
    chosen = choose_thresholds(scores, is_fraud, COSTS)
    assert _total_cost(chosen, scores, is_fraud, COSTS) == best


@pytest.mark.parametrize(
    "is_fraud", [[False, False, False], [True, True, True], []], ids=["genuine", "fraud", "empty"]
)
def test_choose_thresholds_needs_both_classes(is_fraud: list[bool]) -> None:
    scores = np.linspace(0.1, 0.9, len(is_fraud))
    with pytest.raises(TrainingError, match="both classes"):
        choose_thresholds(scores, np.array(is_fraud, dtype=bool), COSTS)


def test_thresholds_decide_at_the_boundaries() -> None:
    th = Thresholds(review=0.3, decline=0.8)
    assert [th.decide(s) for s in (0.0, 0.2999, 0.3, 0.7999, 0.8, 1.0)] == [
        "approve",
        "approve",
        "review",
        "review",
        "decline",
        "decline",
    ]
    with pytest.raises(ValueError, match="review <= decline"):
        Thresholds(review=0.9, decline=0.1)
