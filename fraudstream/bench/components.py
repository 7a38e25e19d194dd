"""In-process costs of the pure core, no Kafka: features, scoring at several batch sizes,
drift updates, the whole scoring pipeline. What the worker's own stage counters cannot show:
how the cost of a model call depends on the batch size, and the collector's share."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def components(
    registry: Path,
    model_name: str,
    transactions: Sequence[Any],
    progress: Callable[[str], None],
    records: Sequence[tuple[bytes | None, bytes]] = (),
) -> dict[str, Any]:
    """In-process costs of the pure core (no Kafka): features, scoring, drift updates, and the
    whole pipeline over `records` (key, value) if given (`inprocess`)."""
    import numpy as np

    from models.drift import DriftMonitor
    from models.features import FeatureBuilder
    from models.registry import ModelRegistry
    from models.scoring import Scorer
    from schemas.events import epoch_ms

    progress("components: features, scoring, drift (in-process)")
    began = time.perf_counter()
    rows = FeatureBuilder().build(transactions)
    features_us = (time.perf_counter() - began) / len(transactions) * 1e6
    matrix = rows.matrix
    scorer = Scorer.from_loaded(ModelRegistry(registry, model_name).load())

    scoring: dict[str, Any] = {}
    for size, total in ((1, 400), (20, 2000), (500, 5000)):
        total = min(total, matrix.shape[0] - matrix.shape[0] % size)
        calls = total // size
        scorer.score(matrix[:size])  # warm-up
        began = time.perf_counter()
        for call in range(calls):
            scorer.score(matrix[call * size : (call + 1) * size])
        spent = time.perf_counter() - began
        scoring[str(size)] = {
            "rows": calls * size,
            "us_per_row": round(spent / (calls * size) * 1e6, 2),
            "us_per_call": round(spent / calls * 1e6, 1),
        }

    times = np.asarray([epoch_ms(t.timestamp) for t in transactions], dtype=np.int64)
    scores = np.asarray(scorer.probabilities(matrix), dtype=np.float64)
    drift: dict[str, Any] = {}
    for size in (20, 500):
        monitor = DriftMonitor(scorer.version)
        calls = matrix.shape[0] // size
        began = time.perf_counter()
        for call in range(calls):
            part = slice(call * size, (call + 1) * size)
            monitor.observe_scores(times[part], scores[part], matrix[part])
        spent = time.perf_counter() - began
        drift[str(size)] = {
            "rows": calls * size,
            "us_per_row": round(spent / (calls * size) * 1e6, 2),
            "us_per_batch": round(spent / calls * 1e6, 1),
        }
    result: dict[str, Any] = {
        "transactions": len(transactions),
        "features_us_per_tx": round(features_us, 2),
        "scoring": scoring,
        "drift_observe_scores": drift,
    }
    if records:
        from fraudstream.bench.inprocess import pipeline_in_process

        progress("components: the scoring pipeline in-process, two collector schedules")
        result["pipeline"] = pipeline_in_process(registry, model_name, records)
    return result
