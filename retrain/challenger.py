"""Training a challenger from the scored feature log and gating it against the champion.

Timeline (event time; `as_of` = the moment of the run, default the latest scored transaction):

    |--------- train_days ----------|--- holdout_days ---|--- delay_days ---| as_of
    |-- fit --|-- gap --|-- valid --|  both models scored |  labels immature |

* Every label used is one known at `as_of` (see `retrain.dataset` for availability and the
  optional presumption of genuine transactions).
* The holdout is the most recent stretch whose labels are mature enough: `[as_of - delay_days -
  holdout_days, as_of - delay_days)`. Neither model has trained on it: the champion's data is
  older (it is the model running now), the challenger's window ends where the holdout starts.
* The challenger is trained with `models.training.train_on_dataset` (the same code as `fraudstream
  train`: time split, early stopping, thresholds, refit) on the window ending at the holdout.
* Both models score the holdout's logged feature rows; `retrain.gate.decide` gives the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xgboost as xgb

from models.evaluation import Costs
from models.scoring import Scorer
from models.training import (
    TrainingConfig,
    TrainingResult,
    train_on_dataset,
    training_window,
)
from models.user_window import DEFAULT_ALLOWED_LATENESS_MS
from retrain.dataset import (
    MS_PER_DAY,
    DatasetCounts,
    WindowCounts,
    dataset_from_scores,
)
from retrain.gate import GateConfig, GateDecision, decide, holdout_metrics
from schemas.errors import InputError, TrainingError
from schemas.events import FraudScore, Label, from_epoch_ms

CHALLENGER_VERSION = "challenger"
"""The version name the challenger scores under before the registry gives it one."""


@dataclass(frozen=True)
class ChallengerConfig:
    """Windows (days), training knobs, the gate's margins and the costs of decisions."""

    train_days: float = 21.0
    gap_days: float = 3.0
    valid_days: float = 4.0
    holdout_days: float = 4.0
    delay_days: float = 7.0
    """Days before as_of left out of holdout and training: their labels are not mature yet."""
    presume_genuine_after_days: float | None = None
    """None: unlabelled rows are dropped; else rows this old without a fraud label are genuine.
    Must not exceed `delay_days`, or the holdout's youngest days keep mostly reported frauds."""
    min_frauds: int = 10
    """Frauds needed in the challenger's fit part (a quarter of it in its validation part)."""
    min_holdout_frauds: int = 5
    gate: GateConfig = field(default_factory=GateConfig)
    costs: Costs = field(default_factory=Costs)
    max_rounds: int = 600
    early_stopping_rounds: int = 40
    scale_pos_weight: float | None = None
    allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS
    """Recorded in the model's feature spec; the logged rows were built by the stream's own."""
    params: dict[str, Any] = field(default_factory=dict)
    """XGBoost parameters over `models.training.DEFAULT_PARAMS`."""

    def validate(self) -> None:
        if not (math.isfinite(self.holdout_days) and self.holdout_days > 0):
            raise InputError(f"holdout_days must be positive, got {self.holdout_days}")
        if self.min_holdout_frauds < 1:
            raise InputError(f"min_holdout_frauds must be >= 1, got {self.min_holdout_frauds}")
        presume = self.presume_genuine_after_days
        if presume is not None and not 0 <= presume <= self.delay_days:
            raise InputError(
                f"presume_genuine_after_days ({presume}) must lie in [0, delay_days "
                f"({self.delay_days})]: rows younger than the presumption keep only the labels "
                "that came early, mostly frauds, and would bias the holdout"
            )
        self.training_config().validate()

    def training_config(self) -> TrainingConfig:
        """The training window ends where the holdout starts: delay + holdout before as_of."""
        return TrainingConfig(
            train_days=self.train_days,
            delay_days=self.delay_days + self.holdout_days,
            gap_days=self.gap_days,
            valid_days=self.valid_days,
            costs=self.costs,
            max_rounds=self.max_rounds,
            early_stopping_rounds=self.early_stopping_rounds,
            scale_pos_weight=self.scale_pos_weight,
            min_frauds=self.min_frauds,
            allowed_lateness_ms=self.allowed_lateness_ms,
            params=dict(self.params),
        )


@dataclass(frozen=True)
class ChallengerResult:
    """The challenger (ready to register, lineage in its metadata) and the gate's verdict."""

    training: TrainingResult
    decision: GateDecision
    counts: DatasetCounts
    """The whole log at as_of."""
    training_counts: WindowCounts
    holdout_counts: WindowCounts


