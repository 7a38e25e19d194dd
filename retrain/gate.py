"""The quality gate: a challenger replaces the champion only if it ranks frauds clearly better on
the same recent labelled holdout and its decisions are no worse for analysts and customers.

Average precision must exceed the champion's by more than `min_ap_gain` (a tie never passes:
swapping models has a cost and a risk of its own). The guardrails catch a challenger that ranks
better but whose thresholds would hurt: precision of the flagged transactions may drop by at
most `max_precision_drop`, the share flagged may rise by at most `max_flagged_rate_rise`, and the
expected cost per transaction may rise by at most `max_cost_rise` (default: not at all). A
tolerance equal to the change passes. Pure functions: the retrain service and the tests compute
the same verdict from the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score

from models.evaluation import Costs, expected_cost
from schemas.errors import InputError

Metrics = dict[str, float | int | None]
"""`holdout_metrics` output: JSON-ready, None where a number is undefined."""

METRIC_KEYS: tuple[str, ...] = (
    "n_transactions",
    "n_frauds",
    "average_precision",
    "precision_flagged",
    "recall_flagged",
    "flagged_rate",
    "expected_cost_per_tx",
)


@dataclass(frozen=True)
class GateConfig:
    """Margins of the gate, in the metrics' own units (absolute differences)."""

    min_ap_gain: float = 0.01
    """The challenger's average precision must exceed the champion's by more than this."""
    max_precision_drop: float = 0.05
    """Precision of the flagged (review or decline) may fall by at most this."""
    max_flagged_rate_rise: float = 0.02
    """The share of transactions flagged may rise by at most this (0.02 = two points): a new
    fraud pattern legitimately raises it a little, the expected cost guards the rest."""
    max_cost_rise: float = 0.0
    """Expected cost per transaction may rise by at most this (currency units)."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(f"gate {name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise InputError(f"gate {name} must be a finite number >= 0, got {value!r}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class GateDecision:
    """The verdict with its reasons and the numbers it was made on.

    `reasons` holds the failed checks when rejected, every check when passed; each names the
    metric and both values.
    """

    passed: bool
    reasons: list[str]
    champion: Metrics
    challenger: Metrics

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "champion": dict(self.champion),
            "challenger": dict(self.challenger),
        }


def holdout_metrics(
    scores: npt.ArrayLike, decisions: npt.ArrayLike, labels: npt.ArrayLike, costs: Costs
) -> Metrics:
    """What the gate compares, for one model's scores and decisions on the holdout.

    Flagged = review or decline (the decisions made at or above the review threshold).
    Precision is 0.0 when nothing is flagged and recall 0.0 without frauds, as in
    `models.evaluation`; average precision is None with one class only, never NaN.
    """
    score = np.asarray(scores, dtype=np.float64)
    decision = np.asarray(decisions, dtype=np.str_)
    fraud = np.asarray(labels)
    if score.ndim != 1 or decision.ndim != 1 or fraud.ndim != 1:
        raise InputError("scores, decisions and labels must be one-dimensional")
    if not score.shape == decision.shape == fraud.shape:
        raise InputError(
            f"scores, decisions and labels differ in length: "
            f"{score.shape[0]}, {decision.shape[0]}, {fraud.shape[0]}"
        )
    if fraud.size and fraud.dtype != np.bool_:
        raise InputError(f"labels must be booleans, got dtype {fraud.dtype}")
    fraud = fraud.astype(np.bool_)
    if not ((score >= 0.0) & (score <= 1.0)).all():  # NaN fails both comparisons
        raise InputError("scores must lie in [0, 1]")
    cost = expected_cost(decision, fraud, costs)  # also rejects unknown decisions
    n = int(score.size)
    n_frauds = int(fraud.sum())
    flagged = decision != "approve"
    caught = int((flagged & fraud).sum())
    return {
        "n_transactions": n,
        "n_frauds": n_frauds,
        "average_precision": (
            float(average_precision_score(fraud, score)) if 0 < n_frauds < n else None
        ),
        "precision_flagged": _ratio(caught, int(flagged.sum())),
        "recall_flagged": _ratio(caught, n_frauds),
        "flagged_rate": _ratio(int(flagged.sum()), n),
        "expected_cost_per_tx": _ratio(cost, n),
    }


def decide(
    champion: Metrics, challenger: Metrics, config: GateConfig | None = None
) -> GateDecision:
    """Promote or not: average precision gain beyond the margin, and every guardrail held."""
    config = config or GateConfig()
    for side, metrics in (("champion", champion), ("challenger", challenger)):
        missing = [key for key in METRIC_KEYS if key not in metrics]
        if missing:
            raise InputError(f"{side} metrics lack {', '.join(missing)}")
    same = ("n_transactions", "n_frauds")
    if any(champion[key] != challenger[key] for key in same):
        raise InputError(
            "champion and challenger metrics come from different holdouts "
            f"({_sizes(champion)} vs {_sizes(challenger)})"
        )

    def rejected(reason: str) -> GateDecision:
        return GateDecision(False, [reason], dict(champion), dict(challenger))

    n, frauds = _int(champion, "n_transactions"), _int(champion, "n_frauds")
    if n == 0:
        return rejected("the holdout is empty: no labelled transaction to compare the models on")
    if frauds == 0 or frauds == n:
        return rejected(
            f"average_precision is undefined on a holdout with one class only ({frauds} frauds "
            f"in {n} transactions): the models cannot be compared"
        )
    if champion["average_precision"] is None or challenger["average_precision"] is None:
        return rejected("average_precision is missing for a holdout with both classes")

    new_ap, old_ap = _float(challenger, "average_precision"), _float(champion, "average_precision")
    gain = new_ap - old_ap
    checks = [
        _check(
            "average_precision",
            new_ap,
            old_ap,
            gain > config.min_ap_gain,
            f"gain {gain:+.4f}, must exceed {config.min_ap_gain:.4f}",
        ),
        _guardrail("precision_flagged", challenger, champion, "drop", config.max_precision_drop),
        _guardrail("flagged_rate", challenger, champion, "rise", config.max_flagged_rate_rise),
        _guardrail("expected_cost_per_tx", challenger, champion, "rise", config.max_cost_rise),
    ]
    failed = [reason for ok, reason in checks if not ok]
    if failed:
        return GateDecision(False, failed, dict(champion), dict(challenger))
    return GateDecision(True, [reason for _, reason in checks], dict(champion), dict(challenger))


def _guardrail(
    key: str,
    challenger: Metrics,
    champion: Metrics,
    direction: Literal["drop", "rise"],
    tolerance: float,
) -> tuple[bool, str]:
    """The challenger's value may `direction` ("drop" or "rise") by at most `tolerance`."""
    new, old = _float(challenger, key), _float(champion, key)
    ok = new >= old - tolerance if direction == "drop" else new <= old + tolerance
    return _check(key, new, old, ok, f"change {new - old:+.4f}, may {direction} by {tolerance:.4f}")


def _check(key: str, new: float, old: float, ok: bool, detail: str) -> tuple[bool, str]:
    verdict = "ok" if ok else "FAILED"
    return ok, f"{key} {verdict}: challenger {new:.4f} vs champion {old:.4f} ({detail})"


def _float(metrics: Metrics, key: str) -> float:
    value = metrics[key]
    if value is None or isinstance(value, bool) or not math.isfinite(value):
        raise InputError(f"metric {key} must be a finite number, got {value!r}")
    return float(value)


def _int(metrics: Metrics, key: str) -> int:
    value = metrics[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"metric {key} must be a count, got {value!r}")
    return value


def _sizes(metrics: Metrics) -> str:
    return f"{metrics['n_frauds']} frauds in {metrics['n_transactions']}"


def _ratio(numerator: float, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0
