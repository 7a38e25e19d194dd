"""Shared fixtures: small simulated datasets and a trained, promoted registry, built once per run.

Everything here is session-scoped and read-only for tests: copy a registry (`copy_registry`)
before changing it, and write your own files instead of editing the dataset's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# OpenMP threads spin while they wait for each other. With two threads on a busy 2-core machine
# that made XGBoost training 7-20x slower here; passive waiting costs nothing measurable when the
# cores are free. Set before anything loads libgomp (xgboost, scikit-learn); subprocesses inherit.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import pytest

from models.registry import ModelRegistry
from models.training import TrainingConfig, TrainingResult, train
from producers.simulator import SimulationConfig, simulate, write_traffic
from schemas.events import Label, Transaction
from schemas.jsonl import read_events

MODEL_NAME = "fraud-xgb"
"""The registry model name the CLI uses by default (`Settings.model_name`)."""

SMALL = SimulationConfig(customers=300, merchants=600, days=40, seed=3)
"""~24k transactions; the default training window holds ~170 frauds (~33 in validation)."""

TINY = SimulationConfig(customers=150, merchants=300, days=36, seed=3)
"""~10k transactions, ~65 frauds in the default window: for tests that train and must be quick."""


@dataclass(frozen=True)
class SimulatedData:
    """A simulated dataset on disk and its events in memory (events are immutable)."""

    config: SimulationConfig
    directory: Path
    transactions_file: Path
    labels_file: Path
    transactions: Sequence[Transaction]
    labels: Sequence[Label]
    summary: dict[str, object]


@dataclass(frozen=True)
class TrainedRegistry:
    """A registry holding one version (`version`), promoted to champion."""

    root: Path
    model_name: str
    version: str
    result: TrainingResult
    data: SimulatedData

    def store(self) -> ModelRegistry:
        return ModelRegistry(self.root, self.model_name)


def _simulated(config: SimulationConfig, directory: Path) -> SimulatedData:
    traffic = simulate(config)
    tx_file, label_file = write_traffic(traffic, directory)
    return SimulatedData(
        config=config,
        directory=directory,
        transactions_file=tx_file,
        labels_file=label_file,
        transactions=tuple(read_events(tx_file, Transaction).records),
        labels=tuple(read_events(label_file, Label).records),
        summary=traffic.summary(),
    )


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> SimulatedData:
    """`SMALL` simulated once: transactions.jsonl and labels.jsonl plus the parsed events."""
    return _simulated(SMALL, tmp_path_factory.mktemp("small-data"))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> SimulatedData:
    """`TINY` simulated once (same layout as `small_dataset`)."""
    return _simulated(TINY, tmp_path_factory.mktemp("tiny-data"))


@pytest.fixture(scope="session")
def small_training(small_dataset: SimulatedData) -> TrainingResult:
    """The default `TrainingConfig` trained on `small_dataset` (what `fraudstream train` does)."""
    return train(small_dataset.transactions, small_dataset.labels, TrainingConfig())


@pytest.fixture(scope="session")
def trained_registry(
    tmp_path_factory: pytest.TempPathFactory,
    small_dataset: SimulatedData,
    small_training: TrainingResult,
) -> TrainedRegistry:
    """A registry with `small_training` registered as v1 and promoted. Do not modify it."""
    root = tmp_path_factory.mktemp("registry")
    store = ModelRegistry(root, MODEL_NAME)
    version = store.register(small_training.model_bytes, small_training.metadata)
    store.promote(version.version, reason="fixture")
    return TrainedRegistry(
        root=root,
        model_name=MODEL_NAME,
        version=version.version,
        result=small_training,
        data=small_dataset,
    )


@pytest.fixture(scope="session")
def fraudstream_registry(trained_registry: TrainedRegistry) -> Path:
    """The plugin's workers score with `trained_registry` (each stack works on a copy)."""
    return trained_registry.root


@pytest.fixture
def copy_registry(trained_registry: TrainedRegistry, tmp_path: Path) -> TrainedRegistry:
    """A private copy of `trained_registry` that a test may change."""
    root = tmp_path / "registry-copy"
    shutil.copytree(trained_registry.root, root)
    return TrainedRegistry(
        root=root,
        model_name=trained_registry.model_name,
        version=trained_registry.version,
        result=trained_registry.result,
        data=trained_registry.data,
    )
