"""The bench's in-process pipeline component: every record scored, both collector schedules."""

from __future__ import annotations

import gc
import json

from fraudstream.bench.inprocess import pipeline_in_process
from tests.conftest import TrainedRegistry


def test_every_record_is_scored_under_both_schedules_and_the_collector_is_restored(
    trained_registry: TrainedRegistry,
) -> None:
    lines = trained_registry.data.transactions_file.read_bytes().splitlines()[:3_000]
    values = [(json.loads(line)["user_id"].encode(), line) for line in lines]
    before = gc.get_threshold(), gc.get_freeze_count()
    result = pipeline_in_process(trained_registry.root, trained_registry.model_name, values)
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
    assert result["transactions"] == len(values)
    for schedule in ("default", "worker"):
        run = result[schedule]
        assert run["scored"] == len(values), schedule
        assert run["us_per_tx"] > 0
        assert set(run["stages_us_per_tx"]) >= {"decode", "features", "produce"}
