"""Registry integrity: atomic versions, checksums on every load, champion history."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from models.features import FEATURE_NAMES
from models.registry import METADATA_FILE, MODEL_FILE, ModelRegistry
from models.scoring import Scorer
from schemas.errors import RegistryError


def tiny_model(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, len(FEATURE_NAMES)))
    y = (x[:, 0] + rng.normal(scale=0.5, size=200)) > 1.0
    data = xgb.DMatrix(x, label=y, feature_names=list(FEATURE_NAMES))
    booster = xgb.train({"objective": "binary:logistic", "seed": seed}, data, num_boost_round=5)
    return bytes(booster.save_raw(raw_format="ubj"))


def meta() -> dict[str, object]:
    return {"feature_names": list(FEATURE_NAMES), "thresholds": {"review": 0.2, "decline": 0.8}}


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry", "fraud-xgb")


def test_versions_are_numbered_and_verified(registry: ModelRegistry) -> None:
    first = registry.register(tiny_model(0), meta())
    second = registry.register(tiny_model(1), meta())
    assert (first.version, second.version) == ("v1", "v2")
    assert registry.list_versions() == ["v1", "v2"]
    assert registry.champion() is None
    loaded = registry.load("v2")
    assert loaded.info.metadata["model_sha256"] == second.sha256
    # No temporary directories are left behind.
    assert [p.name for p in registry.base.iterdir() if p.name.startswith(".")] == []


def test_promote_and_rollback_follow_the_champion_stack(registry: ModelRegistry) -> None:
    for seed in range(3):
        registry.register(tiny_model(seed), meta())
    registry.promote("v1")
    registry.promote("v2")
    registry.promote("v3")
    assert registry.champion() == "v3"
    assert registry.rollback().version == "v2"
    assert registry.rollback().version == "v1"
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()
    registry.promote("v3")
    assert registry.champion() == "v3"
    actions = [entry["action"] for entry in registry.history()]
    assert actions == ["promote", "promote", "promote", "rollback", "rollback", "promote"]


def test_tampered_model_file_is_refused(registry: ModelRegistry) -> None:
    version = registry.register(tiny_model(), meta())
    registry.promote(version.version)
    path = version.path / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="checksum mismatch"):
        registry.load()


def test_tampered_metadata_is_refused(registry: ModelRegistry) -> None:
    version = registry.register(tiny_model(), meta())
    path = version.path / METADATA_FILE
    doc = json.loads(path.read_text())
    doc["thresholds"]["decline"] = 0.99
    path.write_text(json.dumps(doc))
    with pytest.raises(RegistryError, match="checksum mismatch"):
        registry.get(version.version)


def test_promote_of_unknown_or_malformed_version(registry: ModelRegistry) -> None:
    registry.register(tiny_model(), meta())
    with pytest.raises(RegistryError, match="no such version"):
        registry.promote("v9")
    with pytest.raises(RegistryError, match="not a version name"):
        registry.promote("../../etc")
    with pytest.raises(RegistryError, match="no champion"):
        registry.load()


def test_missing_file_in_a_version_is_reported(registry: ModelRegistry) -> None:
    version = registry.register(tiny_model(), meta())
    (version.path / MODEL_FILE).unlink()
    with pytest.raises(RegistryError, match="incomplete version"):
        registry.load(version.version)


def test_scorer_refuses_a_model_built_for_other_features(registry: ModelRegistry) -> None:
    doc = meta()
    doc["feature_names"] = [*FEATURE_NAMES[:-1], "something_else"]
    version = registry.register(tiny_model(), doc)
    with pytest.raises(RegistryError, match="other features"):
        Scorer.from_loaded(registry.load(version.version))


def test_scorer_refuses_a_booster_whose_own_features_are_in_another_order(
    registry: ModelRegistry,
) -> None:
    """Predictions do not check names (they cost more than the model call): the load does."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, len(FEATURE_NAMES)))
    swapped = [FEATURE_NAMES[1], FEATURE_NAMES[0], *FEATURE_NAMES[2:]]
    data = xgb.DMatrix(x, label=x[:, 0] > 1.0, feature_names=swapped)
    booster = xgb.train({"objective": "binary:logistic"}, data, num_boost_round=2)
    version = registry.register(bytes(booster.save_raw(raw_format="ubj")), meta())
    with pytest.raises(RegistryError, match="another order"):
        Scorer.from_loaded(registry.load(version.version))


def test_scorer_gives_scores_decisions_and_three_reasons(registry: ModelRegistry) -> None:
    version = registry.register(tiny_model(), meta())
    scorer = Scorer.from_loaded(registry.load(version.version))
    rows = np.random.default_rng(3).normal(size=(50, len(FEATURE_NAMES)))
    batch = scorer.score(rows)
    assert len(batch.scores) == 50
    assert all(0.0 <= s <= 1.0 for s in batch.scores)
    assert set(batch.decisions) <= {"approve", "review", "decline"}
    for s, d in zip(batch.scores, batch.decisions, strict=True):
        assert d == ("decline" if s >= 0.8 else "review" if s >= 0.2 else "approve")
    assert all(len(r) == 3 for r in batch.reasons)
    # Scoring a row alone or inside a batch gives the same number (micro-batch invariance).
    alone = scorer.score(rows[7:8])
    assert alone.scores[0] == batch.scores[7]
    assert alone.reasons[0] == batch.reasons[7]


def test_shadow_is_set_cleared_and_ended_by_promotion(registry: ModelRegistry) -> None:
    for seed in range(3):
        registry.register(tiny_model(seed), meta())
    registry.promote("v1")
    assert registry.shadow() is None
    with pytest.raises(RegistryError, match="is the champion"):
        registry.set_shadow("v1")
    registry.set_shadow("v2")
    assert (registry.champion(), registry.shadow()) == ("v1", "v2")
    registry.set_shadow("v3")  # a newer challenger replaces the shadow
    assert registry.shadow() == "v3"
    assert registry.clear_shadow() == "v3"
    assert registry.shadow() is None
    with pytest.raises(RegistryError, match="no shadow"):
        registry.clear_shadow()
    registry.set_shadow("v2")
    registry.promote("v2")  # the shadow won: it decides now and shadows no longer
    assert (registry.champion(), registry.shadow()) == ("v2", None)
    assert registry.rollback().version == "v1"
    assert registry.shadow() is None
