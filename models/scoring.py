"""Scoring a batch of feature rows: probability, decision and top reasons.

The same `Scorer` serves `fraudstream score` and the stream's micro-batches, so both give the
same numbers for the same rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import xgboost as xgb
from pydantic import TypeAdapter

from models.features import FEATURE_NAMES, FeatureBuilder, sort_by_event_time
from models.registry import LoadedModel
from models.thresholds import Thresholds
from models.user_window import DEFAULT_ALLOWED_LATENESS_MS
from schemas.errors import RegistryError
from schemas.events import Decision, FraudScore, Reason, ShadowScore, Transaction

REASON_COUNT = 3
_REASON_ROWS = TypeAdapter(list[list[Reason]])


@dataclass(frozen=True)
class ScoredBatch:
    scores: list[float]
    decisions: list[Decision]
    reasons: list[list[Reason]]


class Scorer:
    """A loaded model with its thresholds; scores feature matrices in FEATURE_NAMES order."""

    def __init__(
        self,
        booster: xgb.Booster,
        version: str,
        thresholds: Thresholds,
        feature_names: tuple[str, ...] = FEATURE_NAMES,
        reason_count: int = REASON_COUNT,
    ) -> None:
        if tuple(feature_names) != FEATURE_NAMES:
            missing = sorted(set(feature_names) ^ set(FEATURE_NAMES))
            raise RegistryError(
                f"model {version} was trained on other features than this code builds "
                f"(differences: {', '.join(missing) or 'order'}); retrain it"
            )
        booster.set_param({"nthread": 1})
        self.booster = booster
        self.version = version
        self.thresholds = thresholds
        self.feature_names = feature_names
        self.reason_count = reason_count

    @classmethod
    def from_loaded(cls, loaded: LoadedModel) -> Scorer:
        meta: dict[str, Any] = loaded.info.metadata
        try:
            thresholds = Thresholds(**meta["thresholds"])
            names = tuple(meta["feature_names"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(
                f"{loaded.info.path}: metadata lacks valid thresholds/feature_names ({exc})"
            ) from None
        return cls(loaded.booster, loaded.info.version, thresholds, names)

    def score(self, matrix: np.ndarray) -> ScoredBatch:
        if matrix.ndim != 2 or matrix.shape[1] != len(self.feature_names):
            raise ValueError(
                f"expected rows of {len(self.feature_names)} features, got {matrix.shape}"
            )
        if matrix.shape[0] == 0:
            return ScoredBatch([], [], [])
        dmatrix = xgb.DMatrix(matrix, feature_names=list(self.feature_names), nthread=1)
        probabilities = self.booster.predict(dmatrix)
        contributions = self.booster.predict(dmatrix, pred_contribs=True, approx_contribs=True)
        scores = [float(p) for p in probabilities]
        decide = self.thresholds.decide
        return ScoredBatch(
            scores=scores,
            decisions=[decide(s) for s in scores],
            reasons=self._reasons(contributions),
        )

    def probabilities(self, matrix: np.ndarray) -> list[float]:
        """Scores only, no reasons (a shadow model's opinion costs one prediction)."""
        if matrix.shape[0] == 0:
            return []
        dmatrix = xgb.DMatrix(matrix, feature_names=list(self.feature_names), nthread=1)
        return [float(p) for p in self.booster.predict(dmatrix)]

    def _reasons(self, contributions: np.ndarray) -> list[list[Reason]]:
        """Per row, the features with the largest absolute contributions, largest first.

        One argsort and one validation call for the whole batch (building Reason records one
        by one was most of the cost per row).
        """
        values = contributions[:, :-1]  # the last column is the bias
        top = np.argsort(-np.abs(values), axis=1, kind="stable")[:, : self.reason_count]
        picked = np.take_along_axis(values, top, axis=1).tolist()
        names = self.feature_names
        return _REASON_ROWS.validate_python(
            [
                [{"name": names[i], "value": round(v, 6)} for i, v in zip(row, vals, strict=True)]
                for row, vals in zip(top.tolist(), picked, strict=True)
            ]
        )


def fraud_score(
    tx: Transaction,
    row: Sequence[float],
    score: float,
    decision: Decision,
    reasons: list[Reason],
    model_version: str,
    scored_at: datetime,
    latency_ms: float,
    late: bool,
    shadow: ShadowScore | None = None,
) -> FraudScore:
    """The published record for one scored transaction (offline and in the stream)."""
    return FraudScore(
        transaction_id=tx.transaction_id,
        user_id=tx.user_id,
        score=score,
        decision=decision,
        model_version=model_version,
        reasons=reasons,
        features=dict(zip(FEATURE_NAMES, row, strict=True)),
        event_time=tx.timestamp,
        scored_at=scored_at,
        latency_ms=latency_ms,
        late=late,
        shadow=shadow,
    )


def score_rows(
    scorer: Scorer,
    transactions: Sequence[Transaction],
    rows: Sequence[Sequence[float]],
    late: Sequence[bool],
    received_s: Sequence[float] | None = None,
    clock: Callable[[], float] = time.monotonic,
    shadow: Scorer | None = None,
) -> list[FraudScore]:
    """One model call for the rows, one FraudScore per transaction (offline and stream).

    `received_s` (clock readings when each record arrived) gives each score its latency up to
    the moment the batch is scored; offline there is none (0). A `shadow` scorer (a challenger)
    scores the same rows; its opinion rides along in each score's `shadow` block.
    """
    matrix = np.asarray(rows, dtype=np.float64)
    batch = scorer.score(matrix)
    shadows: list[ShadowScore | None] = [None] * len(transactions)
    if shadow is not None:
        probabilities = shadow.probabilities(matrix)
        shadows = [
            ShadowScore(model_version=shadow.version, score=p, decision=shadow.thresholds.decide(p))
            for p in probabilities
        ]
    now = datetime.now(UTC)
    done = clock()
    return [
        fraud_score(
            tx,
            rows[i],
            batch.scores[i],
            batch.decisions[i],
            batch.reasons[i],
            scorer.version,
            now,
            max(0.0, (done - received_s[i]) * 1000.0) if received_s is not None else 0.0,
            late[i],
            shadows[i],
        )
        for i, tx in enumerate(transactions)
    ]


def score_offline(
    transactions: Sequence[Transaction],
    scorer: Scorer,
    fraud_labels: Mapping[str, int] | None = None,
    allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS,
    batch_size: int = 8192,
) -> Iterator[FraudScore]:
    """Score transactions in event-time order, as the stream would (same features, same model).

    `fraud_labels` (transaction id -> labeled_at ms, see `features.fraud_label_times`) feed the
    merchant risk features exactly as the labels topic does in the stream.
    """
    ordered = sort_by_event_time(transactions)
    builder = FeatureBuilder(allowed_lateness_ms, fraud_labels)
    for start in range(0, len(ordered), batch_size):
        chunk = ordered[start : start + batch_size]
        rows, late = [], []
        for tx in chunk:
            row, too_late = builder.observe(tx)
            rows.append(row)
            late.append(too_late)
        yield from score_rows(scorer, chunk, rows, late)
