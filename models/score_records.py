"""The published record of each scored transaction: checked in bulk, encoded once.

Building a pydantic `FraudScore` per transaction and dumping it cost more than scoring it. The
numbers are our own (features, probabilities, contributions), so they are checked for what the
schema demands with one vectorised test per batch — every feature, contribution and the latency
finite, the probability in [0, 1] — and each record is encoded straight to JSON with orjson in
the schema's field order (times as pydantic writes them: RFC 3339, `Z` for UTC). A row that
fails a check becomes an `Unscorable` with the reason, never an exception. `ScoredRecord.event()`
parses the JSON back into a validated `FraudScore` (offline output, tests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import orjson

from models.features import FEATURE_NAMES
from schemas.events import Decision, FraudScore, Transaction

_OPTIONS = orjson.OPT_UTC_Z
Reasons = list[tuple[str, float]]


@dataclass(frozen=True)
class Unscorable:
    """A transaction whose score could not be built (non-finite numbers, a failing model call)."""

    transaction_id: str
    error: str


@dataclass(slots=True)  # not frozen: see "Hot value objects", models/stages.py
class ScoredRecord:
    """One score as published: what routing and metrics need, and its JSON."""

    transaction_id: str
    user_id: str
    score: float
    decision: Decision
    json: bytes
    arm: str = ""
    """During a canary rollout, the arm that decided ("champion" or "challenger")."""

    def event(self) -> FraudScore:
        """The record as a validated `FraudScore`."""
        return FraudScore.model_validate_json(self.json)


@dataclass(frozen=True)
class Shadowed:
    """A challenger's opinion on every row of a batch."""

    version: str
    scores: Sequence[float]
    decisions: Sequence[Decision]


@dataclass(frozen=True)
class CanaryRows:
    """A batch scored during a canary step: per row, the arm, who decided and the other model's
    opinion (None when the challenger failed and the champion decided in its place)."""

    rollout: str
    step: int
    share: float
    challenger_arm: Sequence[bool]
    versions: Sequence[str]
    other_versions: Sequence[str]
    other_scores: Sequence[float | None]
    other_decisions: Sequence[Decision | None]
    fallback: bool = False


def build_records(
    version: str,
    transactions: Sequence[Transaction],
    rows: Sequence[Sequence[float]],
    matrix: np.ndarray,
    scores: Sequence[float],
    decisions: Sequence[Decision],
    reasons: Sequence[Reasons],
    contributions_finite: np.ndarray,
    late: Sequence[bool],
    latency_ms: Sequence[float],
    scored_at: datetime,
    shadow: Shadowed | None = None,
    canary: CanaryRows | None = None,
) -> list[ScoredRecord | Unscorable]:
    """One record (or the reason it cannot be published) per transaction, in order. During a
    canary step `canary` names the deciding version of each row (`version` otherwise)."""
    problems = _problems(matrix, scores, contributions_finite, latency_ms)
    records: list[ScoredRecord | Unscorable] = []
    for i, tx in enumerate(transactions):
        if problems[i]:
            records.append(Unscorable(tx.transaction_id, problems[i]))
            continue
        shadow_doc = None
        if shadow is not None:
            shadow_doc = {
                "model_version": shadow.version,
                "score": shadow.scores[i],
                "decision": shadow.decisions[i],
            }
        decided_by, canary_doc = version, None
        if canary is not None:
            decided_by = canary.versions[i]
            canary_doc = _canary_document(canary, i)
        document = {
            "transaction_id": tx.transaction_id,
            "user_id": tx.user_id,
            "score": scores[i],
            "decision": decisions[i],
            "model_version": decided_by,
            "reasons": [{"name": name, "value": value} for name, value in reasons[i]],
            "features": dict(zip(FEATURE_NAMES, rows[i], strict=True)),
            "event_time": tx.timestamp,
            "scored_at": scored_at,
            "latency_ms": latency_ms[i],
            "late": late[i],
            "shadow": shadow_doc,
            "canary": canary_doc,
        }
        records.append(
            ScoredRecord(
                tx.transaction_id,
                tx.user_id,
                scores[i],
                decisions[i],
                orjson.dumps(document, option=_OPTIONS),
                canary_doc["arm"] if canary_doc is not None else "",  # type: ignore[arg-type]
            )
        )
    return records


def _canary_document(canary: CanaryRows, i: int) -> dict[str, object]:
    other_score, other_decision = canary.other_scores[i], canary.other_decisions[i]
    other = None
    if other_score is not None and other_decision is not None:
        other = {
            "model_version": canary.other_versions[i],
            "score": other_score,
            "decision": other_decision,
        }
    return {
        "rollout": canary.rollout,
        "step": canary.step,
        "share": canary.share,
        "arm": "challenger" if canary.challenger_arm[i] else "champion",
        "other": other,
        "fallback": canary.fallback and canary.challenger_arm[i],
    }


def _problems(
    matrix: np.ndarray,
    scores: Sequence[float],
    contributions_finite: np.ndarray,
    latency_ms: Sequence[float],
) -> list[str]:
    """Per row, why its record would break the schema ('' if it would not)."""
    bad_features = ~np.isfinite(matrix).all(axis=1)
    probabilities = np.asarray(scores, dtype=np.float64)
    bad_score = ~((probabilities >= 0.0) & (probabilities <= 1.0))  # NaN fails both
    problems = [""] * len(scores)
    for i in np.flatnonzero(bad_features | bad_score | ~contributions_finite).tolist():
        if bad_features[i]:
            names = [
                n for n, v in zip(FEATURE_NAMES, matrix[i], strict=True) if not math.isfinite(v)
            ]
            problems[i] = f"score not publishable: non-finite features {', '.join(names)}"
        elif bad_score[i]:
            problems[i] = f"score not publishable: probability {scores[i]!r} outside [0, 1]"
        else:
            problems[i] = "score not publishable: a non-finite feature contribution"
    for i, latency in enumerate(latency_ms):
        if not problems[i] and not (math.isfinite(latency) and latency >= 0.0):
            problems[i] = f"score not publishable: latency {latency!r}"
    return problems
