"""Training a model version: dataset from the shared features, time-ordered split, thresholds.

Timeline (all in event time, `as_of` = the moment of training, default the last transaction):

    |------------- window: train_days ---------------|---- delay_days ----| as_of
    |---- fit -----|-- gap_days --|-- valid_days ----|   labels not mature yet

* Only labels known at `as_of` are used (`labeled_at <= as_of`); the last `delay_days` before
  `as_of` are left out because their frauds are mostly not reported yet.
* Early stopping and the decision thresholds use the validation part, which lies `gap_days`
  after the fit part, as the model will meet traffic some time after its data ends.
* The final model is refit on the whole window with the number of trees early stopping chose.

`train` builds the labelled rows from transactions and labels; `train_on_dataset` is the same
training from rows prepared elsewhere (the retrain service uses the stream's scored feature log).
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sklearn
import xgboost as xgb
from sklearn.metrics import average_precision_score, roc_auc_score

from models.evaluation import Costs
from models.features import FEATURE_NAMES, FeatureBuilder, sort_by_event_time
from models.fraud_labels import attributed_frauds
from models.thresholds import Thresholds, choose_thresholds
from models.user_window import DEFAULT_ALLOWED_LATENESS_MS
from schemas.errors import InputError, TrainingError
from schemas.events import Label, Transaction, epoch_ms

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "aucpr",
    "tree_method": "hist",
    "max_depth": 6,
    "learning_rate": 0.1,
    "min_child_weight": 1.0,
    "subsample": 0.9,
    "colsample_bytree": 0.9,
    "nthread": 2,
    "seed": 0,
}


@dataclass(frozen=True)
class TrainingConfig:
    train_days: float = 21.0
    delay_days: float = 7.0
    gap_days: float = 3.0
    valid_days: float = 4.0
    as_of: datetime | None = None
    costs: Costs = field(default_factory=Costs)
    max_rounds: int = 600
    early_stopping_rounds: int = 40
    scale_pos_weight: float | None = None
    """Weight of the fraud class; None: sqrt(genuine/fraud), a compromise for imbalance."""
    min_frauds: int = 10
    allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS
    params: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.train_days <= 0 or self.valid_days <= 0:
            raise InputError("train and validation windows must be positive")
        if self.gap_days < 0 or self.delay_days < 0:
            raise InputError("gap and delay must not be negative")
        if self.gap_days + self.valid_days >= self.train_days:
            raise InputError(
                f"the window ({self.train_days} d) must be longer than gap + validation "
                f"({self.gap_days} + {self.valid_days} d) to leave days to fit on"
            )


@dataclass(frozen=True)
class TrainingResult:
    model_bytes: bytes
    metadata: dict[str, Any]
    thresholds: Thresholds


@dataclass(frozen=True, eq=False)
class Dataset:
    """Labelled feature rows in event-time order (columns: FEATURE_NAMES).

    Checked on construction, so training never meets misaligned arrays or unordered rows: the
    time split and the early-stopping data depend on the order.
    """

    matrix: np.ndarray
    labels: np.ndarray  # bool
    event_time_ms: np.ndarray  # int64
    transaction_ids: list[str]

    def __post_init__(self) -> None:
        if self.matrix.ndim != 2 or self.matrix.shape[1] != len(FEATURE_NAMES):
            raise InputError(
                f"dataset rows must have {len(FEATURE_NAMES)} features, got {self.matrix.shape}"
            )
        lengths = {
            self.matrix.shape[0],
            self.labels.shape[0],
            self.event_time_ms.shape[0],
            len(self.transaction_ids),
        }
        if len(lengths) != 1:
            raise InputError(
                f"dataset columns differ in length: {self.matrix.shape[0]} rows, "
                f"{self.labels.shape[0]} labels, {self.event_time_ms.shape[0]} times, "
                f"{len(self.transaction_ids)} ids"
            )
        if self.labels.dtype != np.bool_:
            raise InputError(f"dataset labels must be booleans, got dtype {self.labels.dtype}")
        if self.event_time_ms.size and bool((np.diff(self.event_time_ms) < 0).any()):
            raise InputError("dataset rows must be in event-time order")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def select(self, mask: np.ndarray) -> Dataset:
        """The rows where `mask` is true, in the same order."""
        index = np.flatnonzero(mask)
        return Dataset(
            matrix=self.matrix[index],
            labels=self.labels[index],
            event_time_ms=self.event_time_ms[index],
            transaction_ids=[self.transaction_ids[i] for i in index],
        )


def join_labels(
    transactions: Sequence[Transaction], labels: Sequence[Label], as_of_ms: int | None = None
) -> dict[str, bool]:
    """transaction_id -> is_fraud for labels known at `as_of_ms`; unknown ids are an error."""
    known = {tx.transaction_id for tx in transactions}
    result: dict[str, bool] = {}
    orphans = 0
    example = ""
    for label in labels:
        if label.transaction_id not in known:
            orphans += 1
            example = example or label.transaction_id
            continue
        if (
            as_of_ms is not None
            and label.labeled_at is not None
            and epoch_ms(label.labeled_at) > as_of_ms
        ):
            continue
        result[label.transaction_id] = label.is_fraud
    if orphans:
        raise InputError(
            f"{orphans} label(s) refer to transactions not in the transactions file "
            f"(first: {example}); pass the transactions the labels belong to"
        )
    return result


def build_dataset(
    transactions: Sequence[Transaction],
    labels: Sequence[Label],
    known_labels: dict[str, bool],
    start_ms: int,
    end_ms: int,
    allowed_lateness_ms: int = DEFAULT_ALLOWED_LATENESS_MS,
) -> Dataset:
    """Features of all transactions (history feeds the windows); rows in [start, end) kept.

    `labels` feed the merchant risk features (each from its `labeled_at` on, as in the stream);
    `known_labels` are the training targets.
    """
    ordered = sort_by_event_time(transactions)
    ts = np.fromiter((epoch_ms(tx.timestamp) for tx in ordered), dtype=np.int64, count=len(ordered))
    # Features only look back: what happens after the window cannot change its rows.
    cut = int(np.searchsorted(ts, end_ms, side="left"))
    ordered, ts = ordered[:cut], ts[:cut]
    rows = FeatureBuilder(allowed_lateness_ms, attributed_frauds(labels).frauds).build(ordered)
    ids = [tx.transaction_id for tx in ordered]
    labelled = np.fromiter((i in known_labels for i in ids), dtype=bool, count=len(ids))
    keep = (ts >= start_ms) & (ts < end_ms) & labelled & ~rows.duplicate
    index = np.flatnonzero(keep)
    return Dataset(
        matrix=rows.matrix[index],
        labels=np.array([known_labels[ids[i]] for i in index], dtype=bool),
        event_time_ms=ts[index],
        transaction_ids=[ids[i] for i in index],
    )


def _fingerprint(data: Dataset) -> str:
    digest = hashlib.sha256()
    digest.update("\n".join(data.transaction_ids).encode())
    digest.update(np.packbits(data.labels).tobytes())
    digest.update(np.ascontiguousarray(data.matrix).tobytes())
    return digest.hexdigest()


def _check_classes(labels: np.ndarray, part: str, minimum: int) -> None:
    frauds = int(labels.sum())
    if labels.size == 0:
        raise TrainingError(f"the {part} part of the training window has no labelled transactions")
    if frauds == 0 or frauds == labels.size:
        raise TrainingError(
            f"the {part} part has only one class ({frauds} frauds in {labels.size}); "
            "widen the window or check the labels"
        )
    if frauds < minimum:
        raise TrainingError(
            f"the {part} part has only {frauds} frauds (need at least {minimum}); "
            "widen the window (--train-days) or move --as-of"
        )


def _ms(days: float) -> int:
    return round(days * 86_400_000)


def _iso(ms: int) -> str:
    return (datetime(1970, 1, 1) + timedelta(milliseconds=ms)).isoformat() + "Z"


def train(
    transactions: Sequence[Transaction],
    labels: Sequence[Label],
    config: TrainingConfig | None = None,
    lineage: dict[str, Any] | None = None,
) -> TrainingResult:
    """Train, validate and package a model version (not yet registered)."""
    config = config or TrainingConfig()
    config.validate()
    if not transactions:
        raise TrainingError("no transactions to train on")
    last_ms = max(epoch_ms(tx.timestamp) for tx in transactions)
    as_of_ms = epoch_ms(config.as_of) if config.as_of is not None else last_ms
    window_start, window_end = training_window(config, as_of_ms)
    known = join_labels(transactions, labels, as_of_ms)
    data = build_dataset(
        transactions, labels, known, window_start, window_end, config.allowed_lateness_ms
    )
    return train_on_dataset(data, config, as_of_ms, lineage)


def training_window(config: TrainingConfig, as_of_ms: int) -> tuple[int, int]:
    """[start, end) of the training window in event-time ms: it ends `delay_days` before as_of."""
    window_end = as_of_ms - _ms(config.delay_days)
    return window_end - _ms(config.train_days), window_end


def train_on_dataset(
    data: Dataset,
    config: TrainingConfig,
    as_of_ms: int,
    lineage: dict[str, Any] | None = None,
) -> TrainingResult:
    """Train on prepared rows: those inside the window that `config` and `as_of_ms` define.

    `data` holds the labels known at `as_of_ms` (the caller applies label availability); rows
    outside the window are ignored, so a caller may pass everything it has.
    """
    config.validate()
    if config.as_of is not None and epoch_ms(config.as_of) != as_of_ms:
        raise InputError(
            f"config.as_of ({config.as_of.isoformat()}) contradicts as_of_ms ({_iso(as_of_ms)})"
        )
    window_start, window_end = training_window(config, as_of_ms)
    valid_start = window_end - _ms(config.valid_days)
    fit_end = valid_start - _ms(config.gap_days)
    inside = (data.event_time_ms >= window_start) & (data.event_time_ms < window_end)
    if not inside.all():
        data = data.select(inside)

    fit = data.event_time_ms < fit_end
    valid = data.event_time_ms >= valid_start
    _check_classes(data.labels[fit], "fit", config.min_frauds)
    _check_classes(data.labels[valid], "validation", max(1, config.min_frauds // 4))

    n_pos = int(data.labels[fit].sum())
    n_neg = int(fit.sum()) - n_pos
    spw = config.scale_pos_weight
    if spw is None:
        spw = float(np.sqrt(n_neg / n_pos))
    params = {**DEFAULT_PARAMS, "scale_pos_weight": spw, **config.params}
    names = list(FEATURE_NAMES)
    dfit = xgb.DMatrix(data.matrix[fit], label=data.labels[fit], feature_names=names)
    dvalid = xgb.DMatrix(data.matrix[valid], label=data.labels[valid], feature_names=names)
    probe = xgb.train(
        params,
        dfit,
        num_boost_round=config.max_rounds,
        evals=[(dvalid, "validation")],
        early_stopping_rounds=config.early_stopping_rounds,
        verbose_eval=False,
    )
    rounds = int(probe.best_iteration) + 1
    valid_scores = probe.predict(dvalid, iteration_range=(0, rounds)).astype(np.float64)
    y_valid = data.labels[valid]
    thresholds = choose_thresholds(valid_scores, y_valid, config.costs)
    validation = {
        "auc_roc": float(roc_auc_score(y_valid, valid_scores)),
        "average_precision": float(average_precision_score(y_valid, valid_scores)),
        "n_transactions": int(valid.sum()),
        "n_frauds": int(y_valid.sum()),
    }

    # Final model: the whole window, the number of trees early stopping chose.
    dall = xgb.DMatrix(data.matrix, label=data.labels, feature_names=names)
    booster = xgb.train(params, dall, num_boost_round=rounds, verbose_eval=False)
    model_bytes = bytes(booster.save_raw(raw_format="ubj"))

    metadata: dict[str, Any] = {
        "feature_names": names,
        "thresholds": thresholds.to_dict(),
        "costs": asdict(config.costs),
        "training_window": {
            "start": _iso(window_start),
            "end": _iso(window_end),
            "fit_end": _iso(fit_end),
            "validation_start": _iso(valid_start),
            "as_of": _iso(as_of_ms),
            "delay_days": config.delay_days,
            "gap_days": config.gap_days,
        },
        "data": {
            "fingerprint": _fingerprint(data),
            "n_transactions": int(data.labels.size),
            "n_frauds": int(data.labels.sum()),
            "n_fit": int(fit.sum()),
            "n_validation": int(valid.sum()),
        },
        "metrics": {"validation": validation},
        "params": {**params, "num_boost_round": rounds},
        "feature_spec": {"allowed_lateness_ms": config.allowed_lateness_ms},
        "library_versions": {
            "python": platform.python_version(),
            "xgboost": xgb.__version__,
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "lineage": lineage or {"parent": None, "trigger": "manual"},
    }
    return TrainingResult(model_bytes=model_bytes, metadata=metadata, thresholds=thresholds)
