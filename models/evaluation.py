"""Offline evaluation of scored, labelled transactions: ranking quality, decisions and their cost.

Pure functions over numpy arrays (no I/O), so the CLI, the retrain gate and the tests compute the
same numbers. Ratios whose denominator is zero are defined explicitly instead of becoming NaN:

* precision of a decision is 0.0 when that decision was never taken (nothing flagged);
* recall of a decision is 0.0 when the data holds no fraud;
* AUC-ROC and average precision are ``None`` when only one class is present (undefined).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, roc_auc_score

from schemas.errors import InputError
from schemas.events import DECISIONS, FraudScore, epoch_ms, from_epoch_ms

MS_PER_DAY = 86_400_000
"""Milliseconds in one UTC day: card precision@k groups rows by ``event_time_ms // MS_PER_DAY``."""

__all__ = [
    "MS_PER_DAY",
    "Costs",
    "Evaluation",
    "EvaluationInput",
    "card_precision_at_k",
    "cost_curve",
    "evaluate",
    "expected_cost",
]


@dataclass(frozen=True)
class Costs:
    """What each decision outcome costs, in one currency unit.

    approve: fraud -> ``missed_fraud``, genuine -> 0; review: ``review`` whatever the label (a
    reviewed fraud is caught); decline: fraud -> 0, genuine -> ``false_decline``.
    """

    review: float = 5.0
    missed_fraud: float = 100.0
    false_decline: float = 50.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InputError(f"cost {field.name!r} must be a finite number >= 0, got {value!r}")


# Frozen but eq=False: comparing numpy arrays with == is element-wise, not a boolean.
@dataclass(frozen=True, eq=False)
class EvaluationInput:
    """Parallel arrays, one row per scored transaction that has a label.

    Validated and normalised on construction (dtypes fixed, arrays copied and made read-only), so
    an instance is always usable: non-empty, equal lengths, scores in [0, 1], known decisions.
    Invalid input raises `InputError`.
    """

    user_id: npt.NDArray[np.str_]
    event_time_ms: npt.NDArray[np.int64]
    """Milliseconds since the epoch, UTC."""
    score: npt.NDArray[np.float64]
    decision: npt.NDArray[np.str_]
    """"approve", "review" or "decline"."""
    is_fraud: npt.NDArray[np.bool_]
    model_version: npt.NDArray[np.str_] | None = None
    """The version that scored each row ("" where unknown); None: unknown for every row."""

    def __post_init__(self) -> None:
        raw = {
            name: _as_1d(getattr(self, name), name)
            for name in ("user_id", "event_time_ms", "score", "decision", "is_fraud")
        }
        if self.model_version is not None:
            raw["model_version"] = _as_1d(self.model_version, "model_version")
        _check_lengths({name: array.shape[0] for name, array in raw.items()})
        if raw["score"].shape[0] == 0:
            raise InputError("no labelled transactions to evaluate")
        normalised = {
            "user_id": _user_ids(raw["user_id"]),
            "event_time_ms": _times_ms(raw["event_time_ms"]),
            "score": _scores(raw["score"]),
            "decision": _decisions(raw["decision"]),
            "is_fraud": _labels(raw["is_fraud"]),
            "model_version": _strings(
                raw.get("model_version", np.full(raw["score"].shape[0], "")), "model_version"
            ),
        }
        for name, array in normalised.items():
            array = np.array(array, copy=True)
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    def __len__(self) -> int:
        return int(self.score.shape[0])


@dataclass(frozen=True)
class Evaluation:
    """Every number of one evaluation; `to_dict` gives its JSON-ready form."""

    n_transactions: int
    n_frauds: int
    fraud_rate: float
    auc_roc: float | None
    """None when only one class is present."""
    average_precision: float | None
    """None when only one class is present."""
    precision_flagged: float
    """Flagged = review or decline. 0.0 when nothing was flagged."""
    recall_flagged: float
    """0.0 when there is no fraud."""
    precision_declined: float
    """0.0 when nothing was declined."""
    recall_declined: float
    """0.0 when there is no fraud."""
    review_rate: float
    decline_rate: float
    card_precision_at_k: float | None
    """Mean over UTC days of the daily card precision top-k (see `card_precision_at_k`)."""
    k: int
    expected_cost: float
    expected_cost_per_tx: float
    cost_no_model: float
    """Cost if every transaction had been approved: frauds x ``missed_fraud``."""
    decision_counts: dict[str, int]
    """Count of every known decision, zeros included, in the order approve, review, decline."""
    model_versions: dict[str, int]
    """Rows scored by each model version (sorted by name); empty when the input did not say."""
    first_event_time: str
    last_event_time: str
    """The evaluated window: event times (RFC 3339, UTC) of the first and last row."""

    def to_dict(self) -> dict[str, object]:
        """Plain ints, floats, None and a dict of ints: ready for `json.dumps`."""
        return dataclasses.asdict(self)


