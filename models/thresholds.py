"""Decision thresholds (approve / review / decline) chosen to minimise expected cost."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.evaluation import Costs
from schemas.errors import TrainingError
from schemas.events import Decision

_MAX_CANDIDATES = 1000


@dataclass(frozen=True)
class Thresholds:
    """`score >= decline` declines, `score >= review` reviews, anything lower is approved."""

    review: float
    decline: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.review <= self.decline <= 1.0:
            raise ValueError(f"need 0 <= review <= decline <= 1, got {self}")

    def decide(self, score: float) -> Decision:
        if score >= self.decline:
            return "decline"
        if score >= self.review:
            return "review"
        return "approve"

    def to_dict(self) -> dict[str, float]:
        return {"review": self.review, "decline": self.decline}


def _candidates(scores: np.ndarray) -> np.ndarray:
    unique = np.unique(scores)
    if unique.size > _MAX_CANDIDATES:
        unique = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, _MAX_CANDIDATES)))
    return np.append(unique, 1.0) if unique[-1] < 1.0 else unique


def cost_matrix(
    scores: np.ndarray, is_fraud: np.ndarray, costs: Costs
) -> tuple[np.ndarray, np.ndarray]:
    """Expected cost for every (review, decline) candidate pair; inf where review > decline."""
    cand = _candidates(scores)
    fraud = np.sort(scores[is_fraud])
    genuine = np.sort(scores[~is_fraud])
    # Number of frauds / genuine below each candidate threshold.
    fraud_below = np.searchsorted(fraud, cand, side="left")
    genuine_below = np.searchsorted(genuine, cand, side="left")
    n_fraud, n_genuine = fraud.size, genuine.size
    # rows: review threshold r, columns: decline threshold d (decisions: d > r).
    missed = costs.missed_fraud * fraud_below[:, None]
    reviewed = (fraud_below[None, :] - fraud_below[:, None]) + (
        genuine_below[None, :] - genuine_below[:, None]
    )
    declined_genuine = n_genuine - genuine_below[None, :]
    total = missed + costs.review * reviewed + costs.false_decline * declined_genuine
    total = np.where(cand[:, None] <= cand[None, :], total, np.inf).astype(np.float64)
    del n_fraud
    return cand, total


def choose_thresholds(scores: np.ndarray, is_fraud: np.ndarray, costs: Costs) -> Thresholds:
    """The (review, decline) pair with the lowest total cost on labelled scores."""
    scores = np.asarray(scores, dtype=np.float64)
    is_fraud = np.asarray(is_fraud, dtype=bool)
    if scores.size == 0 or not is_fraud.any() or is_fraud.all():
        raise TrainingError("choosing thresholds needs labelled scores of both classes")
    cand, total = cost_matrix(scores, is_fraud, costs)
    r, d = np.unravel_index(int(np.argmin(total)), total.shape)
    return Thresholds(review=float(cand[r]), decline=float(cand[d]))