def train_challenger(
    scores: Sequence[FraudScore],
    labels: Sequence[Label],
    champion: Scorer,
    config: ChallengerConfig,
    trigger: str,
    as_of_ms: int | None = None,
    detail: dict[str, Any] | None = None,
) -> ChallengerResult:
    """Train a challenger on the log, score both models on the holdout, gate the challenger.

    `trigger` (e.g. "drift", "schedule") and `detail` (e.g. the drift event) go to the lineage.
    Too little labelled data in the holdout or the training window is a TrainingError.
    """
    config.validate()
    if not scores:
        raise TrainingError("the scored feature log is empty: nothing to train on")
    log = dataset_from_scores(scores, labels, as_of_ms, config.presume_genuine_after_days)
    as_of_ms = log.as_of_ms
    training_config = config.training_config()
    train_start, train_end = training_window(training_config, as_of_ms)
    holdout_start, holdout_end = train_end, as_of_ms - _ms(config.delay_days)
    holdout_counts = log.window_counts(holdout_start, holdout_end)
    training_counts = log.window_counts(train_start, train_end)
    window = f"[{_iso(holdout_start)}, {_iso(holdout_end)})"
    if holdout_counts.frauds < config.min_holdout_frauds:
        raise TrainingError(
            f"the holdout {window} has {holdout_counts.frauds} known frauds in "
            f"{holdout_counts.rows} labelled transactions (need at least "
            f"{config.min_holdout_frauds}): wait for more labels or widen holdout_days"
        )
    if holdout_counts.frauds == holdout_counts.rows:
        raise TrainingError(
            f"the holdout {window} holds only frauds ({holdout_counts.rows}): genuine labels are "
            "not known yet; raise delay_days or set presume_genuine_after_days"
        )

    try:
        training = train_on_dataset(log.dataset, training_config, as_of_ms)
    except TrainingError as exc:
        raise TrainingError(
            f"challenger window [{_iso(train_start)}, {_iso(train_end)}): {exc}"
        ) from None

    times = log.dataset.event_time_ms
    in_holdout = (times >= holdout_start) & (times < holdout_end)
    matrix = log.dataset.matrix[in_holdout]
    truth = log.dataset.labels[in_holdout]
    booster = xgb.Booster()
    booster.load_model(bytearray(training.model_bytes))
    challenger = Scorer(booster, CHALLENGER_VERSION, training.thresholds)
    champion_batch = champion.score(matrix)
    challenger_batch = challenger.score(matrix)
    decision = decide(
        holdout_metrics(
            np.asarray(champion_batch.scores), champion_batch.decisions, truth, config.costs
        ),
        holdout_metrics(
            np.asarray(challenger_batch.scores), challenger_batch.decisions, truth, config.costs
        ),
        config.gate,
    )

    lineage: dict[str, Any] = {
        "parent": champion.version,
        "trigger": trigger,
        "trigger_detail": dict(detail) if detail else None,
        "source": "fraud-scores feature log",
        "as_of": _iso(as_of_ms),
        "training_window": {"start": _iso(train_start), "end": _iso(train_end)},
        "holdout_window": {"start": _iso(holdout_start), "end": _iso(holdout_end)},
        "delay_days": config.delay_days,
        "holdout_days": config.holdout_days,
        "presume_genuine_after_days": config.presume_genuine_after_days,
        "data": {
            "log": log.counts.to_dict(),
            "training": training_counts.to_dict(),
            "holdout": holdout_counts.to_dict(),
        },
        "holdout_metrics": {"champion": decision.champion, "challenger": decision.challenger},
        "gate": {
            "passed": decision.passed,
            "reasons": list(decision.reasons),
            "config": config.gate.to_dict(),
        },
    }
    metadata = {
        **training.metadata,
        "metrics": {**training.metadata["metrics"], "holdout": dict(decision.challenger)},
        "lineage": lineage,
    }
    return ChallengerResult(
        training=TrainingResult(
            model_bytes=training.model_bytes, metadata=metadata, thresholds=training.thresholds
        ),
        decision=decision,
        counts=log.counts,
        training_counts=training_counts,
        holdout_counts=holdout_counts,
    )


def _ms(days: float) -> int:
    return round(days * MS_PER_DAY)


def _iso(ms: int) -> str:
    return from_epoch_ms(ms).isoformat().replace("+00:00", "Z")
