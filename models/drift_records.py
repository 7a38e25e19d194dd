"""What the cluster's drift monitor reads, and the hour records it writes to its inputs log.

Inputs: `ScoreInput` (what the monitor keeps of a FraudScore) and `LabelInput`. Outputs: one
record per closed hour that carries anything — `ScoreHour` (the champion's bucket sums per
signal) or `LabelHour` (the ordered miss bits of the champion's fraud labels) — each with a
`Resume`: where to read both topics again so that a new monitor rebuilds the open hours exactly.
Records are small (a few hundred bytes; ~30 bytes per fraud label) and JSON round-trips their
floats exactly, so detectors fed from the log are in the state the live ones were in.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from models.drift_config import DriftConfig
from models.drift_signals import BucketStats, shape
from models.feedback import Scored
from models.hourly_closure import ClosureResume, PartitionResume
from schemas.events import DECISIONS, FraudScore, Label, epoch_ms

LOG_FORMAT: Literal[1] = 1


@dataclass(slots=True)  # not frozen: see "Hot value objects", models/stages.py
class ScoreInput:
    """A FraudScore as the monitor needs it: join fields and the shaped drift signals."""

    transaction_id: str
    event_time_ms: int
    model_version: str
    signals: tuple[float | None, ...]
    """Shaped values in `DriftConfig.signals` order (None: the transaction has no value)."""
    scored: Scored

    @staticmethod
    def from_json(value: bytes, config: DriftConfig) -> ScoreInput:
        """From a FraudScore's JSON, reading only what the monitor needs (a full validation
        of every score cost more than the monitor's own work; the scores are the workers'
        own output). Raises ValueError for a record that is not a usable score."""
        try:
            return _score_input(orjson.loads(value), config)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"not a FraudScore: {exc!r}") from None

    @staticmethod
    def from_event(event: FraudScore, config: DriftConfig) -> ScoreInput:
        features = event.features
        raw = (event.score, *(features.get(name, math.nan) for name, _ in config.features))
        shadow = event.shadow
        t_ms = epoch_ms(event.event_time)
        return ScoreInput(
            transaction_id=event.transaction_id,
            event_time_ms=t_ms,
            model_version=event.model_version,
            signals=tuple(shape(v, how) for v, how in zip(raw, config.transforms, strict=True)),
            scored=Scored(
                event_time_ms=t_ms,
                score=event.score,
                flagged=event.decision != "approve",
                model_version=event.model_version,
                shadow_version=shadow.model_version if shadow else None,
                shadow_score=shadow.score if shadow else None,
                shadow_flagged=shadow.decision != "approve" if shadow else None,
            ),
        )


def _score_input(data: dict[str, Any], config: DriftConfig) -> ScoreInput:
    score, decision, features = data["score"], data["decision"], data["features"]
    version, transaction_id = data["model_version"], data["transaction_id"]
    event_time = datetime.fromisoformat(data["event_time"])
    if isinstance(version, str):
        version = sys.intern(version)  # one copy of each version among a million kept scores
    if not (isinstance(score, int | float) and 0.0 <= score <= 1.0 and decision in DECISIONS):
        raise ValueError("score or decision")
    if not (isinstance(version, str) and isinstance(transaction_id, str)):
        raise ValueError("model_version or transaction_id")
    if event_time.tzinfo is None:
        raise ValueError("event_time without an offset")
    shadow = data.get("shadow")
    t_ms = epoch_ms(event_time)
    raw = [float(score), *[_number(features.get(name)) for name, _ in config.features]]
    return ScoreInput(
        transaction_id=transaction_id,
        event_time_ms=t_ms,
        model_version=version,
        signals=tuple([shape(v, how) for v, how in zip(raw, config.transforms, strict=True)]),
        scored=Scored(
            event_time_ms=t_ms,
            score=float(score),
            flagged=decision != "approve",
            model_version=version,
            shadow_version=sys.intern(str(shadow["model_version"])) if shadow else None,
            shadow_score=float(shadow["score"]) if shadow else None,
            shadow_flagged=shadow["decision"] != "approve" if shadow else None,
        ),
    )


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


@dataclass(frozen=True, slots=True)
class LabelInput:
    transaction_id: str
    is_fraud: bool
    labeled_at_ms: int

    @staticmethod
    def from_event(label: Label) -> LabelInput | None:
        """None for a label without `labeled_at`: it has no place in event time."""
        if label.labeled_at is None:
            return None
        return LabelInput(label.transaction_id, label.is_fraud, epoch_ms(label.labeled_at))

    def order(self) -> tuple[int, str, bool]:
        """Labels of an hour are processed in this order, whatever their partitions."""
        return self.labeled_at_ms, self.transaction_id, self.is_fraud


@dataclass(frozen=True)
class Resume:
    """Where to read `fraud-scores` and `labels` again, and the hours already closed."""

    scores: ClosureResume
    labels: ClosureResume

    @staticmethod
    def start(score_partitions: int, label_partitions: int) -> Resume:
        return Resume(ClosureResume.start(score_partitions), ClosureResume.start(label_partitions))


@dataclass(frozen=True)
class ScoreHour:
    """A closed hour of scores: the champion's bucket sums (`signals` names them)."""

    hour: int
    model_version: str
    signals: tuple[str, ...]
    stats: BucketStats
    resume: Resume


