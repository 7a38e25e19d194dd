"""`Deliveries`: an outcome is acknowledged only once a delivery begun after its outputs were
sent has returned, in submission order, with at most one fetch waiting behind the delivery in
flight; a failed delivery acknowledges nothing more."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from stream_app.deliveries import Deliveries


class Broker:
    """A sink's `deliver()` that the test releases: it covers what was sent before it began."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.delivered: set[int] = set()
        self.calls: list[asyncio.Event] = []
        self.fail: Exception | None = None

    async def deliver(self) -> int:
        covered = list(self.sent)
        gate = asyncio.Event()
        self.calls.append(gate)
        await gate.wait()
        if self.fail is not None:
            raise self.fail
        self.delivered.update(covered)
        return len(covered)


class World:
    def __init__(self, max_waiting: int = 1) -> None:
        self.broker = Broker()
        self.acked: list[int] = []
        self.failures: list[BaseException] = []
        self.early: list[int] = []
        self.deliveries: Deliveries[int] = Deliveries(
            self.broker.deliver, self._ack, self.failures.append, max_waiting
        )

    def _ack(self, outcome: int) -> None:
        if outcome not in self.broker.delivered:
            self.early.append(outcome)  # acknowledged before its output reached the broker
        self.acked.append(outcome)

    async def fetch(self, outcome: int) -> None:
        """A fetch scored: its output sent, then its outcome submitted."""
        self.broker.sent.append(outcome)
        await self.deliveries.submit(outcome)

    async def release(self, call: int) -> None:
        await until(lambda: len(self.broker.calls) > call, f"delivery {call} to begin")
        self.broker.calls[call].set()
        for _ in range(5):
            await asyncio.sleep(0)  # let the delivering task run its acknowledgements


async def until(done: Callable[[], bool], what: str, polls: int = 200) -> None:
    for _ in range(polls):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"timed out waiting for {what}")


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=10))


def test_an_outcome_is_acknowledged_only_after_a_delivery_that_began_after_it() -> None:
    async def scenario() -> None:
        world = World()
        await world.fetch(1)
        await until(lambda: len(world.broker.calls) == 1, "the first delivery")
        await world.fetch(2)  # scored while the first delivery is in flight
        assert world.acked == []
        await world.release(0)
        assert world.acked == [1], "the first delivery covers only what was sent before it"
        await world.release(1)
        assert world.acked == [1, 2]
        assert world.early == []
        assert world.deliveries.rounds == 2 and not world.deliveries.in_flight

    run(scenario)


def test_outcomes_waiting_together_share_one_delivery_and_keep_their_order() -> None:
    async def scenario() -> None:
        world = World(max_waiting=3)
        await world.fetch(1)
        await until(lambda: len(world.broker.calls) == 1, "the first delivery")
        for outcome in (2, 3, 4):
            await world.fetch(outcome)
        await world.release(0)
        await world.release(1)
        assert world.acked == [1, 2, 3, 4]
        assert len(world.broker.calls) == 2
        assert world.early == []

    run(scenario)


def test_submit_waits_while_a_fetch_already_waits_behind_the_delivery_in_flight() -> None:
    async def scenario() -> None:
        world = World(max_waiting=1)
        await world.fetch(1)
        await until(lambda: len(world.broker.calls) == 1, "the first delivery")
        await world.fetch(2)
        third = asyncio.create_task(world.fetch(3))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not third.done(), "a third fetch went ahead of two undelivered ones"
        assert world.deliveries.waiting() == 1
        await world.release(0)
        await until(third.done, "room for the third fetch")
        await world.release(1)
        await world.release(2)
        await world.deliveries.drain()
        assert world.acked == [1, 2, 3]
        assert world.early == []

    run(scenario)


def test_drain_returns_once_everything_submitted_is_acknowledged() -> None:
    async def scenario() -> None:
        world = World()
        await world.fetch(1)
        await world.fetch(2)
        drained = asyncio.create_task(world.deliveries.drain())
        await world.release(0)
        assert not drained.done()
        await world.release(1)
        await until(drained.done, "drain")
        assert world.acked == [1, 2]

    run(scenario)


def test_a_failed_delivery_acknowledges_nothing_more_and_is_raised_again() -> None:
    async def scenario() -> None:
        world = World()
        await world.fetch(1)
        await world.fetch(2)
        world.broker.fail = RuntimeError("broker said no")
        await world.release(0)
        assert world.acked == []
        assert [str(e) for e in world.failures] == ["broker said no"]
        assert not world.deliveries.in_flight, "outcome 2 must not be delivered after a failure"
        with pytest.raises(RuntimeError, match="broker said no"):
            await world.fetch(3)
        with pytest.raises(RuntimeError, match="broker said no"):
            await world.deliveries.drain()

    run(scenario)
