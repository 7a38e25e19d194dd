"""The retrain gate: holdout metrics by hand, the AP margin, each guardrail, degenerate holdouts."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from models.evaluation import Costs
from retrain.gate import METRIC_KEYS, GateConfig, Metrics, decide, holdout_metrics
from schemas.errors import InputError

COSTS = Costs(review=5.0, missed_fraud=100.0, false_decline=50.0)

# A champion on a holdout of 1000 transactions with 20 frauds; numbers are exact in binary so
# that "a change equal to the tolerance" is exactly representable.
CHAMPION: Metrics = {
    "n_transactions": 1000,
    "n_frauds": 20,
    "average_precision": 0.5,
    "precision_flagged": 0.5,
    "recall_flagged": 0.5,
    "flagged_rate": 0.25,
    "expected_cost_per_tx": 1.0,
}


def _challenger(**changes: Any) -> Metrics:
    """Clearly better in rank, equal on every guardrail unless told otherwise."""
    return {**CHAMPION, "average_precision": 0.75, **changes}


# -- holdout metrics --------------------------------------------------------------------------
def test_holdout_metrics_on_a_hand_made_example() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    labels = [True, False, True, False, False, False, False, True]
    decisions = [
        "decline",
        "review",
        "review",
        "approve",
        "approve",
        "approve",
        "approve",
        "approve",
    ]
    metrics = holdout_metrics(scores, decisions, np.array(labels), COSTS)
    # Frauds ranked 1st, 3rd and 8th: AP = (1/1 + 2/3 + 3/8) / 3.
    assert metrics["average_precision"] == pytest.approx((1 + 2 / 3 + 3 / 8) / 3)
    assert metrics["n_transactions"] == 8
    assert metrics["n_frauds"] == 3
    assert metrics["precision_flagged"] == pytest.approx(2 / 3)  # 3 flagged, 2 of them fraud
    assert metrics["recall_flagged"] == pytest.approx(2 / 3)  # the fraud at 0.2 was approved
    assert metrics["flagged_rate"] == pytest.approx(3 / 8)
    # Two reviews (2 x 5), one missed fraud (100), the decline hit a fraud (0).
    assert metrics["expected_cost_per_tx"] == pytest.approx(110 / 8)
    assert set(metrics) == set(METRIC_KEYS)


def test_flagged_means_review_or_decline() -> None:
    labels = np.array([True, False, False, False])
    only_declines = holdout_metrics(
        [0.9, 0.8, 0.1, 0.1], ["decline"] * 2 + ["approve"] * 2, labels, COSTS
    )
    only_reviews = holdout_metrics(
        [0.9, 0.8, 0.1, 0.1], ["review"] * 2 + ["approve"] * 2, labels, COSTS
    )
    for metrics in (only_declines, only_reviews):
        assert metrics["precision_flagged"] == 0.5
        assert metrics["flagged_rate"] == 0.5
        assert metrics["recall_flagged"] == 1.0
    assert only_declines["expected_cost_per_tx"] == 50 / 4  # one false decline
    assert only_reviews["expected_cost_per_tx"] == 10 / 4  # two reviews


@pytest.mark.parametrize("is_fraud", [False, True], ids=["no-fraud", "only-fraud"])
def test_one_class_holdout_gives_no_average_precision_and_no_nan(is_fraud: bool) -> None:
    metrics = holdout_metrics(
        [0.1, 0.5, 0.9], ["approve", "review", "decline"], [is_fraud] * 3, COSTS
    )
    assert metrics["average_precision"] is None
    assert all(value is None or math.isfinite(value) for value in metrics.values())
    if not is_fraud:
        assert metrics["recall_flagged"] == 0.0
        assert metrics["precision_flagged"] == 0.0


def test_nothing_flagged_has_zero_precision() -> None:
    metrics = holdout_metrics([0.1, 0.2], ["approve", "approve"], np.array([True, False]), COSTS)
    assert metrics["precision_flagged"] == 0.0
    assert metrics["flagged_rate"] == 0.0
    assert metrics["expected_cost_per_tx"] == 50.0  # one missed fraud over two


def test_empty_holdout_has_defined_metrics() -> None:
    metrics = holdout_metrics([], [], np.array([], dtype=bool), COSTS)
    assert metrics == {
        "n_transactions": 0,
        "n_frauds": 0,
        "average_precision": None,
        "precision_flagged": 0.0,
        "recall_flagged": 0.0,
        "flagged_rate": 0.0,
        "expected_cost_per_tx": 0.0,
    }


@pytest.mark.parametrize(
    ("scores", "decisions", "labels", "message"),
    [
        ([0.1, 0.2], ["approve"], [True, False], "differ in length"),
        ([0.1, 1.2], ["approve", "approve"], [True, False], r"in \[0, 1\]"),
        ([0.1, math.nan], ["approve", "approve"], [True, False], r"in \[0, 1\]"),
        ([0.1, 0.2], ["approve", "block"], [True, False], "unknown decision 'block'"),
        ([0.1, 0.2], ["approve", "approve"], [1, 0], "booleans"),
        ([[0.1, 0.2]], [["approve", "approve"]], [[True, False]], "one-dimensional"),
    ],
)
def test_holdout_metrics_rejects_bad_input(
    scores: Any, decisions: Any, labels: Any, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        holdout_metrics(scores, decisions, labels, COSTS)


# -- the decision -----------------------------------------------------------------------------
def test_a_better_challenger_passes_with_one_reason_per_check() -> None:
    decision = decide(CHAMPION, _challenger(), GateConfig())
    assert decision.passed
    assert [reason.split(" ")[0] for reason in decision.reasons] == [
        "average_precision",
        "precision_flagged",
        "flagged_rate",
        "expected_cost_per_tx",
    ]
    assert "challenger 0.7500 vs champion 0.5000" in decision.reasons[0]
    assert decision.champion == CHAMPION
    assert decision.challenger == _challenger()
    json.dumps(decision.to_dict())  # goes into the registry's metadata as is


@pytest.mark.parametrize("margin", [0.0, 0.01])
def test_a_tie_in_average_precision_does_not_pass(margin: float) -> None:
    decision = decide(CHAMPION, _challenger(average_precision=0.5), GateConfig(min_ap_gain=margin))
    assert not decision.passed
    assert decision.reasons == [
        f"average_precision FAILED: challenger 0.5000 vs champion 0.5000 "
        f"(gain +0.0000, must exceed {margin:.4f})"
    ]


def test_the_average_precision_gain_must_exceed_the_margin() -> None:
    config = GateConfig(min_ap_gain=0.25)
    assert not decide(CHAMPION, _challenger(average_precision=0.75), config).passed  # = margin
    assert decide(CHAMPION, _challenger(average_precision=0.7501), config).passed
    assert not decide(CHAMPION, _challenger(average_precision=0.74), config).passed
    # The default margin is 0.01: a gain of 0.005 is noise, 0.02 is not.
    assert not decide(CHAMPION, _challenger(average_precision=0.505)).passed
    assert decide(CHAMPION, _challenger(average_precision=0.52)).passed


GUARDRAILS = [
    # metric, value beyond the default tolerance, the config field that would allow it
    ("precision_flagged", 0.4375, "max_precision_drop"),  # drop 0.0625 > 0.05
    ("flagged_rate", 0.28125, "max_flagged_rate_rise"),  # rise 0.03125 > 0.02
    ("expected_cost_per_tx", 1.0009765625, "max_cost_rise"),  # any rise > 0
]


@pytest.mark.parametrize(("metric", "value", "field"), GUARDRAILS)
def test_each_guardrail_alone_blocks_a_better_ranking_challenger(
    metric: str, value: float, field: str
) -> None:
    decision = decide(CHAMPION, _challenger(**{metric: value}), GateConfig())
    assert not decision.passed
    assert len(decision.reasons) == 1
    reason = decision.reasons[0]
    assert reason.startswith(f"{metric} FAILED: ")
    assert f"challenger {value:.4f} vs champion {CHAMPION[metric]:.4f}" in reason
    # A wider tolerance lets the same challenger through.
    assert decide(CHAMPION, _challenger(**{metric: value}), GateConfig(**{field: 0.1})).passed


@pytest.mark.parametrize(
    ("metric", "value", "field", "tolerance"),
    [
        ("precision_flagged", 0.375, "max_precision_drop", 0.125),
        ("flagged_rate", 0.375, "max_flagged_rate_rise", 0.125),
        ("expected_cost_per_tx", 1.5, "max_cost_rise", 0.5),
    ],
)
def test_a_change_equal_to_the_tolerance_passes(
    metric: str, value: float, field: str, tolerance: float
) -> None:
    config = GateConfig(**{field: tolerance})
    assert decide(CHAMPION, _challenger(**{metric: value}), config).passed
    beyond = value - 0.0625 if metric == "precision_flagged" else value + 0.0625
    assert not decide(CHAMPION, _challenger(**{metric: beyond}), config).passed


def test_improvements_on_the_guardrails_pass() -> None:
    better = _challenger(precision_flagged=0.9, flagged_rate=0.1, expected_cost_per_tx=0.5)
    assert decide(CHAMPION, better, GateConfig(0.0, 0.0, 0.0, 0.0)).passed


def test_every_failed_check_is_reported() -> None:
    worse = {
        **CHAMPION,
        "average_precision": 0.25,
        "precision_flagged": 0.25,
        "flagged_rate": 0.5,
        "expected_cost_per_tx": 2.0,
    }
    decision = decide(CHAMPION, worse)
    assert not decision.passed
    assert len(decision.reasons) == 4
    assert all(" FAILED: challenger " in reason for reason in decision.reasons)


# -- degenerate holdouts and bad input ----------------------------------------------------------
@pytest.mark.parametrize("frauds", [0, 1000], ids=["no-fraud", "only-fraud"])
def test_a_one_class_holdout_is_a_clear_rejection(frauds: int) -> None:
    champion = {**CHAMPION, "n_frauds": frauds, "average_precision": None}
    challenger = {**champion, "precision_flagged": 0.9}
    decision = decide(champion, challenger)
    assert not decision.passed
    assert decision.reasons == [
        f"average_precision is undefined on a holdout with one class only ({frauds} frauds in "
        "1000 transactions): the models cannot be compared"
    ]


def test_a_holdout_without_frauds_from_real_scores_is_rejected() -> None:
    labels = np.zeros(4, dtype=bool)
    champion = holdout_metrics([0.1, 0.2, 0.3, 0.4], ["approve"] * 4, labels, COSTS)
    challenger = holdout_metrics([0.4, 0.3, 0.2, 0.1], ["approve"] * 4, labels, COSTS)
    decision = decide(champion, challenger)
    assert not decision.passed
    assert "one class only (0 frauds in 4 transactions)" in decision.reasons[0]


def test_an_empty_holdout_is_a_clear_rejection() -> None:
    empty = holdout_metrics([], [], np.array([], dtype=bool), COSTS)
    decision = decide(empty, dict(empty))
    assert not decision.passed
    assert decision.reasons == [
        "the holdout is empty: no labelled transaction to compare the models on"
    ]


def test_missing_average_precision_with_both_classes_is_rejected() -> None:
    decision = decide(CHAMPION, _challenger(average_precision=None))
    assert not decision.passed
    assert "average_precision is missing" in decision.reasons[0]


def test_metrics_of_different_holdouts_are_an_input_error() -> None:
    with pytest.raises(InputError, match="different holdouts"):
        decide(CHAMPION, _challenger(n_frauds=21))


def test_incomplete_metrics_are_an_input_error() -> None:
    partial = {key: value for key, value in CHAMPION.items() if key != "flagged_rate"}
    with pytest.raises(InputError, match="challenger metrics lack flagged_rate"):
        decide(CHAMPION, partial)


def test_a_nan_guardrail_metric_is_an_input_error() -> None:
    with pytest.raises(InputError, match="expected_cost_per_tx must be a finite number"):
        decide(CHAMPION, _challenger(expected_cost_per_tx=math.nan))


@pytest.mark.parametrize(
    "changes",
    [
        {"min_ap_gain": -0.01},
        {"max_precision_drop": math.nan},
        {"max_flagged_rate_rise": math.inf},
        {"max_cost_rise": True},
        {"min_ap_gain": "0.01"},
    ],
)
def test_gate_config_rejects_bad_margins(changes: dict[str, Any]) -> None:
    with pytest.raises(InputError, match="gate "):
        GateConfig(**changes)


def test_gate_config_defaults() -> None:
    assert GateConfig().to_dict() == {
        "min_ap_gain": 0.01,
        "max_precision_drop": 0.05,
        "max_flagged_rate_rise": 0.02,
        "max_cost_rise": 0.0,
    }