@dataclass(frozen=True)
class FraudOutcome:
    labeled_at_ms: int
    missed: bool
    """The champion had approved this fraud."""
    score: float


@dataclass(frozen=True)
class LabelHour:
    """A closed hour of labels: the champion's fraud labels, in processing order."""

    hour: int
    model_version: str | None
    """The champion of that hour (None: no score had been seen yet)."""
    frauds: tuple[FraudOutcome, ...]
    resume: Resume


HourRecord = ScoreHour | LabelHour


# -- JSON form on the inputs log ------------------------------------------------------------
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Closure(_Model):
    through: int | None
    partitions: list[tuple[int, int | None]]


class _Resume(_Model):
    scores: _Closure
    labels: _Closure


class _ScoreHour(_Model):
    kind: Literal["scores"] = "scores"
    format: Literal[1] = LOG_FORMAT
    hour: int
    model_version: str
    signals: list[str]
    counts: list[int]
    totals: list[float]
    squares: list[float]
    resume: _Resume


class _LabelHour(_Model):
    kind: Literal["labels"] = "labels"
    format: Literal[1] = LOG_FORMAT
    hour: int
    model_version: str | None
    frauds: list[tuple[int, bool, float]]
    resume: _Resume


_RECORD: TypeAdapter[_ScoreHour | _LabelHour] = TypeAdapter(
    Annotated[_ScoreHour | _LabelHour, Field(discriminator="kind")]
)


def _closure_out(c: ClosureResume) -> _Closure:
    return _Closure(through=c.through, partitions=[(p.offset, p.newest_ms) for p in c.partitions])


def _closure_in(c: _Closure) -> ClosureResume:
    return ClosureResume(c.through, tuple(PartitionResume(o, n) for o, n in c.partitions))


def encode_record(record: HourRecord) -> bytes:
    resume = _Resume(
        scores=_closure_out(record.resume.scores), labels=_closure_out(record.resume.labels)
    )
    if isinstance(record, ScoreHour):
        model: _ScoreHour | _LabelHour = _ScoreHour(
            hour=record.hour,
            model_version=record.model_version,
            signals=list(record.signals),
            counts=list(record.stats.counts),
            totals=list(record.stats.totals),
            squares=list(record.stats.squares),
            resume=resume,
        )
    else:
        model = _LabelHour(
            hour=record.hour,
            model_version=record.model_version,
            frauds=[(f.labeled_at_ms, f.missed, f.score) for f in record.frauds],
            resume=resume,
        )
    return model.model_dump_json().encode()


def decode_record(data: bytes | str) -> HourRecord:
    """The record again; raises ValueError (pydantic's ValidationError) if it is not one."""
    model = _RECORD.validate_json(data)
    resume = Resume(_closure_in(model.resume.scores), _closure_in(model.resume.labels))
    if isinstance(model, _ScoreHour):
        stats = BucketStats(tuple(model.counts), tuple(model.totals), tuple(model.squares))
        return ScoreHour(model.hour, model.model_version, tuple(model.signals), stats, resume)
    frauds = tuple(FraudOutcome(t, missed, score) for t, missed, score in model.frauds)
    return LabelHour(model.hour, model.model_version, frauds, resume)


def champion_of(versions: Sequence[str]) -> str:
    """The version that scored most of an hour's transactions (ties: the greatest name).

    >>> champion_of(["v1", "v2", "v2"])
    'v2'
    """
    counts: dict[str, int] = {}
    for version in versions:
        counts[version] = counts.get(version, 0) + 1
    return max(counts.items(), key=lambda item: (item[1], item[0]))[0]
