"""Scoring a batch of feature rows: probability, decision and top reasons.

The same `Scorer` serves `fraudstream score` and the stream's micro-batches, so both give the
same numbers for the same rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import xgboost as xgb

from models.canary import Canary
from models.features import FEATURE_NAMES, FeatureBuilder, sort_by_event_time
from models.fraud_labels import FraudLabel
from models.registry import LoadedModel
from models.score_records import (
    CanaryRows,
    Reasons,
    ScoredRecord,
    Shadowed,
    Unscorable,
    build_records,
)
from models.seen_ids import DEFAULT_DEDUPE_HORIZON_MS
from models.stages import NO_STAGES, StageClock
from models.thresholds import Thresholds
from models.user_window import DEFAULT_ALLOWED_LATENESS_MS
from schemas.errors import RegistryError
from schemas.events import Decision, FraudScore, Transaction

REASON_COUNT = 3

__all__ = ["OfflineReport", "ScoredBatch", "ScoredRecord", "Scorer", "Unscorable", "score_offline"]


@dataclass
class OfflineReport:
    """What `score_offline` left out, and why."""

    duplicates: int = 0
    unscorable: list[Unscorable] = field(default_factory=list)


@dataclass(frozen=True)
class ScoredBatch:
    scores: list[float]
    decisions: list[Decision]
    reasons: list[Reasons]
    contributions_finite: np.ndarray
    """Per row: every feature contribution (and so every reason value) is finite."""


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
        own = booster.feature_names
        if own is not None and tuple(own) != FEATURE_NAMES:
            raise RegistryError(
                f"model {version}'s booster names other features, or another order, than its "
                "metadata and this code; retrain it"
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

    def score(self, matrix: np.ndarray, stages: StageClock = NO_STAGES) -> ScoredBatch:
        if matrix.ndim != 2 or matrix.shape[1] != len(self.feature_names):
            raise ValueError(
                f"expected rows of {len(self.feature_names)} features, got {matrix.shape}"
            )
        if matrix.shape[0] == 0:
            return ScoredBatch([], [], [], np.ones(0, dtype=bool))
        with stages.time("model"):
            dmatrix = _dmatrix(matrix)
            probabilities = self.booster.predict(dmatrix, validate_features=False)
            scores = [float(p) for p in probabilities]
            decide = self.thresholds.decide
            decisions = [decide(s) for s in scores]
        with stages.time("reasons"):
            contributions = self.booster.predict(
                dmatrix, pred_contribs=True, approx_contribs=True, validate_features=False
            )
            reasons = self._reasons(contributions)
            finite = np.isfinite(contributions).all(axis=1)
        return ScoredBatch(scores, decisions, reasons, finite)

    def probabilities(self, matrix: np.ndarray) -> list[float]:
        """Scores only, no reasons (a shadow model's opinion costs one prediction)."""
        if matrix.shape[0] == 0:
            return []
        probabilities = self.booster.predict(_dmatrix(matrix), validate_features=False)
        return [float(p) for p in probabilities]

    def _reasons(self, contributions: np.ndarray) -> list[Reasons]:
        """Per row, the features with the largest absolute contributions, largest first, as
        (name, signed log-odds rounded to 6 decimals): one argsort for the whole batch."""
        values = contributions[:, :-1]  # the last column is the bias
        top = np.argsort(-np.abs(values), axis=1, kind="stable")[:, : self.reason_count]
        picked = np.take_along_axis(values, top, axis=1).tolist()
        names = self.feature_names
        return [
            [(names[i], round(v, 6)) for i, v in zip(row, vals, strict=True)]
            for row, vals in zip(top.tolist(), picked, strict=True)
        ]


def _dmatrix(matrix: np.ndarray) -> xgb.DMatrix:
    """Rows in FEATURE_NAMES order, without names: the booster's names were checked once, at
    load (`Scorer`). Naming the columns and checking them again on every prediction cost
    ~0.3 ms per model call (xgboost 3.2 reads the booster's names and types back as strings
    each time), more than the two predictions of a small batch themselves."""
    return xgb.DMatrix(matrix, nthread=1)


def score_rows(
    scorer: Scorer,
    transactions: Sequence[Transaction],
    rows: Sequence[Sequence[float]],
    late: Sequence[bool],
    received_s: Sequence[float] | None = None,
    clock: Callable[[], float] = time.monotonic,
    shadow: Scorer | None = None,
    stages: StageClock = NO_STAGES,
    canary: Canary | None = None,
) -> list[ScoredRecord | Unscorable]:
    """One model call for the rows, one published record per transaction (offline and stream).

    `received_s` (clock readings when each record arrived) gives each score its latency up to
    the moment the batch is scored; offline there is none (0). A `shadow` scorer (a challenger)
    scores the same rows; its opinion rides along in each score's `shadow` block. A row whose
    score cannot be built becomes an `Unscorable` in its place, never an exception: one bad row
    must not stop a partition. If the batch's model call fails, each row is scored alone.

    During a canary step (`canary`), the challenger decides for the users of its arm and the
    champion (`scorer`) for the rest; each model also scores the other arm's rows, so every
    record carries the other opinion (`models.canary`).
    """
    matrix = np.asarray(rows, dtype=np.float64)
    try:
        return _score_matrix(
            scorer, transactions, rows, matrix, late, received_s, clock, shadow, stages, canary
        )
    except (ValueError, xgb.core.XGBoostError) as exc:
        if len(transactions) == 1:
            return [Unscorable(transactions[0].transaction_id, f"model call failed: {exc}")]
    results: list[ScoredRecord | Unscorable] = []
    for i in range(len(transactions)):
        one = slice(i, i + 1)
        results += score_rows(
            scorer,
            transactions[one],
            rows[one],
            late[one],
            received_s[one] if received_s is not None else None,
            clock,
            shadow,
            stages,
            canary,
        )
    return results


def _score_matrix(
    scorer: Scorer,
    transactions: Sequence[Transaction],
    rows: Sequence[Sequence[float]],
    matrix: np.ndarray,
    late: Sequence[bool],
    received_s: Sequence[float] | None,
    clock: Callable[[], float],
    shadow: Scorer | None,
    stages: StageClock,
    canary: Canary | None = None,
) -> list[ScoredRecord | Unscorable]:
    rows_canary = None
    if canary is None:
        batch = scorer.score(matrix, stages)
    else:
        batch, rows_canary = _score_canary(scorer, canary, transactions, matrix, stages)
    shadowed = None
    if shadow is not None:
        with stages.time("model"):
            probabilities = shadow.probabilities(matrix)
            decide = shadow.thresholds.decide
            shadowed = Shadowed(shadow.version, probabilities, [decide(p) for p in probabilities])
    now = datetime.now(UTC)
    done = clock()
    if received_s is None:
        latency = [0.0] * len(transactions)
    else:
        latency = [max(0.0, (done - r) * 1000.0) for r in received_s]
    with stages.time("serialise"):
        return build_records(
            scorer.version,
            transactions,
            rows,
            matrix,
            batch.scores,
            batch.decisions,
            batch.reasons,
            batch.contributions_finite,
            late,
            latency,
            now,
            shadowed,
            rows_canary,
        )


def _score_canary(
    champion: Scorer,
    canary: Canary,
    transactions: Sequence[Transaction],
    matrix: np.ndarray,
    stages: StageClock,
) -> tuple[ScoredBatch, CanaryRows]:
    """Each arm's rows scored (with reasons) by the model deciding them, and their probability
    under the other model: one full scoring and one probability pass over the batch in all. A
    challenger whose model call fails leaves its arm to the champion (`fallback`), so no
    transaction goes unscored because of a canary."""
    challenger = canary.challenger
    arm = canary.assigner.challenger_mask([tx.user_id for tx in transactions])
    mine, theirs = np.flatnonzero(~arm), np.flatnonzero(arm)
    kept = champion.score(matrix[mine], stages)
    fallback = False
    try:
        taken = challenger.score(matrix[theirs], stages)
        with stages.time("model"):
            second = champion.probabilities(matrix[theirs])
    except (ValueError, xgb.core.XGBoostError):
        taken, second, fallback = champion.score(matrix[theirs], stages), [], True
    try:
        with stages.time("model"):
            first = challenger.probabilities(matrix[mine])
    except (ValueError, xgb.core.XGBoostError):
        first = []  # the champion's arm has no second opinion then
    n = len(transactions)
    scores: list[float] = [0.0] * n
    decisions: list[Decision] = ["approve"] * n
    reasons: list[Reasons] = [[] for _ in range(n)]
    finite = np.ones(n, dtype=bool)
    versions = [champion.version] * n
    others = [challenger.version] * n
    other_scores: list[float | None] = [None] * n
    other_decisions: list[Decision | None] = [None] * n
    for part, idx, decided_by, other, other_model in (
        (kept, mine, champion.version, first, challenger),
        (taken, theirs, None if fallback else challenger.version, second, champion),
    ):
        for j, i in enumerate(idx.tolist()):
            scores[i], decisions[i], reasons[i] = part.scores[j], part.decisions[j], part.reasons[j]
            finite[i] = part.contributions_finite[j]
            if decided_by is not None:
                versions[i] = decided_by
                others[i] = other_model.version
            if other:
                other_scores[i] = other[j]
                other_decisions[i] = other_model.thresholds.decide(other[j])
    rows = CanaryRows(
        canary.rollout,
        canary.step,
        canary.share,
        arm.tolist(),
        versions,
        others,
        other_scores,
        other_decisions,
        fallback,
    )
    return ScoredBatch(scores, decisions, reasons, finite), rows


def score_offline(
    transactions: Sequence[Transaction],
    scorer: Scorer,
    frauds: Iterable[FraudLabel] | None = None,
    allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS,
    batch_size: int = 8192,
    report: OfflineReport | None = None,
    dedupe_horizon_ms: int = DEFAULT_DEDUPE_HORIZON_MS,
    canary: Canary | None = None,
) -> Iterator[FraudScore]:
    """Score transactions in event-time order, as the stream would (same features, same model).
    With `canary` (a rollout step), each user's arm decides as it does in the stream.

    `frauds` (`models.fraud_labels.attributed_frauds`) feed the merchant risk features exactly
    as the labels topic does in the stream. Duplicate transaction
    ids and unscorable rows are left out, as the stream dead-letters them; `report` counts them.
    """
    ordered = sort_by_event_time(transactions)
    builder = FeatureBuilder(allowed_lateness_ms, frauds, dedupe_horizon_ms)
    report = report if report is not None else OfflineReport()
    for start in range(0, len(ordered), batch_size):
        chunk, rows, late = [], [], []
        for tx in ordered[start : start + batch_size]:
            observed = builder.observe(tx)
            if observed is None:
                report.duplicates += 1
                continue
            chunk.append(tx)
            rows.append(observed[0])
            late.append(observed[1])
        for result in score_rows(scorer, chunk, rows, late, canary=canary):
            if isinstance(result, Unscorable):
                report.unscorable.append(result)
            else:
                yield result.event()