def evaluate(data: EvaluationInput, costs: Costs = Costs(), k: int = 100) -> Evaluation:
    """Evaluate scores and decisions against labels.

    ``k`` is the number of cards investigators can check per day (card precision@k).
    """
    _check_k(k)
    n = len(data)
    fraud = data.is_fraud
    n_frauds = int(fraud.sum())
    flagged = data.decision != "approve"
    declined = data.decision == "decline"
    counts: dict[str, int] = {name: int((data.decision == name).sum()) for name in DECISIONS}
    cost = expected_cost(data.decision, fraud, costs)
    both_classes = 0 < n_frauds < n
    return Evaluation(
        n_transactions=n,
        n_frauds=n_frauds,
        fraud_rate=n_frauds / n,
        auc_roc=float(roc_auc_score(fraud, data.score)) if both_classes else None,
        average_precision=(
            float(average_precision_score(fraud, data.score)) if both_classes else None
        ),
        precision_flagged=_ratio(int((flagged & fraud).sum()), int(flagged.sum())),
        recall_flagged=_ratio(int((flagged & fraud).sum()), n_frauds),
        precision_declined=_ratio(int((declined & fraud).sum()), int(declined.sum())),
        recall_declined=_ratio(int((declined & fraud).sum()), n_frauds),
        review_rate=counts["review"] / n,
        decline_rate=counts["decline"] / n,
        card_precision_at_k=card_precision_at_k(
            data.user_id, data.event_time_ms, data.score, fraud, k=k
        ),
        k=int(k),
        expected_cost=cost,
        expected_cost_per_tx=cost / n,
        cost_no_model=n_frauds * costs.missed_fraud,
        decision_counts=counts,
        model_versions=_version_counts(data.model_version),
        first_event_time=_utc_text(int(data.event_time_ms.min())),
        last_event_time=_utc_text(int(data.event_time_ms.max())),
    )


def _version_counts(versions: npt.NDArray[np.str_] | None) -> dict[str, int]:
    if versions is None:
        return {}
    names, counts = np.unique(versions[versions != ""], return_counts=True)
    return {str(name): int(count) for name, count in zip(names, counts, strict=True)}


def _utc_text(ms: int) -> str:
    return from_epoch_ms(ms).isoformat().replace("+00:00", "Z")


def expected_cost(decision: npt.ArrayLike, is_fraud: npt.ArrayLike, costs: Costs) -> float:
    """Total cost of the decisions taken, given the true labels (0.0 for no rows)."""
    decisions = _decisions(_as_1d(decision, "decision"))
    fraud = _labels(_as_1d(is_fraud, "is_fraud"))
    _check_lengths({"decision": decisions.shape[0], "is_fraud": fraud.shape[0]})
    n_review = int((decisions == "review").sum())
    n_missed = int(((decisions == "approve") & fraud).sum())
    n_false_declines = int(((decisions == "decline") & ~fraud).sum())
    return float(
        n_review * costs.review
        + n_missed * costs.missed_fraud
        + n_false_declines * costs.false_decline
    )


def card_precision_at_k(
    user_id: npt.ArrayLike,
    event_time_ms: npt.ArrayLike,
    score: npt.ArrayLike,
    is_fraud: npt.ArrayLike,
    k: int = 100,
) -> float | None:
    """Mean over UTC days of the daily card precision top-k (Fraud Detection Handbook, 4.2).

    For each day, every card (user) gets the maximum score of its transactions that day and
    counts as compromised if at least one of them is a fraud. The ``k`` cards with the highest
    maximum score are the day's alerts (ties go to the smaller user id, so the result does not
    depend on row order); the day's precision is compromised cards among them divided by the
    number of alerts, i.e. ``k``, or the number of cards that day when it is smaller than ``k``.

    Unlike the handbook's notebook, cards found compromised on an earlier day are not removed
    from later days. Returns None when there are no rows (no day to average over).
    """
    _check_k(k)
    users = _user_ids(_as_1d(user_id, "user_id"))
    times = _times_ms(_as_1d(event_time_ms, "event_time_ms"))
    scores = _scores(_as_1d(score, "score"))
    fraud = _labels(_as_1d(is_fraud, "is_fraud"))
    _check_lengths(
        {
            "user_id": users.shape[0],
            "event_time_ms": times.shape[0],
            "score": scores.shape[0],
            "is_fraud": fraud.shape[0],
        }
    )
    if scores.shape[0] == 0:
        return None
    days = times // MS_PER_DAY  # floor division: correct UTC days before 1970 too
    daily: list[float] = []
    for day in np.unique(days):
        rows = days == day
        cards, card_of_row = np.unique(users[rows], return_inverse=True)  # cards sorted by id
        max_score = np.full(cards.shape[0], -np.inf)
        np.maximum.at(max_score, card_of_row, scores[rows])
        compromised = np.bincount(card_of_row, weights=fraud[rows], minlength=cards.shape[0]) > 0
        # A stable sort of the negated score keeps equal scores in user-id order.
        alerts = np.argsort(-max_score, kind="stable")[:k]
        daily.append(float(compromised[alerts].sum()) / alerts.shape[0])
    return float(np.mean(daily))


