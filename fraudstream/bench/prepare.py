"""The run's inputs: simulated traffic, a model trained on it, the records to send."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudstream.bench.config import BenchConfig
from fraudstream.bench.traffic import Record

MODEL_NAME = "fraud-xgb"


@dataclass(frozen=True)
class Prepared:
    registry: Path
    model_name: str
    records: list[Record]
    transactions: list[Any]
    """The simulated transactions as events (for the in-process component costs)."""


def prepare(config: BenchConfig, work: Path, progress: Callable[[str], None]) -> Prepared:
    """Simulate traffic, train and promote a model in a fresh registry, read the records."""
    from models.registry import ModelRegistry
    from models.training import TrainingConfig, train
    from producers.replay import read_recording
    from producers.simulator import SimulationConfig, simulate, write_traffic
    from schemas.events import Label, Transaction
    from schemas.jsonl import read_events

    progress("simulating traffic and training a model")
    simulation = SimulationConfig(
        customers=config.customers, merchants=config.merchants, days=config.days, seed=config.seed
    )
    tx_file, label_file = write_traffic(simulate(simulation), work / "traffic")
    transactions = read_events(tx_file, Transaction).records
    labels = read_events(label_file, Label).records
    trained = train(transactions, labels, TrainingConfig())
    store = ModelRegistry(work / "registry", MODEL_NAME)
    version = store.register(trained.model_bytes, trained.metadata)
    store.promote(version.version, reason="bench")
    records = [
        Record(json.loads(r.value)["transaction_id"], r.key, r.value, r.timestamp_ms)
        for r in read_recording(tx_file, send_invalid=False)
    ]
    if len(records) < config.records_needed:
        raise ValueError(
            f"the simulation holds {len(records)} transactions, the run needs "
            f"{config.records_needed}: simulate more customers or days, or lower "
            "--backlog/--seconds/--high-rate"
        )
    return Prepared(work / "registry", MODEL_NAME, records, transactions)
