"""The retrain service: drift events and a schedule in, a gated challenger and a ModelUpdate out.

    drift-events ──┐                    ┌── registry: new version (+ lineage), kept even if rejected
    schedule ──────┼─► run ─► challenger ─► gate ─┤
    --once ────────┘   (scores + labels)          └── passed: promote (or shadow, or canary)
                                                                        + ModelUpdate

Triggers are debounced: a run starts at most once per `cooldown_s`; triggers during the cooldown
are merged into one run when it ends. A drift trigger whose challenger is rejected stays armed
and is retried every `cooldown_s` (more labels of the new pattern arrive meanwhile) up to
`drift_attempts` times. The service talks to workers only through the registry and topics.

With `winner="canary"` a challenger that passes the gate starts a canary rollout instead
(`retrain.canary_runner`, which the service loop ticks): it decides for a growing share of users
while guardrails on live traffic watch it, and is promoted only if it passes every step. No new
retrain starts while a rollout is in progress (triggers wait until it ends).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from models.registry import ModelRegistry, Rollout
from models.scoring import Scorer
from retrain.challenger import ChallengerConfig, train_challenger
from retrain.notify import model_update, publish_model_update
from schemas.errors import FraudstreamError, InputError
from schemas.events import DriftEvent, FraudScore, Label
from schemas.jsonl import read_events

log = logging.getLogger("fraudstream.retrain")


class TrainingSource(Protocol):
    """Where the scored feature log and the labels come from."""

    def load(self) -> tuple[list[FraudScore], list[Label]]: ...


@dataclass
class LoadCounts:
    scores: int = 0
    labels: int = 0
    unreadable: int = 0


class FileSource:
    """Recorded files (`fraudstream record fraud-scores ...` and a labels file)."""

    def __init__(self, scores: Path, labels: Path) -> None:
        self.scores, self.labels = scores, labels

    def load(self) -> tuple[list[FraudScore], list[Label]]:
        return (
            read_events(self.scores, FraudScore).records,
            read_events(self.labels, Label).records,
        )


class KafkaSource:
    """Everything on the score and label topics now (read from the start to the end)."""

    def __init__(self, client_config: dict[str, str], scores_topic: str, labels_topic: str) -> None:
        self.client_config = client_config
        self.scores_topic, self.labels_topic = scores_topic, labels_topic
        self.counts = LoadCounts()

    def _read(self, topic: str, kind: type[FraudScore] | type[Label]) -> Iterator[Any]:
        from producers.record import read_to_end

        for _partition, _offset, value in read_to_end(topic, self.client_config):
            try:
                yield kind.model_validate_json(value)
            except ValueError:
                self.counts.unreadable += 1  # only transactions have a dead-letter topic

    def load(self) -> tuple[list[FraudScore], list[Label]]:
        self.counts = LoadCounts()
        scores = [s for s in self._read(self.scores_topic, FraudScore) if isinstance(s, FraudScore)]
        labels = [x for x in self._read(self.labels_topic, Label) if isinstance(x, Label)]
        self.counts.scores, self.counts.labels = len(scores), len(labels)
        if self.counts.unreadable:
            log.warning("skipped %d unreadable score/label messages", self.counts.unreadable)
        return scores, labels


@dataclass(frozen=True)
class RetrainConfig:
    registry_dir: Path
    model_name: str
    challenger: ChallengerConfig = field(default_factory=ChallengerConfig)
    winner: Literal["promote", "shadow", "canary"] = "promote"
    every_s: float | None = None
    cooldown_s: float = 600.0
    drift_attempts: int = 6
    canary: CanaryStart | None = None
    """The rollout a winner starts when `winner` is "canary"."""


@dataclass(frozen=True)
class CanaryStart:
    """How a rollout proceeds: percents of users per step, least time and decisions per step."""

    steps: tuple[float, ...]
    hold_s: float
    min_decisions: int

    def start(self, registry: ModelRegistry, version: str, reason: str) -> Rollout:
        return registry.start_canary(
            version, self.steps, self.hold_s, self.min_decisions, reason=reason
        )


@dataclass(frozen=True)
class RunOutcome:
    """What one run did, for logs, `--json` and the metrics."""

    trigger: str
    outcome: Literal["promoted", "shadowed", "canary", "rejected", "failed"]
    version: str | None
    parent: str | None
    reasons: list[str]
    metrics: dict[str, Any]
    seconds: float
    notified: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "outcome": self.outcome,
            "version": self.version,
            "parent": self.parent,
            "reasons": self.reasons,
            "metrics": self.metrics,
            "seconds": round(self.seconds, 3),
            "notified": self.notified,
        }


Notifier = Callable[[Any], None]
"""Publishes a ModelUpdate (Kafka in production; a list in tests)."""


class Retrainer:
    """One retrain run: load data, train a challenger, gate it, register, promote, notify."""

    def __init__(
        self, config: RetrainConfig, source: TrainingSource, notify: Notifier | None
    ) -> None:
        self.config = config
        self.source = source
        self.notify = notify
        self.registry = ModelRegistry(config.registry_dir, config.model_name)

    def run(self, trigger: str, detail: dict[str, Any] | None = None) -> RunOutcome:
        began = time.monotonic()
        parent: str | None = None
        try:
            champion = Scorer.from_loaded(self.registry.load())
            parent = champion.version
            scores, labels = self.source.load()
            if not scores:
                raise InputError("the scored feature log is empty: nothing to train on")
            result = train_challenger(
                scores, labels, champion, self.config.challenger, trigger, detail=detail
            )
        except FraudstreamError as exc:
            log.error("retrain (%s) failed: %s", trigger, exc)
            return RunOutcome(
                trigger, "failed", None, parent, [str(exc)], {}, time.monotonic() - began
            )
        info = self.registry.register(result.training.model_bytes, result.training.metadata)
        decision = result.decision
        metrics = {"champion": decision.champion, "challenger": decision.challenger}
        if not decision.passed:
            log.warning(
                "challenger %s rejected (%s): %s",
                info.version,
                trigger,
                "; ".join(decision.reasons),
            )
            return RunOutcome(
                trigger,
                "rejected",
                info.version,
                parent,
                decision.reasons,
                metrics,
                time.monotonic() - began,
            )
        reason = f"{trigger}: {'; '.join(decision.reasons)}"
        outcome: Literal["promoted", "shadowed", "canary"]
        if self.config.winner == "canary":
            try:
                if self.config.canary is None:
                    raise InputError("winner 'canary' needs its rollout (RetrainConfig.canary)")
                rollout = self.config.canary.start(self.registry, info.version, reason)
            except FraudstreamError as exc:
                log.error("challenger %s passed but no rollout started: %s", info.version, exc)
                return RunOutcome(
                    trigger,
                    "failed",
                    info.version,
                    parent,
                    [str(exc)],
                    metrics,
                    time.monotonic() - began,
                )
            update = model_update(info, "canary", reason, rollout)
            outcome = "canary"
        elif self.config.winner == "shadow":
            self.registry.set_shadow(info.version, reason=reason)
            update = model_update(info, "shadow", reason)
            outcome = "shadowed"
        else:
            self.registry.promote(info.version, reason=reason)
            update = model_update(info, "promote", reason)
            outcome = "promoted"
        log.warning("challenger %s %s (%s): %s", info.version, outcome, trigger, reason)
        notified = False
        if self.notify is not None:
            try:
                self.notify(update)
                notified = True
            except FraudstreamError as exc:
                log.error("%s", exc)
        return RunOutcome(
            trigger,
            outcome,
            info.version,
            parent,
            decision.reasons,
            metrics,
            time.monotonic() - began,
            notified,
        )


def kafka_notifier(client_config: dict[str, str], topic: str) -> Notifier:
    return lambda update: publish_model_update(client_config, topic, update)


@dataclass
class Scheduler:
    """When to run: the pure part of the service loop (wall-clock seconds from `clock`)."""

    every_s: float | None
    cooldown_s: float
    drift_attempts: int
    clock: Callable[[], float] = time.monotonic
    last_run: float | None = None
    next_schedule: float | None = None
    pending: str | None = None
    pending_detail: dict[str, Any] | None = None
    drift_left: int = 0

    def __post_init__(self) -> None:
        if self.every_s is not None:
            self.next_schedule = self.clock() + self.every_s

    def on_drift(self, event: DriftEvent) -> None:
        self.pending = "drift"
        self.pending_detail = {
            "detector": event.detector,
            "signal": event.signal,
            "model_version": event.model_version,
            "detected_at": event.detected_at.isoformat(),
        }
        self.drift_left = self.drift_attempts

    def due(self) -> tuple[str, dict[str, Any] | None] | None:
        """The trigger to run now, if any."""
        now = self.clock()
        if self.last_run is not None and now - self.last_run < self.cooldown_s:
            return None
        if self.pending is not None:
            return self.pending, self.pending_detail
        if self.next_schedule is not None and now >= self.next_schedule:
            return "schedule", None
        return None

    def ran(self, trigger: str, outcome: RunOutcome) -> None:
        now = self.clock()
        self.last_run = now
        if self.every_s is not None:
            self.next_schedule = now + self.every_s
        if trigger != "drift" or outcome.outcome in ("promoted", "shadowed", "canary"):
            self.pending, self.pending_detail, self.drift_left = None, None, 0
            return
        self.drift_left -= 1
        if self.drift_left <= 0:
            log.error(
                "drift still unresolved after %d attempts; waiting for the next event",
                self.drift_attempts,
            )
            self.pending, self.pending_detail = None, None


def serve(
    retrainer: Retrainer,
    scheduler: Scheduler,
    poll_drift: Callable[[float], Sequence[DriftEvent]],
    should_stop: Callable[[], bool],
    on_outcome: Callable[[RunOutcome], None] = lambda _outcome: None,
    tick: Callable[[], object] = lambda: None,
) -> None:
    """The service loop: collect drift events, run when due, until asked to stop. `tick` (the
    canary controller) runs on every turn; while a rollout is in progress no run starts."""
    while not should_stop():
        tick()
        for event in poll_drift(0.5):
            if event.model_version != retrainer.registry.champion():
                log.info("ignoring drift on %s (not the champion)", event.model_version)
                continue
            log.warning("drift event: %s on %s", event.detector, event.signal)
            scheduler.on_drift(event)
        due = scheduler.due()
        if due is None or retrainer.registry.canary() is not None:
            continue
        trigger, detail = due
        outcome = retrainer.run(trigger, detail)
        scheduler.ran(trigger, outcome)
        on_outcome(outcome)


class DriftIntake:
    """Drift events from Kafka, through a consumer group so each is handled once."""

    def __init__(self, client_config: dict[str, str], topic: str, group_id: str) -> None:
        from confluent_kafka import Consumer

        self.consumer = Consumer(
            {
                **client_config,
                "group.id": group_id,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
                "session.timeout.ms": 6000,
                "fetch.wait.max.ms": 100,
            }
        )
        self.consumer.subscribe([topic])
        self.unreadable = 0

    def poll(self, timeout_s: float) -> list[DriftEvent]:
        events = []
        for message in self.consumer.consume(100, timeout_s):
            if message.error() is not None:
                log.warning("drift intake: %s", message.error())
                continue
            try:
                events.append(DriftEvent.model_validate_json(message.value() or b""))
            except ValueError:
                self.unreadable += 1
        return events

    def close(self) -> None:
        self.consumer.close()