def cost_curve(
    score: npt.ArrayLike, is_fraud: npt.ArrayLike, costs: Costs, thresholds: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Total cost of "review if score >= t, else approve", for every threshold t.

    The result has the shape of ``thresholds``; a threshold above every score costs as much as
    having no model (every fraud approved).
    """
    scores = _scores(_as_1d(score, "score"))
    fraud = _labels(_as_1d(is_fraud, "is_fraud"))
    _check_lengths({"score": scores.shape[0], "is_fraud": fraud.shape[0]})
    cut = np.asarray(thresholds, dtype=np.float64)
    if np.isnan(cut).any():
        raise InputError("thresholds must not be NaN")
    all_sorted = np.sort(scores)
    fraud_sorted = np.sort(scores[fraud])
    n_reviewed = all_sorted.shape[0] - np.searchsorted(all_sorted, cut, side="left")
    n_missed = np.searchsorted(fraud_sorted, cut, side="left")
    return np.asarray(n_reviewed * costs.review + n_missed * costs.missed_fraud, dtype=np.float64)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")


def _check_lengths(lengths: dict[str, int]) -> None:
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name}={length}" for name, length in lengths.items())
        raise InputError(f"arrays must have equal lengths, got {described}")


def _as_1d(values: Any, name: str) -> npt.NDArray[Any]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise InputError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _strings(values: npt.NDArray[Any], name: str) -> npt.NDArray[np.str_]:
    strings = values.dtype.kind == "U" or (
        values.dtype == object and all(isinstance(v, str) for v in values.tolist())
    )
    if values.size and not strings:
        raise InputError(f"{name} must hold strings, got dtype {values.dtype}")
    return values.astype(np.str_)


def _user_ids(values: npt.NDArray[Any]) -> npt.NDArray[np.str_]:
    return _strings(values, "user_id")


def _times_ms(values: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise InputError(f"event_time_ms must hold integer milliseconds, got dtype {values.dtype}")
    return values.astype(np.int64)


def _scores(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    if values.size and not np.issubdtype(values.dtype, np.number):  # bool is not np.number
        raise InputError(f"score must hold numbers, got dtype {values.dtype}")
    scores = values.astype(np.float64)
    outside = ~((scores >= 0.0) & (scores <= 1.0))  # NaN fails both comparisons
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise InputError(f"scores must lie in [0, 1]; row {first} has {float(scores[first])}")
    return scores


def _decisions(values: npt.NDArray[Any]) -> npt.NDArray[np.str_]:
    known = np.isin(values, np.asarray(DECISIONS))
    if not known.all():
        first = int(np.flatnonzero(~known)[0])
        bad = values.tolist()[first]
        raise InputError(f"unknown decision {bad!r} at row {first}; expected one of {DECISIONS}")
    return values.astype(np.str_)


def _labels(values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    if values.dtype == np.bool_:
        return values
    if values.size == 0:
        return values.astype(np.bool_)
    if np.issubdtype(values.dtype, np.number) and np.isin(values, (0, 1)).all():
        return values.astype(np.bool_)
    raise InputError("is_fraud must hold booleans (or 0/1)")


def evaluation_input_from_scores(
    scores: Iterable[FraudScore],
    is_fraud: Mapping[str, bool],
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> tuple[EvaluationInput, int]:
    """Scores with a label whose event time is in [start, end); also the unlabelled count.

    Takes an iterable so a large score file is streamed: only five columns are kept.
    """
    users: list[str] = []
    times: list[int] = []
    values: list[float] = []
    decisions: list[str] = []
    truth: list[bool] = []
    versions: list[str] = []
    unlabelled = 0
    for score in scores:
        label = is_fraud.get(score.transaction_id)
        if label is None:
            unlabelled += 1
            continue
        when = epoch_ms(score.event_time)
        if (start_ms is not None and when < start_ms) or (end_ms is not None and when >= end_ms):
            continue
        users.append(score.user_id)
        times.append(when)
        values.append(score.score)
        decisions.append(score.decision)
        truth.append(label)
        versions.append(score.model_version)
    if not users:
        raise InputError("no scored transaction with a label in the selected period")
    data = EvaluationInput(
        user_id=np.array(users),
        event_time_ms=np.array(times, dtype=np.int64),
        score=np.array(values, dtype=np.float64),
        decision=np.array(decisions),
        is_fraud=np.array(truth, dtype=bool),
        model_version=np.array(versions),
    )
    return data, unlabelled
