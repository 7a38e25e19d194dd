"""A canary rollout's life in the registry and in a worker's live models: started, moved step by
step, rolled back or promoted; workers follow the ModelUpdates (and the registry on start)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.registry import ModelRegistry
from retrain.notify import model_update
from schemas.errors import RegistryError
from schemas.events import ModelUpdate
from stream_app.live_models import LiveModels
from tests.unit.test_registry import meta, tiny_model


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    store = ModelRegistry(tmp_path / "registry", "fraud-xgb")
    for seed in range(3):
        store.register(tiny_model(seed), meta())
    store.promote("v1")
    return store


def canary_update(store: ModelRegistry, action: str = "canary") -> ModelUpdate:
    rollout = store.canary()
    assert rollout is not None
    return model_update(store.get(rollout.version), action, "test", rollout)  # type: ignore[arg-type]


def test_a_rollout_walks_its_steps_and_ends_with_the_promotion(registry: ModelRegistry) -> None:
    started = registry.start_canary("v2", [5, 25, 100], hold_s=60, min_decisions=10)
    assert (started.rollout, started.step, started.share) == ("v2-canary1", 0, 5.0)
    assert started.champion == "v1" and not started.last_step
    moved = registry.advance_canary(started.rollout, {"flagged_share_challenger": 0.02})
    assert (moved.step, moved.share, moved.started_at) == (1, 25.0, started.started_at)
    last = registry.advance_canary(started.rollout, {})
    assert last.last_step
    with pytest.raises(RegistryError, match="last step"):
        registry.advance_canary(started.rollout, {})
    registry.promote_canary(started.rollout, "passed", {"step": 2.0})
    assert registry.canary() is None and registry.champion() == "v2"
    decisions = [(e["action"], e.get("step")) for e in registry.canary_history()]
    assert decisions == [("canary", 0), ("canary", 1), ("canary", 2), ("promote", None)]
    assert registry.canary_history()[1]["evidence"] == {"flagged_share_challenger": 0.02}


def test_a_rolled_back_rollout_leaves_the_champion_and_a_new_one_gets_a_new_id(
    registry: ModelRegistry,
) -> None:
    first = registry.start_canary("v2", [10, 100], hold_s=0, min_decisions=1)
    with pytest.raises(RegistryError, match="in progress"):
        registry.start_canary("v3", [10], hold_s=0, min_decisions=1)
    registry.end_canary(first.rollout, "flagged share breached", {"step": 0.0})
    assert registry.canary() is None and registry.champion() == "v1"
    again = registry.start_canary("v2", [10, 100], hold_s=0, min_decisions=1)
    assert again.rollout == "v2-canary2" != first.rollout


@pytest.mark.parametrize("steps", [[], [0, 50], [50, 25], [25, 25], [50, 101]])
def test_steps_must_be_rising_percents(registry: ModelRegistry, steps: list[float]) -> None:
    with pytest.raises(RegistryError, match="step"):
        registry.start_canary("v2", steps, hold_s=0, min_decisions=1)


def test_the_champion_cannot_be_its_own_canary(registry: ModelRegistry) -> None:
    with pytest.raises(RegistryError, match="other than it"):
        registry.start_canary("v1", [50], hold_s=0, min_decisions=1)


def test_a_change_of_champion_ends_the_rollout(registry: ModelRegistry) -> None:
    registry.start_canary("v2", [10, 100], hold_s=0, min_decisions=1)
    registry.promote("v3", reason="manual override")
    assert registry.canary() is None


def test_workers_follow_each_step_the_rollback_and_the_promotion(registry: ModelRegistry) -> None:
    live = LiveModels(registry)
    registry.set_shadow("v2")
    live.apply(model_update(registry.get("v2"), "shadow", "test"))
    registry.start_canary("v2", [5, 50, 100], hold_s=0, min_decisions=1)
    assert live.apply(canary_update(registry)) is not None
    assert live.canary is not None and live.canary.challenger.version == "v2"
    assert (live.canary.step, live.canary.share) == (0, 5.0)
    assert live.shadow is None, "the canary's challenger no longer shadows"
    scorer = live.canary.challenger
    assert live.apply(canary_update(registry)) is None  # the same step again: nothing to do
    rollout = registry.canary()
    assert rollout is not None
    registry.advance_canary(rollout.rollout, {})
    assert live.apply(canary_update(registry)) is not None
    assert (live.canary.step, live.canary.share) == (1, 50.0)
    assert live.canary.challenger is scorer, "a step change reloads nothing"
    registry.end_canary(rollout.rollout, "breach", {})
    gone = model_update(registry.get("v2"), "canary_rollback", "breach", rollout)
    assert live.apply(gone) is not None and live.canary is None
    assert live.champion.version == "v1"

    second = registry.start_canary("v2", [50, 100], hold_s=0, min_decisions=1)
    live.apply(canary_update(registry))
    registry.advance_canary(second.rollout, {})
    live.apply(canary_update(registry))
    info = registry.promote_canary(second.rollout, "passed", {})
    assert live.apply(model_update(info, "promote", "passed", registry.canary())) is not None
    assert live.champion.version == "v2" and live.canary is None


def test_a_rollback_of_another_rollout_is_ignored(registry: ModelRegistry) -> None:
    live = LiveModels(registry)
    started = registry.start_canary("v2", [5, 100], hold_s=0, min_decisions=1)
    live.apply(canary_update(registry))
    stale = canary_update(registry, "canary_rollback")
    other = stale.model_copy(
        update={"canary": stale.canary.model_copy(update={"rollout": "v2-canary0"})}  # type: ignore[union-attr]
    )
    assert live.apply(other) is None
    assert live.canary is not None and live.canary.rollout == started.rollout


def test_a_restarted_worker_takes_the_rollout_step_from_the_registry(
    registry: ModelRegistry,
) -> None:
    started = registry.start_canary("v3", [5, 25], hold_s=0, min_decisions=1)
    registry.advance_canary(started.rollout, {})
    live = LiveModels(registry)
    assert live.canary is not None
    assert (live.canary.rollout, live.canary.step, live.canary.share) == (started.rollout, 1, 25)
    registry.end_canary(started.rollout, "breach", {})
    assert live.sync() == [f"canary {started.rollout} ended"] and live.canary is None


def test_a_canary_update_without_its_plan_is_refused(registry: ModelRegistry) -> None:
    live = LiveModels(registry)
    bare = model_update(registry.get("v2"), "canary", "no plan")
    assert live.apply(bare) is None
    assert live.counts.rejected == 1 and live.canary is None
