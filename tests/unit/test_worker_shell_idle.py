"""The worker shell's idle partitions, without a broker: a partition read to its confirmed end
and silent for `idle_partition_s` stops holding the others back, and traffic resuming after a
pause gives the others a fresh grace period (or they would be closed up to the first speaker's
hours and their own first records would count as late)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from models.merchant_partials import Source
from models.stages import StageClock
from stream_app import worker_shell
from stream_app.metrics import WorkerMetrics
from stream_app.pipeline import Outcome, PipelineStats
from stream_app.worker_shell import WorkerShell

TOPIC = "transactions"
IDLE_S = 10.0
A, B = Source("tx", 0), Source("tx", 1)


class FakePipeline:
    """What the shell asks of `ScoringPipeline` here; `idle` calls are recorded."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = list(sources)
        self.positions = dict.fromkeys(sources, 100)
        self.idled: list[set[Source]] = []
        self.stats = PipelineStats()
        self.stages = StageClock()
        self.config = SimpleNamespace(defer_delivery=False)

    def owned(self) -> list[Source]:
        return self.sources

    def position(self, source: Source) -> int | None:
        return self.positions.get(source)

    async def idle(self, sources: Sequence[Source]) -> Outcome:
        self.idled.append(set(sources))
        return Outcome()

    async def process(self, batch: Mapping[Source, Sequence[Any]]) -> Outcome:
        for source, records in batch.items():
            self.positions[source] += len(records)
        return Outcome()

    def merchant_late(self) -> dict[str, int]:
        return {}


class FakeConsumer:
    """High watermarks as the fetches reported them (the end, unless told otherwise)."""

    def __init__(self, pipeline: FakePipeline) -> None:
        self.pipeline = pipeline

    def highwater(self, tp: TP) -> int:
        return self.pipeline.positions[Source("tx", tp.partition)]

    def pause_partitions(self, tps: Sequence[TP]) -> None: ...

    def resume_partitions(self, tps: Sequence[TP]) -> None: ...


class FakeProbe:
    """End offsets confirmed by a fetch: the positions, plus whatever `unread` adds."""

    def __init__(self, pipeline: FakePipeline) -> None:
        self.pipeline = pipeline
        self.unread: dict[int, int] = {}

    async def ends(self, candidates: Mapping[TP, int]) -> dict[TP, int]:
        return {tp: pos + self.unread.get(tp.partition, 0) for tp, pos in candidates.items()}


class Harness:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 0.0
        monkeypatch.setattr(worker_shell, "time", SimpleNamespace(monotonic=lambda: self.now))
        self.pipeline = FakePipeline([A, B])
        app = SimpleNamespace(consumer=FakeConsumer(self.pipeline), consumer_generation_id=1)
        self.shell = WorkerShell(app, self.pipeline, {TOPIC: "tx"}, WorkerMetrics(), IDLE_S)  # type: ignore[arg-type]
        self.probe = FakeProbe(self.pipeline)
        self.shell.probe = self.probe  # type: ignore[assignment]
        self.shell.started.set()

    def at(self, now: float) -> set[Source]:
        """A tick of the idle timer at `now`: the partitions it declared idle."""
        self.now = now
        calls = len(self.pipeline.idled)
        asyncio.run(self.shell.tick_idle())
        return self.pipeline.idled[-1] if len(self.pipeline.idled) > calls else set()

    def records(self, now: float, source: Source, count: int = 5) -> None:
        asyncio.run(self.arrive(now, source, count))

    async def arrive(self, now: float, source: Source, count: int = 5) -> None:
        """`count` records for `source` at `now`, handed to the shell on the running loop."""
        self.now = now
        offset = self.pipeline.positions[source]
        messages = [SimpleNamespace(offset=offset + i, key=b"k", value=b"v") for i in range(count)]
        await self.shell.on_records({TP(TOPIC, source.partition): messages}, 1)


def test_a_partition_is_idle_once_caught_up_for_the_period_and_its_end_is_confirmed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Harness(monkeypatch)
    assert h.at(0.0) == set()  # both caught up from now
    assert h.at(IDLE_S - 0.1) == set()
    h.probe.unread = {1: 3}  # B's fetched watermark is stale: three records wait
    assert h.at(IDLE_S) == {A}
    h.probe.unread = {}
    assert h.at(IDLE_S + 1) == {A}  # B's period starts again from the refused probe
    assert h.at(2 * IDLE_S + 1) == {A, B}


def test_every_partition_idle_then_one_speaks_the_others_get_a_fresh_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Harness(monkeypatch)
    h.at(0.0)
    assert h.at(IDLE_S) == {A, B}
    h.records(20.0, A)  # a replay resumes on A after a pause
    assert h.at(21.0) == set()  # A is reading again; B is not idle any more either
    assert h.at(20.0 + IDLE_S - 0.1) == set()
    assert h.at(20.0 + IDLE_S) == {B}  # A caught up again at 21
    assert h.at(21.0 + IDLE_S) == {A, B}


def test_one_idle_partition_resuming_gives_a_not_yet_idle_one_a_fresh_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The learning-loop failure: A idle, B caught up but not for the whole period yet, then A
    speaks. Without the fresh period B went idle at its old time, closed up to A's hours."""
    h = Harness(monkeypatch)
    h.at(0.0)  # A caught up from 0
    h.records(5.0, B)
    h.at(5.0)  # B caught up from 5
    assert h.at(IDLE_S) == {A}
    h.records(11.0, A)  # A resumes while B is 6 s into its period
    assert B not in h.at(5.0 + IDLE_S), "B went idle at its old time though A had resumed"
    assert B in h.at(11.0 + IDLE_S)


def test_records_that_come_while_the_probe_is_out_overrule_its_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The learning-loop failure on a fresh clone, third time: A and B idle through a pause,
    the idle timer's probe out (a fetch round trip), and meanwhile a replay resumes on A. The
    probe's verdict predates A's records and B's fresh period; acted on, it closed both up to
    the days A had just raced through, and B's records then counted as late."""
    h = Harness(monkeypatch)
    h.at(0.0)
    assert h.at(IDLE_S) == {A, B}
    probed = h.probe.ends

    async def resume_during_probe(candidates: Mapping[TP, int]) -> dict[TP, int]:
        ends = await probed(candidates)  # the fetch answered: nothing left to read ...
        await h.arrive(20.0, A)  # ... and before the verdict is acted on, A's replay arrives
        return ends

    h.probe.ends = resume_during_probe  # type: ignore[method-assign]
    assert h.at(19.0) == set(), "a verdict older than the records was acted on"
    assert h.shell.idle_sources() == set()
    h.probe.ends = probed  # type: ignore[method-assign]
    assert h.at(20.0 + IDLE_S - 0.1) == set()  # B's fresh period runs from A's records
    assert B in h.at(20.0 + IDLE_S)
