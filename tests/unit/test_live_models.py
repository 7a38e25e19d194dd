"""Hot swap in a running worker: follow ModelUpdates, verify checksums, refuse bad models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from models.registry import MODEL_FILE, ModelRegistry
from retrain.notify import model_update
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


def update(store: ModelRegistry, version: str, action: str = "promote") -> ModelUpdate:
    return model_update(store.get(version), action, "test")  # type: ignore[arg-type]


def test_starts_from_the_registry_and_follows_promote_and_rollback(
    registry: ModelRegistry,
) -> None:
    live = LiveModels(registry)
    assert live.champion.version == "v1" and live.shadow is None
    registry.promote("v2")
    assert live.apply(update(registry, "v2")) is not None
    assert live.champion.version == "v2"
    assert live.apply(update(registry, "v2")) is None  # already there: nothing to do
    registry.rollback()
    assert live.apply(update(registry, "v1", "rollback")) is not None
    assert live.champion.version == "v1"
    assert (live.counts.applied, live.counts.ignored, live.counts.rejected) == (2, 1, 0)


def test_shadow_is_scored_until_stopped_or_promoted(registry: ModelRegistry) -> None:
    live = LiveModels(registry)
    live.apply(update(registry, "v3", "shadow"))
    assert live.shadow is not None and live.shadow.version == "v3"
    live.apply(update(registry, "v3", "promote"))
    assert live.champion.version == "v3" and live.shadow is None
    live.apply(update(registry, "v2", "shadow"))
    live.apply(update(registry, "v2", "unshadow"))
    assert live.shadow is None


def test_a_model_whose_checksum_fails_is_refused_and_the_old_one_kept(
    registry: ModelRegistry,
) -> None:
    live = LiveModels(registry)
    good = update(registry, "v2")
    (registry.versions_dir / "v2" / MODEL_FILE).write_bytes(tiny_model(7))  # tampered
    assert live.apply(good) is None
    assert live.champion.version == "v1"
    assert live.counts.rejected == 1 and "checksum mismatch" in (live.last_error or "")


def test_an_update_announcing_other_bytes_is_refused(registry: ModelRegistry) -> None:
    live = LiveModels(registry)
    forged = update(registry, "v2").model_copy(update={"sha256": "0" * 64})
    assert live.apply(forged) is None
    assert live.champion.version == "v1"
    assert "not the announced" in (live.last_error or "")


def test_a_missing_version_is_refused_and_other_models_ignored(registry: ModelRegistry) -> None:
    live = LiveModels(registry)
    gone = update(registry, "v3")
    shutil.rmtree(registry.versions_dir / "v3")
    assert live.apply(gone) is None and live.champion.version == "v1"
    assert live.apply(gone.model_copy(update={"model_name": "other"})) is None
    assert (live.counts.rejected, live.counts.ignored) == (1, 1)


def test_sync_follows_the_registry(registry: ModelRegistry) -> None:
    live = LiveModels(registry)
    registry.promote("v2")
    registry.set_shadow("v3")
    assert live.sync() == ["champion v2", "shadow v3"]
    assert live.sync() == []
