"""Acknowledge a fetch's offsets once its outputs are delivered, while the next fetch is scored.

The pipeline queues a fetch's outputs (scores, users' records, merchant finals, dead letters)
with librdkafka; its offsets may be acknowledged only once the broker has them (at least once).
Waiting for that before reading the next fetch left the worker idle: a delivery to the
embedded broker is a round trip (~2 ms) once per fetch, and at 5,000 tx/s live a fetch holds a
few dozen transactions (the "produce" stage, which included the wait, was 80 µs per transaction
there against 46 in a backlog drain).

`Deliveries` keeps one delivery in flight and lets the shell score the next fetch meanwhile.
An outcome given to `submit` is handed to `on_delivered` (which acknowledges its offsets) only
after a `deliver()` that *began after the submit* has returned: `deliver()` waits for everything
sent before it began, and the outcome's outputs were all sent before it was submitted. Outcomes
are handed on in the order they were submitted. At most `max_waiting` outcomes wait behind the
delivery in flight; `submit` waits for room, so what is sent but not yet delivered stays within
a couple of fetches. A failed delivery acknowledges nothing more: `on_failure` gets the error
(the worker stops at once, `faust_tuning.exit_on_delivery_failure`), and every later `submit`
or `drain` raises it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Deliveries(Generic[T]):
    """One `deliver()` in flight; outcomes handed on once a delivery begun after them returns."""

    def __init__(
        self,
        deliver: Callable[[], Awaitable[object]],
        on_delivered: Callable[[T], None],
        on_failure: Callable[[BaseException], None],
        max_waiting: int = 1,
    ) -> None:
        if max_waiting < 1:
            raise ValueError("max_waiting must be at least 1")
        self._deliver = deliver
        self._on_delivered = on_delivered
        self._on_failure = on_failure
        self._max_waiting = max_waiting
        self._waiting: list[T] = []
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()
        self._error: BaseException | None = None
        self.rounds = 0
        """Deliveries completed (each may cover several outcomes)."""

    @property
    def in_flight(self) -> bool:
        return self._task is not None

    def waiting(self) -> int:
        """Outcomes submitted and not yet handed on."""
        return len(self._waiting)

    async def submit(self, outcome: T) -> None:
        """`outcome`'s outputs have all been sent: hand it on once they are delivered."""
        async with self._progress:
            await self._progress.wait_for(self._room)
            self._raise()
            self._waiting.append(outcome)
            if self._task is None:
                self._task = asyncio.create_task(self._run(), name="fraudstream-deliveries")

    async def drain(self) -> None:
        """Wait until every outcome submitted so far has been handed on (or raise the error
        that stopped the deliveries)."""
        async with self._progress:
            await self._progress.wait_for(lambda: self._task is None or self._error is not None)
            self._raise()

    def _room(self) -> bool:
        return (
            self._error is not None or self._task is None or len(self._waiting) < self._max_waiting
        )

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    async def _run(self) -> None:
        try:
            while self._waiting:
                taken, self._waiting = self._waiting, []
                async with self._progress:
                    self._progress.notify_all()  # room for the next submit
                await self._deliver()
                self.rounds += 1
                for outcome in taken:
                    self._on_delivered(outcome)
        except Exception as exc:
            self._error = exc
            self._on_failure(exc)
        finally:
            self._task = None
            async with self._progress:
                self._progress.notify_all()
