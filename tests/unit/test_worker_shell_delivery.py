"""The worker shell with deferred delivery, without a broker: a fetch's offsets are
acknowledged into faust's bookkeeping only once the pipeline's `deliver()` has returned, while
the next fetch is already being scored; a rebalance (`quiesce`, faust's `wait_empty` before it
commits) waits for every acknowledgement."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from models.merchant_partials import Source
from models.stages import StageClock
from stream_app import faust_tuning
from stream_app.metrics import WorkerMetrics
from stream_app.pipeline import Outcome, PipelineStats
from stream_app.worker_shell import WorkerShell

TOPIC = "transactions"
A = Source("tx", 0)


class GatedPipeline:
    """`process` acknowledges what it was given (outputs "sent"); `deliver` waits for the test
    and then counts everything sent before it began as delivered."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(defer_delivery=True)
        self.stats = PipelineStats()
        self.stages = StageClock()
        self.sent: list[int] = []
        self.delivered: set[int] = set()
        self.gates: list[asyncio.Event] = []
        self.processed = 0

    def owned(self) -> list[Source]:
        return [A]

    def merchant_late(self) -> dict[str, int]:
        return {}

    async def process(self, batch: Mapping[Source, Sequence[Any]]) -> Outcome:
        outcome = Outcome()
        for source, records in batch.items():
            for record in records:
                self.sent.append(record.offset)
                outcome.ack(source, record.offset)
        self.processed += 1
        return outcome

    async def flush(self, due_only: bool = False) -> Outcome:
        return Outcome()  # acknowledges everything in `process`

    def held(self) -> int:
        return 0

    async def deliver(self) -> int:
        covered = list(self.sent)
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        self.delivered.update(covered)
        return len(covered)


class Harness:
    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, pipeline: GatedPipeline | None = None
    ) -> None:
        self.pipeline = pipeline or GatedPipeline()
        self.acked: list[int] = []
        self.early: list[int] = []
        monkeypatch.setattr(faust_tuning, "acknowledge", self._acknowledge)
        app = SimpleNamespace(consumer=SimpleNamespace(), consumer_generation_id=1)
        self.shell = WorkerShell(app, self.pipeline, {TOPIC: "tx"}, WorkerMetrics(), 10.0)  # type: ignore[arg-type]
        self.shell.started.set()

    def _acknowledge(self, consumer: Any, tp: TP, offsets: Sequence[int]) -> None:
        self.early.extend(o for o in offsets if o not in self.pipeline.delivered)
        self.acked.extend(offsets)

    async def fetch(self, first: int, count: int = 3) -> None:
        messages = [SimpleNamespace(offset=first + i, key=b"k", value=b"v") for i in range(count)]
        await self.shell.on_records({TP(TOPIC, 0): messages}, 1)

    async def release(self, call: int) -> None:
        for _ in range(200):
            if len(self.pipeline.gates) > call:
                break
            await asyncio.sleep(0)
        else:
            raise AssertionError(f"delivery {call} never began")
        self.pipeline.gates[call].set()
        for _ in range(5):
            await asyncio.sleep(0)


def test_offsets_are_acknowledged_after_delivery_while_the_next_fetch_is_scored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        h = Harness(monkeypatch)
        await h.fetch(0)
        await h.fetch(3)  # scored while the first fetch's outputs are still in flight
        assert h.pipeline.processed == 2
        assert h.acked == [], "acknowledged before the broker had the outputs"
        await h.release(0)
        assert h.acked == [0, 1, 2]
        quiesced = asyncio.create_task(h.shell.quiesce())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not quiesced.done(), "a rebalance must wait for the outstanding acknowledgements"
        await h.release(1)
        await asyncio.wait_for(quiesced, 5)
        assert h.acked == [0, 1, 2, 3, 4, 5]
        assert h.early == []

    asyncio.run(asyncio.wait_for(scenario(), 10))


class HoldingPipeline(GatedPipeline):
    """Holds every acknowledgement back until `flush` (the users' records written behind)."""

    def __init__(self) -> None:
        super().__init__()
        self.holding: list[int] = []
        self.due = False

    async def process(self, batch: Mapping[Source, Sequence[Any]]) -> Outcome:
        outcome = await super().process(batch)
        self.holding += outcome.acked.pop(A, [])
        return outcome

    async def flush(self, due_only: bool = False) -> Outcome:
        outcome = Outcome()
        if self.holding and (self.due or not due_only):
            outcome.acked[A], self.holding = self.holding, []
        return outcome

    def held(self) -> int:
        return len(self.holding)


def test_held_acknowledgements_are_released_when_due_and_before_a_rebalance_commits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        pipeline = HoldingPipeline()
        h = Harness(monkeypatch, pipeline)
        await h.fetch(0)
        await h.release(0)
        await h.shell.tick_flush()  # not due yet
        assert h.acked == [] and pipeline.held() == 3
        pipeline.due = True
        await h.shell.tick_flush()
        await h.release(1)
        assert h.acked == [0, 1, 2] and pipeline.held() == 0

        pipeline.due = False
        await h.fetch(3)
        await h.release(2)
        quiesced = asyncio.create_task(h.shell.quiesce())
        await h.release(3)  # the delivery of what the rebalance released
        await asyncio.wait_for(quiesced, 5)
        assert h.acked == [0, 1, 2, 3, 4, 5], "a rebalance committed without the held offsets"
        assert h.early == []

    asyncio.run(asyncio.wait_for(scenario(), 10))
