"""Telling running workers about registry changes: one ModelUpdate per change on `model-updates`.

The registry is the truth; a ModelUpdate names the version and its sha256 so that a worker loads
exactly what was meant and refuses anything else.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Literal

from models.registry import ModelVersion, Rollout
from schemas.errors import DeliveryError
from schemas.events import CanaryPlan, ModelUpdate

Action = Literal["promote", "rollback", "shadow", "unshadow", "canary", "canary_rollback"]


def model_update(
    info: ModelVersion,
    action: Action,
    reason: str,
    rollout: Rollout | None = None,
    evidence: dict[str, float] | None = None,
) -> ModelUpdate:
    """The notification for `info` (its validation metrics travel along, flattened). A canary
    decision names its `rollout` step, and its `evidence` replaces the validation metrics."""
    plan = None
    if rollout is not None:
        plan = CanaryPlan(
            rollout=rollout.rollout,
            step=rollout.step,
            share=rollout.share,
            steps=list(rollout.steps),
            champion=rollout.champion,
            hold_s=rollout.hold_s,
            min_decisions=rollout.min_decisions,
        )
    metrics: dict[str, float] = {}
    for group, values in info.metadata.get("metrics", {}).items():
        if not isinstance(values, dict):
            continue
        for name, value in values.items():
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            ):
                metrics[f"{group}_{name}"] = float(value)
    if evidence is not None:
        metrics = {k: float(v) for k, v in evidence.items() if math.isfinite(v)}
    return ModelUpdate(
        model_name=info.name,
        version=info.version,
        sha256=info.sha256,
        location=str(info.path),
        metrics=metrics,
        reason=reason[:1024],
        action=action,
        issued_at=datetime.now(UTC),
        canary=plan,
    )


def publish_model_update(
    client_config: dict[str, str], topic: str, update: ModelUpdate, timeout_s: float = 10.0
) -> None:
    """Produce `update` keyed by model name and wait for the broker's acknowledgement."""
    from confluent_kafka import KafkaError, Producer

    failure: list[str] = []

    def delivered(error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            failure.append(error.str())

    producer = Producer(
        {**client_config, "message.timeout.ms": str(round(timeout_s * 1000)), "acks": "all"}
    )
    producer.produce(
        topic,
        key=update.model_name.encode(),
        value=update.model_dump_json().encode(),
        on_delivery=delivered,
    )
    left = producer.flush(timeout_s + 1.0)
    if left or failure:
        why = failure[0] if failure else f"no acknowledgement within {timeout_s:.0f} s"
        raise DeliveryError(
            f"could not publish the {update.action} of {update.model_name} {update.version} "
            f"to {topic} ({why}); the registry is updated, running workers pick it up when they "
            "restart or on the next published update"
        )
