"""A small model for tests that bring none: simulated traffic, trained and promoted (~5 s).

Training is deterministic, so the same environment always gets the same model, and a golden
file recorded against it stays valid until the model code or its libraries change.
"""

from __future__ import annotations

from pathlib import Path

MODEL_NAME = "fraud-xgb"
"""The registry model name the CLI uses by default (`FRAUD_MODEL_NAME`)."""


def train_small_registry(root: Path, seed: int = 3, model_name: str = MODEL_NAME) -> Path:
    """A registry at `root` whose champion was trained on 40 simulated days of 300 cards.

    The simulator's fraud scenarios (large amounts, compromised merchants and cards) are what
    it learned, so a very large amount for a card that usually spends little is flagged.
    """
    from models.registry import ModelRegistry
    from models.training import TrainingConfig, train
    from producers.simulator import SimulationConfig, simulate, write_traffic
    from schemas.events import Label, Transaction
    from schemas.jsonl import read_events

    traffic = simulate(SimulationConfig(customers=300, merchants=600, days=40, seed=seed))
    tx_file, label_file = write_traffic(traffic, root / "training-data")
    result = train(
        read_events(tx_file, Transaction).records,
        read_events(label_file, Label).records,
        TrainingConfig(),
    )
    store = ModelRegistry(root / "registry", model_name)
    version = store.register(result.model_bytes, result.metadata)
    store.promote(version.version, reason="fraudstream.testing: small simulated model")
    return store.root
