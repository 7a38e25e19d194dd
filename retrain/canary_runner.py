"""The canary controller: drives the registry's rollout in progress from the live stream.

    registry: rollout in progress ─┐
    fraud-scores, labels (every ───┼─► CanaryGuard ─► verdict ─► registry entry (+ evidence)
      partition, no group)         ┘                              └─► ModelUpdate on model-updates

It runs inside the retrain service: the one process that writes the registry (workers mount it
read-only), of which exactly one runs, and which already decides promotions. A rollout started by
`fraudstream models canary` or by the service itself (`--winner canary`) is picked up from the
registry on the next tick. Nothing is kept only in memory: the step and when it began are in the
registry, every score says its rollout and step, so a restarted service reads both topics again
from their start and goes on with the same evidence and the same hold already elapsed.
Decisions are written to the registry first, then announced; an announcement that fails is
retried on every tick until the broker has it (workers also follow the registry on restart).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from models.canary_guard import CanaryGuard, GuardrailConfig, Observation, Verdict
from models.registry import ModelRegistry, Rollout
from retrain.notify import model_update
from schemas.errors import FraudstreamError
from schemas.events import Label, ModelUpdate

log = logging.getLogger("fraudstream.canary")


@dataclass
class CanaryCounts:
    advanced: int = 0
    promoted: int = 0
    rolled_back: int = 0
    scores: int = 0
    labels: int = 0
    unsent: int = 0
    last: dict[str, float] = field(default_factory=dict)
    """The evidence of the rollout in progress, as of the last tick."""


class _Tail:
    """Both topics from their start, every partition, no consumer group (never committed)."""

    def __init__(self, client_config: Mapping[str, str], topics: list[str]) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        from producers.record import consumer_config

        self.consumer = Consumer(
            {**consumer_config(client_config, 50), "enable.partition.eof": False}
        )
        assigned = []
        for topic in topics:
            described = self.consumer.list_topics(topic, timeout=10.0).topics.get(topic)
            if described is None or described.error is not None or not described.partitions:
                self.consumer.close()
                raise FraudstreamError(f"canary controller: topic {topic} does not exist")
            assigned += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in described.partitions]
        self.consumer.assign(assigned)

    def read(self, max_messages: int, timeout_s: float) -> list[Any]:
        messages = self.consumer.consume(max_messages, timeout_s)
        return [m for m in messages if m.error() is None]

    def close(self) -> None:
        self.consumer.close()


Notifier = Callable[[ModelUpdate], None]


class CanaryRunner:
    """Call `tick()` often (the retrain service's loop does, about twice a second)."""

    def __init__(
        self,
        registry: ModelRegistry,
        client_config: Mapping[str, str],
        scores_topic: str,
        labels_topic: str,
        notify: Notifier | None,
        guardrails: GuardrailConfig,
        clock: Callable[[], float] = time.time,
        on_verdict: Callable[[Rollout, Verdict], None] = lambda rollout, verdict: None,
    ) -> None:
        self.registry = registry
        self.client_config = dict(client_config)
        self.scores_topic, self.labels_topic = scores_topic, labels_topic
        self.notify = notify
        self.guardrails = guardrails
        self.clock = clock
        self.on_verdict = on_verdict
        self.guard: CanaryGuard | None = None
        self.counts = CanaryCounts()
        self._tail: _Tail | None = None
        self._unsent: list[ModelUpdate] = []

    def tick(self, read_s: float = 0.1, max_messages: int = 5000) -> Verdict | None:
        """Read what is new, judge the current step, act on the verdict (if any)."""
        self._send_unsent()
        rollout = self.registry.canary()
        if rollout is None:
            self._stop()
            return None
        guard = self.guard
        if guard is None or guard.rollout.rollout != rollout.rollout:
            self._stop()
            log.warning(
                "canary %s: %s at step %d (%g %%), reading the scores of the rollout",
                rollout.rollout,
                rollout.version,
                rollout.step,
                rollout.share,
            )
            guard = self.guard = CanaryGuard(rollout, self.guardrails)
            self._tail = _Tail(self.client_config, [self.scores_topic, self.labels_topic])
        elif guard.rollout.step != rollout.step:
            guard.follow(rollout)
        self._read(guard, read_s, max_messages)
        verdict = guard.verdict(self.clock())
        self.counts.last = guard.evidence(self.clock())
        if verdict is not None:
            self._act(rollout, verdict)
        return verdict

    def _read(self, guard: CanaryGuard, read_s: float, max_messages: int) -> None:
        assert self._tail is not None  # noqa: S101 - opened with the guard
        rollout = guard.rollout.rollout
        for message in self._tail.read(max_messages, read_s):
            value = message.value() or b""
            if message.topic() == self.scores_topic:
                obs = Observation.from_json(value, rollout)
                if obs is not None:
                    guard.add_score(obs)
                    self.counts.scores += 1
                continue
            try:
                label = Label.model_validate_json(value)
            except ValueError:
                continue
            guard.add_label(label.transaction_id, label.is_fraud)
            self.counts.labels += 1

    def _act(self, rollout: Rollout, verdict: Verdict) -> None:
        evidence = verdict.evidence
        if verdict.action == "rollback":
            self.registry.end_canary(rollout.rollout, verdict.reason, evidence)
            update = model_update(
                self.registry.get(rollout.version),
                "canary_rollback",
                verdict.reason,
                rollout,
                evidence,
            )
            self.counts.rolled_back += 1
            log.error("canary %s rolled back: %s", rollout.rollout, verdict.reason)
        elif verdict.action == "promote":
            info = self.registry.promote_canary(rollout.rollout, verdict.reason, evidence)
            update = model_update(info, "promote", verdict.reason, rollout, evidence)
            self.counts.promoted += 1
            log.warning("canary %s promoted %s: %s", rollout.rollout, info.version, verdict.reason)
        else:
            moved = self.registry.advance_canary(rollout.rollout, evidence, verdict.reason)
            update = model_update(
                self.registry.get(moved.version), "canary", verdict.reason, moved, evidence
            )
            self.counts.advanced += 1
            log.warning(
                "canary %s: %s; step %d: %g %% of users",
                rollout.rollout,
                verdict.reason,
                moved.step,
                moved.share,
            )
            if self.guard is not None:
                self.guard.follow(moved)
        self.on_verdict(rollout, verdict)
        self._unsent.append(update)
        self._send_unsent()

    def _send_unsent(self) -> None:
        while self._unsent and self.notify is not None:
            try:
                self.notify(self._unsent[0])
            except FraudstreamError as exc:
                log.error("canary decision not announced yet (retrying): %s", exc)
                break
            self._unsent.pop(0)
        self.counts.unsent = len(self._unsent)

    def _stop(self) -> None:
        if self._tail is not None:
            self._tail.close()
            self._tail = None
        self.guard = None

    def close(self) -> None:
        self._stop()


class CanaryTick:
    """The runner as the retrain service's loop calls it: one tick per turn, its state exported
    to `metrics` (`fraudstream.metrics.RetrainMetrics`); a broker or registry problem is logged
    and the next turn starts over (the state is in the registry and the topics)."""

    def __init__(self, runner: CanaryRunner, metrics: Any) -> None:
        self.runner = runner
        self.metrics = metrics
        self._names: set[str] = set()

    def __call__(self) -> None:
        runner, metrics = self.runner, self.metrics
        from confluent_kafka import KafkaException

        try:
            runner.tick()
        except (FraudstreamError, KafkaException) as exc:
            log.error("canary controller: %s", exc)
            runner.close()
        guard = runner.guard
        metrics.canary_step.labels("step").set(guard.rollout.step if guard else -1)
        metrics.canary_step.labels("share").set(guard.rollout.share if guard else 0)
        evidence = runner.counts.last if guard else {}
        for name in self._names - set(evidence):
            metrics.canary_evidence.remove(name)
        for name, value in evidence.items():
            metrics.canary_evidence.labels(name).set(value)
        self._names = set(evidence)
