"""Evaluation metrics and report files, checked against numbers computed by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from models.evaluation import (
    MS_PER_DAY,
    Costs,
    EvaluationInput,
    card_precision_at_k,
    cost_curve,
    evaluate,
    expected_cost,
)
from models.report import write_report
from schemas.errors import FraudstreamError, InputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DAY_1 = MS_PER_DAY  # first millisecond of the second UTC day


def make_input(
    decision: list[str],
    is_fraud: list[bool],
    score: list[float] | None = None,
    user_id: list[str] | None = None,
    event_time_ms: list[int] | None = None,
) -> EvaluationInput:
    n = len(decision)
    return EvaluationInput(
        user_id=np.array(user_id if user_id is not None else [f"u{i}" for i in range(n)]),
        event_time_ms=np.array(event_time_ms if event_time_ms is not None else [0] * n),
        score=np.array(score if score is not None else np.linspace(0.0, 1.0, n)),
        decision=np.array(decision),
        is_fraud=np.array(is_fraud),
    )


# --- card precision@k ---------------------------------------------------------------------------

# Day 0, k = 2: cards by max score a 0.9 (compromised: its fraud scored only 0.2), b 0.8 (genuine),
# c 0.8 (fraud), d 0.1 (fraud). The b/c tie goes to "b", so the alerts are a, b: precision 1/2.
# Day 1: one card ("a", fraud), fewer than k, so precision 1/1. Mean over the days: 0.75.
CARD_ROWS: list[tuple[str, int, float, bool]] = [
    ("a", 1_000, 0.9, False),
    ("a", 2_000, 0.2, True),
    ("b", DAY_1 - 1, 0.8, False),  # last millisecond of day 0
    ("c", 3_000, 0.8, True),
    ("c", 4_000, 0.3, False),
    ("d", 5_000, 0.1, True),
    ("a", DAY_1, 0.4, True),
]


def card_columns(rows: list[tuple[str, int, float, bool]]) -> tuple[Any, Any, Any, Any]:
    users, times, scores, frauds = zip(*rows, strict=True)
    return np.array(users), np.array(times), np.array(scores), np.array(frauds)


def test_card_precision_at_k_per_day_with_ties_and_fewer_cards_than_k() -> None:
    assert card_precision_at_k(*card_columns(CARD_ROWS), k=2) == pytest.approx(0.75)


def test_card_precision_at_k_does_not_depend_on_row_order() -> None:
    shuffled = [CARD_ROWS[i] for i in (6, 3, 0, 5, 2, 4, 1)]
    assert card_precision_at_k(*card_columns(shuffled), k=2) == pytest.approx(0.75)


def test_card_precision_at_k_counts_cards_not_transactions() -> None:
    # k = 1 on day 0 picks card a alone (compromised): 1.0; day 1: 1.0.
    assert card_precision_at_k(*card_columns(CARD_ROWS), k=1) == pytest.approx(1.0)
    # k = 4 covers every card of day 0: a, c, d compromised out of 4 -> 0.75; day 1: 1.0.
    assert card_precision_at_k(*card_columns(CARD_ROWS), k=4) == pytest.approx(0.875)


def test_card_precision_at_k_is_zero_without_fraud_and_none_without_rows() -> None:
    users, times, scores, _ = card_columns(CARD_ROWS)
    assert card_precision_at_k(users, times, scores, np.zeros(len(CARD_ROWS), bool), k=2) == 0.0
    assert card_precision_at_k([], [], [], [], k=2) is None


def test_evaluate_reports_card_precision_at_k_and_k() -> None:
    users, times, scores, frauds = card_columns(CARD_ROWS)
    data = EvaluationInput(users, times, scores, np.array(["approve"] * len(CARD_ROWS)), frauds)
    result = evaluate(data, k=2)
    assert result.k == 2
    assert result.card_precision_at_k == pytest.approx(0.75)


# --- expected cost ------------------------------------------------------------------------------

COSTS = Costs(review=3.0, missed_fraud=7.0, false_decline=11.0)


@pytest.mark.parametrize(
    ("decision", "is_fraud", "cost"),
    [
        ("approve", True, 7.0),
        ("approve", False, 0.0),
        ("review", True, 3.0),
        ("review", False, 3.0),
        ("decline", True, 0.0),
        ("decline", False, 11.0),
    ],
)
def test_expected_cost_of_each_decision_and_outcome(
    decision: str, is_fraud: bool, cost: float
) -> None:
    assert expected_cost(np.array([decision]), np.array([is_fraud]), COSTS) == cost


def test_expected_cost_sums_over_rows() -> None:
    decisions = ["approve", "approve", "review", "review", "decline", "decline"]
    frauds = [True, False, True, False, True, False]
    assert expected_cost(decisions, frauds, COSTS) == 7.0 + 3.0 + 3.0 + 11.0
    assert expected_cost([], [], COSTS) == 0.0


def test_cost_curve_reviews_scores_at_or_above_the_threshold() -> None:
    scores = [0.1, 0.4, 0.4, 0.9]
    frauds = [False, True, False, True]
    costs = Costs(review=5.0, missed_fraud=100.0)
    curve = cost_curve(scores, frauds, costs, [0.0, 0.4, 0.5, 1.0, 1.1])
    # t=0: review 4; t=0.4: review 3; t=0.5: review 1, miss the 0.4 fraud; t>=1: miss both.
    np.testing.assert_allclose(curve, [20.0, 15.0, 105.0, 200.0, 200.0])


# --- decisions and ranking ----------------------------------------------------------------------

# Frauds: rows 0, 2, 4, 5. Flagged: rows 2-6 (3 frauds of 5); declined: rows 4-6 (2 frauds of 3).
DECISIONS = ["approve", "approve", "review", "review", "decline", "decline", "decline", "approve"]
FRAUDS = [True, False, True, False, True, True, False, False]
SCORES = [0.3, 0.1, 0.6, 0.5, 0.9, 0.8, 0.7, 0.3]


def test_evaluate_precision_and_recall_of_flagged_versus_declined() -> None:
    result = evaluate(make_input(DECISIONS, FRAUDS, SCORES))
    assert result.precision_flagged == pytest.approx(3 / 5)
    assert result.recall_flagged == pytest.approx(3 / 4)
    assert result.precision_declined == pytest.approx(2 / 3)
    assert result.recall_declined == pytest.approx(2 / 4)


def test_evaluate_rates_counts_and_costs() -> None:
    result = evaluate(make_input(DECISIONS, FRAUDS, SCORES))  # default costs 5 / 100 / 50
    assert (result.n_transactions, result.n_frauds) == (8, 4)
    assert result.fraud_rate == pytest.approx(0.5)
    assert result.review_rate == pytest.approx(2 / 8)
    assert result.decline_rate == pytest.approx(3 / 8)
    assert result.decision_counts == {"approve": 3, "review": 2, "decline": 3}
    # missed fraud (row 0) 100 + two reviews 10 + false decline (row 6) 50
    assert result.expected_cost == pytest.approx(160.0)
    assert result.expected_cost_per_tx == pytest.approx(20.0)
    assert result.cost_no_model == pytest.approx(400.0)


def test_evaluate_uses_the_given_costs() -> None:
    result = evaluate(make_input(DECISIONS, FRAUDS, SCORES), COSTS)
    assert result.expected_cost == pytest.approx(7.0 + 2 * 3.0 + 11.0)
    assert result.cost_no_model == pytest.approx(4 * 7.0)


def test_auc_and_average_precision_match_sklearn() -> None:
    result = evaluate(make_input(DECISIONS, FRAUDS, SCORES))
    assert result.auc_roc == pytest.approx(roc_auc_score(FRAUDS, SCORES))
    assert result.average_precision == pytest.approx(average_precision_score(FRAUDS, SCORES))
    assert result.auc_roc is not None and 0.5 < result.auc_roc < 1.0


@pytest.mark.parametrize("label", [True, False])
def test_auc_and_average_precision_are_none_with_one_class(label: bool) -> None:
    result = evaluate(make_input(["approve", "review", "decline"], [label] * 3, [0.2, 0.5, 0.9]))
    assert result.auc_roc is None
    assert result.average_precision is None


def test_ratios_with_zero_denominators_are_zero() -> None:
    nothing_flagged = evaluate(make_input(["approve"] * 3, [True, False, True]))
    assert nothing_flagged.precision_flagged == 0.0
    assert nothing_flagged.precision_declined == 0.0
    assert nothing_flagged.recall_flagged == 0.0
    no_fraud = evaluate(make_input(["review", "decline", "approve"], [False] * 3))
    assert no_fraud.recall_flagged == 0.0
    assert no_fraud.recall_declined == 0.0
    assert no_fraud.precision_flagged == 0.0


def test_to_dict_is_json_ready() -> None:
    result = evaluate(make_input(DECISIONS, FRAUDS, SCORES), k=3)
    restored = json.loads(json.dumps(result.to_dict()))
    assert restored["precision_declined"] == pytest.approx(2 / 3)
    assert restored["decision_counts"] == {"approve": 3, "review": 2, "decline": 3}
    assert restored["k"] == 3
    one_class = evaluate(make_input(["approve"], [False])).to_dict()
    assert one_class["auc_roc"] is None


# --- input validation ---------------------------------------------------------------------------


def valid_columns() -> dict[str, Any]:
    return {
        "user_id": np.array(["u1", "u2"]),
        "event_time_ms": np.array([0, 1], dtype=np.int64),
        "score": np.array([0.1, 0.9]),
        "decision": np.array(["approve", "decline"]),
        "is_fraud": np.array([False, True]),
    }


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("score", np.array([0.1]), "equal lengths"),
        ("score", np.array([0.1, 1.5]), r"\[0, 1\]"),
        ("score", np.array([-0.1, 0.5]), r"\[0, 1\]"),
        ("score", np.array([np.nan, 0.5]), r"\[0, 1\]"),
        ("score", np.array(["0.1", "0.9"]), "numbers"),
        ("decision", np.array(["approve", "block"]), "unknown decision 'block'"),
        ("is_fraud", np.array([0, 2]), "booleans"),
        ("event_time_ms", np.array([0.5, 1.0]), "integer milliseconds"),
        ("user_id", np.array([1, 2]), "strings"),
        ("user_id", np.array([["u1", "u2"]]), "one-dimensional"),
    ],
)
def test_invalid_input_raises_input_error(column: str, value: Any, message: str) -> None:
    columns = valid_columns() | {column: value}
    with pytest.raises(InputError, match=message):
        EvaluationInput(**columns)


def test_valid_input_is_accepted_and_normalised() -> None:
    data = EvaluationInput(**(valid_columns() | {"is_fraud": np.array([0, 1])}))
    assert data.is_fraud.dtype == np.bool_
    assert len(data) == 2


def test_input_arrays_are_copied_and_read_only() -> None:
    columns = valid_columns()
    data = EvaluationInput(**columns)
    columns["score"][0] = 0.99
    assert data.score[0] == 0.1
    with pytest.raises(ValueError, match="read-only"):
        data.score[0] = 0.5


def test_empty_input_raises_input_error() -> None:
    empty = {name: np.array([]) for name in valid_columns()}
    with pytest.raises(InputError, match="no labelled transactions"):
        EvaluationInput(**empty)


def test_helpers_validate_their_arguments() -> None:
    with pytest.raises(InputError, match="equal lengths"):
        expected_cost(["approve"], [True, False], COSTS)
    with pytest.raises(InputError, match="unknown decision"):
        expected_cost(["approved"], [True], COSTS)
    with pytest.raises(InputError, match="k must be a positive integer"):
        card_precision_at_k(["a"], [0], [0.5], [True], k=0)
    with pytest.raises(InputError, match="equal lengths"):
        card_precision_at_k(["a", "b"], [0], [0.5], [True])
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        cost_curve([1.2], [True], COSTS, [0.5])
    with pytest.raises(InputError, match="k must be a positive integer"):
        evaluate(make_input(["approve"], [True]), k=0)


def test_negative_costs_are_rejected() -> None:
    with pytest.raises(InputError, match="missed_fraud"):
        Costs(missed_fraud=-1.0)
    assert issubclass(InputError, FraudstreamError)


# --- report files -------------------------------------------------------------------------------

REPORT_FILES = {
    "precision_recall.png",
    "score_histogram.png",
    "cost_curve.png",
    "report.md",
    "report.html",
}


def random_input(n: int = 200, seed: int = 7) -> EvaluationInput:
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < 0.2
    score = np.clip(rng.normal(np.where(fraud, 0.7, 0.3), 0.15), 0.0, 1.0)
    decision = np.where(score >= 0.8, "decline", np.where(score >= 0.5, "review", "approve"))
    return EvaluationInput(
        user_id=np.array([f"u{i % 37}" for i in range(n)]),
        event_time_ms=rng.integers(0, 3 * MS_PER_DAY, n),
        score=score,
        decision=decision,
        is_fraud=fraud,
    )


def test_write_report_writes_the_five_files(tmp_path: Path) -> None:
    data = random_input()
    evaluation = evaluate(data, COSTS, k=5)
    out_dir = tmp_path / "nested" / "report"
    figures_before = plt.get_fignums()

    written = write_report(data, evaluation, out_dir, COSTS, title="Weekly <check> & review")

    assert {path.name for path in written} == REPORT_FILES
    assert all(path.parent == out_dir for path in written)
    for path in written:
        if path.suffix == ".png":
            content = path.read_bytes()
            assert content.startswith(PNG_SIGNATURE)
            assert len(content) > 1_000
    assert plt.get_fignums() == figures_before  # every figure was closed

    assert evaluation.average_precision is not None
    ap = f"{evaluation.average_precision:.4f}"
    page = (out_dir / "report.html").read_text(encoding="utf-8")
    assert ap in page
    assert "Weekly &lt;check&gt; &amp; review" in page
    assert "<check>" not in page
    for name in ("precision_recall.png", "score_histogram.png", "cost_curve.png"):
        assert f'src="{name}"' in page
    markdown = (out_dir / "report.md").read_text(encoding="utf-8")
    assert markdown.startswith("# Weekly \\<check\\> & review")
    assert ap in markdown
    assert "![Cost curve](cost_curve.png)" in markdown
    assert "Card precision@5" in markdown


def test_write_report_handles_a_single_class(tmp_path: Path) -> None:
    data = make_input(["approve", "review", "decline"], [False] * 3, [0.1, 0.5, 0.9])
    written = write_report(data, evaluate(data), tmp_path, Costs())
    assert {path.name for path in written} == REPORT_FILES
    assert 'Average precision (AP)</td><td class="value">n/a' in (
        tmp_path / "report.html"
    ).read_text(encoding="utf-8")


def test_write_report_rejects_an_evaluation_of_other_data(tmp_path: Path) -> None:
    evaluation = evaluate(make_input(DECISIONS, FRAUDS, SCORES))
    with pytest.raises(InputError, match="evaluate the same data"):
        write_report(random_input(), evaluation, tmp_path, Costs())
    assert not list(tmp_path.iterdir())


def test_the_evaluation_names_its_model_versions_and_time_window() -> None:
    data = EvaluationInput(
        user_id=np.array(["u1", "u2", "u3"]),
        event_time_ms=np.array([86_400_000, 0, 90_000_000], dtype=np.int64),
        score=np.array([0.1, 0.9, 0.5]),
        decision=np.array(["approve", "decline", "review"]),
        is_fraud=np.array([False, True, False]),
        model_version=np.array(["v2", "v1", "v2"]),
    )
    result = evaluate(data)
    assert result.model_versions == {"v1": 1, "v2": 2}
    assert (result.first_event_time, result.last_event_time) == (
        "1970-01-01T00:00:00Z",
        "1970-01-02T01:00:00Z",
    )
    assert evaluate(make_input(["approve"], [False])).model_versions == {}
    with pytest.raises(InputError, match="model_version must hold strings"):
        EvaluationInput(**(valid_columns() | {"model_version": np.array([1, 2])}))
