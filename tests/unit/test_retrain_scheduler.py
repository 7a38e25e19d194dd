"""When the retrain service runs: drift (debounced, retried while unresolved) and a schedule."""

from __future__ import annotations

from datetime import UTC, datetime

from retrain.service import RunOutcome, Scheduler
from schemas.events import DriftEvent


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drift() -> DriftEvent:
    return DriftEvent(
        detector="ddm",
        signal="missed_fraud",
        model_version="v1",
        detected_at=datetime(2024, 1, 2, tzinfo=UTC),
    )


def outcome(kind: str) -> RunOutcome:
    return RunOutcome("drift", kind, "v2", "v1", [], {}, 1.0)  # type: ignore[arg-type]


def test_drift_runs_at_once_then_waits_for_the_cooldown() -> None:
    clock = FakeClock()
    plan = Scheduler(every_s=None, cooldown_s=60, drift_attempts=3, clock=clock)
    assert plan.due() is None
    plan.on_drift(drift())
    trigger = plan.due()
    assert trigger is not None and trigger[0] == "drift"
    assert trigger[1] is not None and trigger[1]["detector"] == "ddm"
    plan.ran("drift", outcome("promoted"))
    plan.on_drift(drift())  # a second event right after: merged into the next run
    clock.now += 59
    assert plan.due() is None
    clock.now += 1
    assert plan.due() is not None


def test_a_rejected_drift_retrain_is_retried_until_the_attempts_run_out() -> None:
    clock = FakeClock()
    plan = Scheduler(every_s=None, cooldown_s=10, drift_attempts=2, clock=clock)
    plan.on_drift(drift())
    plan.ran("drift", outcome("rejected"))
    clock.now += 10
    assert plan.due() is not None  # retried: more labels of the new pattern by now
    plan.ran("drift", outcome("rejected"))
    clock.now += 10
    assert plan.due() is None  # gave up after two attempts


def test_a_promotion_settles_the_drift() -> None:
    clock = FakeClock()
    plan = Scheduler(every_s=None, cooldown_s=10, drift_attempts=5, clock=clock)
    plan.on_drift(drift())
    plan.ran("drift", outcome("rejected"))
    clock.now += 10
    plan.ran("drift", outcome("promoted"))
    clock.now += 100
    assert plan.due() is None


def test_schedule_runs_every_interval_from_the_last_run() -> None:
    clock = FakeClock()
    plan = Scheduler(every_s=100, cooldown_s=10, drift_attempts=1, clock=clock)
    assert plan.due() is None
    clock.now += 100
    assert plan.due() == ("schedule", None)
    plan.ran("schedule", RunOutcome("schedule", "rejected", "v2", "v1", [], {}, 1.0))
    clock.now += 99
    assert plan.due() is None
    clock.now += 1
    assert plan.due() == ("schedule", None)
