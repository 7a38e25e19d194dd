"""The scoring pipeline: raw records of the partitions a worker owns → dead letters, merchant
partials, fraud scores. A plain object with explicit collaborators and no Kafka client, so unit
tests drive it with an in-memory store and sink; `stream_app.app` is the Faust shell around it.

Per owned partition of `transactions`, in offset order, every record is decoded once. A valid
transaction is counted at once in its partition's hourly merchant partials
(`models.merchant_partials`) and queued for scoring; an invalid one becomes a dead letter. Per
owned partition of `labels`, fraud labels with their merchant and transaction time are counted
in that partition's partials. Whenever a partition closes hours, its `FinalHours` go to the
merchant log (every worker reads it) and into this worker's `MerchantHistory` at once.

A queued transaction is scored once the merchant snapshot it needs is final (every input
partition has closed the hours before it). Partitions progress unevenly — a lagging partition
holds the final boundary back — so each partition keeps its own queue: a partition that waits
does not stop the others, whose records advance the boundary; a queue that grows past
`max_queued` asks the shell to pause fetching that partition. Scoring takes what is final from
every queue into one micro-batch: features in order, one model call, one score each, the users'
records written once per batch; every output of a call is delivered before any offset is
acknowledged (at least once): within the call, or with `defer_delivery` by the caller's
`deliver()` before it applies the outcome's acknowledgements.

With `users_write_behind_s`, the users' records are written less often: a call that is not
due keeps its acknowledgements back, and the first call (or `flush`) at least that long after
the oldest held one writes every changed record once and releases them all. A user scored
many times in that span costs one encoding and one changelog record instead of one per call;
the offsets are committed that much later, so a crash replays that much more (scored again
from the state in the table, which the held offsets never went past).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import ValidationError

from models.canary import Canary
from models.fraud_labels import FraudLabel, attribute
from models.merchant_history import MerchantHistory
from models.merchant_partials import FinalHours, PartitionHours, Source, hour_of
from models.merchant_window import MerchantValues, boundary_hour
from models.scoring import Scorer
from models.stages import StageClock
from schemas.events import Label, epoch_ms
from stream_app import dead_letters, merchant_log
from stream_app.batch import Decoded, Incoming, ScoredBatchResult, decode, score_batch
from stream_app.dead_letters import Rejected
from stream_app.user_records import UserRecords, UserStore

log = logging.getLogger("fraudstream.worker.pipeline")


@dataclass(slots=True)  # not frozen: see "Hot value objects", models/stages.py
class Record:
    """One consumed record, as the shell hands it over."""

    offset: int
    key: bytes | None
    value: bytes | None
    received_s: float


class Sink(Protocol):
    """Where outputs go; `deliver` waits for everything sent since the last call."""

    dropped: int

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        on_delivered: Callable[[object], None] | None = None,
        fallback: Callable[[], tuple[bytes | None, bytes]] | None = None,
    ) -> None: ...

    def send_all(self, topic: str, records: Iterable[tuple[bytes | None, bytes, int]]) -> None:
        """`send` for many records to explicit partitions, without fallbacks or callbacks."""

    async def deliver(self) -> int: ...


class Models(Protocol):
    """The scorers in use (swapped between micro-batches by the model follower)."""

    @property
    def champion(self) -> Scorer: ...

    @property
    def shadow(self) -> Scorer | None: ...

    @property
    def canary(self) -> Canary | None: ...


@dataclass(frozen=True)
class PipelineConfig:
    transactions_topic: str
    scores_topic: str
    dlq_topic: str
    merchant_log_topic: str
    labels_topic: str | None = None
    scores_partitions: int = 1
    allowed_lateness_ms: int = 600_000
    max_message_bytes: int = 64 * 1024
    max_future_ms: int | None = 86_400_000
    dedupe_horizon_ms: int = 3_600_000
    batch_max: int = 500
    dlq_limit: int = 1_000_000
    user_cache_size: int = 20_000
    max_queued: int = 4_000
    """Queued transactions of one partition above which its fetching is paused."""
    users_write_behind_s: float = 0.0
    """How long changed users' records may wait to be written (their offsets wait with them):
    0 writes after every micro-batch."""
    users_write_behind_max: int = 10_000
    """Changed users' records above which a call writes them at once (they stay decoded in
    memory until then)."""
    defer_delivery: bool = False
    """False: every call waits for its outputs' delivery before it returns. True: calls only
    send; the caller awaits `deliver()` before acknowledging an outcome's offsets (the worker
    shell does, overlapping the wait with the next fetch: `stream_app.deliveries`)."""


@dataclass
class PipelineStats:
    consumed: int = 0
    labels: int = 0
    scored: int = 0
    late: int = 0
    replayed: int = 0
    repeats: int = 0
    gaps: int = 0
    waits: int = 0
    unattributable: int = 0
    invalid_labels: int = 0
    batches: int = 0
    users_written: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)


@dataclass
class Outcome:
    """What the shell must do after a call: acknowledge, seek, pause, resume."""

    acked: dict[Source, list[int]] = field(default_factory=dict)
    seek: dict[Source, int] = field(default_factory=dict)
    pause: set[Source] = field(default_factory=set)
    resume: set[Source] = field(default_factory=set)
    scored: list[ScoredBatchResult] = field(default_factory=list)
    """Each micro-batch scored during the call."""

    def ack(self, source: Source, offset: int) -> None:
        self.acked.setdefault(source, []).append(offset)


@dataclass
class _Partition:
    source: Source
    hours: PartitionHours
    committed: int
    """Offsets below this were scored before (a restart): they only rebuild the partials."""
    expected: int | None = None
    queue: deque[Decoded] = field(default_factory=deque)
    paused: bool = False


class ScoringPipeline:
    """Scores the transactions of the partitions this worker owns (see the module docstring)."""

    def __init__(
        self,
        config: PipelineConfig,
        models: Models,
        store: UserStore,
        sink: Sink,
        history: MerchantHistory,
        clock: Callable[[], float] = time.monotonic,
        committed: Callable[[Source], int | None] = lambda source: None,
        stages: StageClock | None = None,
        on_state_reset: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.models = models
        self.sink = sink
        self.history = history
        self.clock = clock
        self.committed = committed
        self.stages = stages or StageClock()
        self.users = UserRecords(store, config.user_cache_size, on_state_reset)
        self.stats = PipelineStats()
        self._partitions: dict[Source, _Partition] = {}
        self._held: dict[Source, list[int]] = {}
        """Acknowledgements waiting for the users' records they depend on to be written."""
        self._held_since: float | None = None
        self.scores_partitions = config.scores_partitions
        """Partitions of the scores topic (known once the topic is declared)."""
        history.hold = self._oldest_needed

    def _oldest_needed(self) -> int | None:
        """The oldest boundary a queued transaction waits for (merchant history keeps it)."""
        heads = [boundary_hour(p.queue[0].ts_ms) for p in self._partitions.values() if p.queue]
        return min(heads) if heads else None

    # -- ownership --------------------------------------------------------------------------
    def assign(self, source: Source, final: FinalHours | None, committed: int | None) -> int:
        """Take over `source`. `final`: the last FinalHours published for it (any owner);
        `committed`: its committed offset. Returns the offset to read from."""
        lateness = self.config.allowed_lateness_ms
        start = committed or 0
        if final is None:
            hours = PartitionHours(source, lateness)
            if start > 0:
                log.warning(
                    "%s: no merchant partials published yet; counting from %d", source, start
                )
        else:
            hours = PartitionHours.restore(final, lateness)
            start = min(final.resume_offset, start)  # nothing committed: everything again
        self._partitions[source] = _Partition(source, hours, committed or 0, expected=start)
        return start

    def revoke(self, sources: Iterable[Source]) -> None:
        gone = {s for s in sources if self._partitions.pop(s, None) is not None}
        for source in gone:
            self._held.pop(source, None)  # the next owner reads them again
        self.users.forget({s.partition for s in gone if s.kind == "tx"})

    def owned(self) -> list[Source]:
        return sorted(self._partitions)

    def position(self, source: Source) -> int | None:
        """The next offset this pipeline expects from `source`."""
        state = self._partitions.get(source)
        return None if state is None else state.expected

    def merchant_late(self) -> dict[str, int]:
        """Records behind their partition's closed hours (not counted in merchant snapshots),
        by source kind, over the partitions owned now."""
        late = {"tx": 0, "labels": 0}
        for source, state in self._partitions.items():
            late[source.kind] += state.hours.late
        return late

    def queued(self, source: Source | None = None) -> int:
        if source is not None:
            state = self._partitions.get(source)
            return 0 if state is None else len(state.queue)
        return sum(len(p.queue) for p in self._partitions.values())

    # -- input ------------------------------------------------------------------------------
    async def process(self, batch: Mapping[Source, Sequence[Record]]) -> Outcome:
        """Decode, aggregate and queue new records, then score whatever is final."""
        outcome = Outcome()
        for source, records in batch.items():
            state = self._partitions.get(source)
            if state is None:
                self.stats.repeats += len(records)  # fetched before a rebalance moved it
                continue
            if source.kind == "tx":
                await self._transactions(state, records, outcome)
            else:
                self._labels(state, records, outcome)
        await self._publish_finals()
        await self._score(outcome)
        self._flow(outcome)
        return outcome

    async def on_final(self, final: FinalHours) -> Outcome:
        """Another worker's (or this one's earlier) final hours, read from the merchant log."""
        outcome = Outcome()
        if self.history.apply(final):
            await self._score(outcome)
            self._flow(outcome)
        return outcome

    async def idle(self, sources: Iterable[Source]) -> Outcome:
        """Owned partitions with nothing left to read for a while stop holding the final
        boundary back: they close the hours the most advanced *transactions* partition has
        closed. (Not the labels': labels are days ahead of their transactions in event time,
        and a replay sends them first; closing a quiet transactions partition up to them would
        make its first transactions late.) Before any transaction arrived, nothing closes."""
        target = self.history.newest_closed("tx")
        if target is not None:
            for source in sources:
                state = self._partitions.get(source)
                if state is not None and state.hours.close_before(target):
                    log.debug("%s idle: closed before hour %d", source, target)
        await self._publish_finals()
        outcome = Outcome()
        await self._score(outcome)
        self._flow(outcome)
        return outcome

    def _admit(self, state: _Partition, record: Record, outcome: Outcome) -> bool:
        """Offset contiguity: repeats are skipped, a gap asks for a seek back."""
        expected = state.expected
        if expected is not None and record.offset < expected:
            self.stats.repeats += 1
            return False
        if expected is not None and record.offset > expected:
            if state.source not in outcome.seek:
                self.stats.gaps += 1
                log.warning(
                    "%s: offset gap at %d (expected %d)", state.source, record.offset, expected
                )
                outcome.seek[state.source] = expected
            return False
        state.expected = record.offset + 1
        return True

    async def _transactions(
        self, state: _Partition, records: Sequence[Record], outcome: Outcome
    ) -> None:
        topic, partition = self.config.transactions_topic, state.source.partition
        with self.stages.time("decode"):
            for record in records:
                if state.source in outcome.seek or not self._admit(state, record, outcome):
                    continue
                item = decode(
                    Incoming(
                        topic, partition, record.offset, record.key, record.value, record.received_s
                    ),
                    self.config.max_message_bytes,
                    self.config.max_future_ms,
                )
                scoring = record.offset >= state.committed
                self.stats.consumed += scoring
                if isinstance(item, Rejected):
                    state.hours.skip(record.offset)
                    if scoring:
                        await self._dead_letter(item)
                        self._hold(state.source, record.offset)
                    continue
                state.hours.add(record.offset, item.ts_ms, item.tx.merchant_id)
                if scoring:
                    state.queue.append(item)

    def _labels(self, state: _Partition, records: Sequence[Record], outcome: Outcome) -> None:
        with self.stages.time("decode"):
            for record in records:
                if state.source in outcome.seek or not self._admit(state, record, outcome):
                    continue
                self._hold(state.source, record.offset)
                self.stats.labels += record.offset >= state.committed
                try:
                    label = Label.model_validate_json(record.value or b"")
                except ValidationError:
                    self.stats.invalid_labels += 1
                    state.hours.skip(record.offset)
                    continue
                found = attribute(label)
                if label.labeled_at is None:
                    state.hours.skip(record.offset)
                elif isinstance(found, FraudLabel):
                    key = (found.merchant_id, hour_of(found.tx_ms))
                    state.hours.add(record.offset, found.labeled_ms, key)
                else:
                    state.hours.add(record.offset, epoch_ms(label.labeled_at), None)
                if found == "unattributable" and record.offset >= state.committed:
                    self.stats.unattributable += 1

    async def _dead_letter(self, rejected: Rejected) -> None:
        record = dead_letters.build(rejected, self.config.dlq_limit)
        counts = self.stats.dead_letters
        counts[rejected.reason] = counts.get(rejected.reason, 0) + 1

        def smaller() -> tuple[bytes | None, bytes]:
            fallback = dead_letters.smallest(record)
            return fallback.key, fallback.value

        await self.sink.send(self.config.dlq_topic, record.key, record.value, fallback=smaller)

    async def _publish_finals(self) -> None:
        for state in self._partitions.values():
            final = state.hours.take_final()
            if final is None:
                continue
            self.history.apply(final)
            for key, value in merchant_log.encode(final):
                await self.sink.send(self.config.merchant_log_topic, key, value, partition=0)

    # -- scoring ----------------------------------------------------------------------------
    def _take(self) -> list[Decoded]:
        """The queued transactions whose snapshot is final, in order per partition."""
        final = self.history.final
        taken: list[Decoded] = []
        for state in self._partitions.values():
            queue = state.queue
            while queue and len(taken) < self.config.batch_max:
                if final is None or boundary_hour(queue[0].ts_ms) > final:
                    self.stats.waits += 1
                    break
                taken.append(queue.popleft())
        return taken

    async def _score(self, outcome: Outcome) -> None:
        """Score every batch that is ready, then wait once for all their outputs: offsets are
        acknowledged only after this call returns, so the micro-batches of one fetch need not
        each wait for the broker (one round trip per fetch instead of one per 500 records).
        With `defer_delivery` the caller waits instead (`deliver`)."""
        while True:
            taken = self._take()
            if taken:
                await self._score_batch(taken, outcome)
                await self._settle(outcome)  # (a long call writes as it goes)
            if not taken or len(taken) < self.config.batch_max:
                break
        await self._settle(outcome)
        if not self.config.defer_delivery:
            with self.stages.time("produce"):
                await self.sink.deliver()

    async def flush(self, due_only: bool = False) -> Outcome:
        """Write the changed users' records now and release every held acknowledgement (before
        a rebalance or stop commits); `due_only`: only if the oldest has waited long enough
        (a timer's call, for a partition that went quiet)."""
        outcome = Outcome()
        if await self._settle(outcome, force=not due_only) and not self.config.defer_delivery:
            with self.stages.time("produce"):
                await self.sink.deliver()
        return outcome

    def held(self) -> int:
        """Acknowledgements waiting for users' records to be written."""
        return sum(len(offsets) for offsets in self._held.values())

    async def _settle(self, outcome: Outcome, force: bool = False) -> bool:
        """When due (see the module docstring), write the changed users' records and release
        every held acknowledgement into `outcome` (True)."""
        held = self._held
        users = self.users
        if not held and not users.touched():
            return False
        now = self.clock()
        if self._held_since is None:
            self._held_since = now
        due = (
            force
            or now - self._held_since >= self.config.users_write_behind_s
            or users.touched() >= self.config.users_write_behind_max
        )
        if not due:
            return False
        self.stats.users_written += users.touched()
        with self.stages.time("produce"):
            await users.write(self._committed_partition)
        for source, offsets in held.items():
            outcome.acked.setdefault(source, []).extend(offsets)
        self._held, self._held_since = {}, None
        return True

    def _hold(self, source: Source, offset: int) -> None:
        """Acknowledge `offset` once the users' records are written (`_settle`)."""
        self._held.setdefault(source, []).append(offset)

    async def deliver(self) -> int:
        """Wait for every output sent so far (`defer_delivery`: before acknowledging an
        outcome). Timed as the stage "deliver": waiting for the broker, which the shell
        overlaps with scoring the next fetch."""
        with self.stages.time("deliver"):
            return await self.sink.deliver()

    async def _score_batch(self, taken: list[Decoded], outcome: Outcome) -> None:
        models = self.models
        # Swaps happen between batches: one batch is scored with one set of models.
        champion, shadow, canary = models.champion, models.shadow, models.canary
        values = self.history.memo()

        def merchant_of(boundary_ms: int, merchant_id: str) -> MerchantValues:
            return values(boundary_ms // 3_600_000, merchant_id)

        partition_of = {item.tx.user_id: item.message.partition for item in taken}
        users = self.users
        result = score_batch(
            taken,
            lambda user: users.get(user, partition_of[user]),
            merchant_of,
            champion,
            self.config.allowed_lateness_ms,
            self.clock,
            shadow,
            self.config.dedupe_horizon_ms,
            stages=self.stages,
            canary=canary,
        )
        for rejected in result.rejected:
            await self._dead_letter(rejected)
        n = self.scores_partitions
        with self.stages.time("produce"):
            self.sink.send_all(
                self.config.scores_topic,
                [(s.user_id.encode(), s.json, partition_of[s.user_id] % n) for s in result.scores],
            )
        users.touch(result.touched_users)
        acked: dict[int, list[int]] = {}
        for item in taken:
            acked.setdefault(item.message.partition, []).append(item.message.offset)
        for partition, offsets in acked.items():
            self._held.setdefault(Source("tx", partition), []).extend(offsets)
        self.stats.scored += len(result.scores)
        self.stats.batches += 1
        self.stats.late += result.late
        self.stats.replayed += result.replayed
        outcome.scored.append(result)

    def _committed_partition(self, partition: int) -> int | None:
        return self.committed(Source("tx", partition))

    def _flow(self, outcome: Outcome) -> None:
        limit = self.config.max_queued
        for source, state in self._partitions.items():
            if not state.paused and len(state.queue) > limit:
                state.paused = True
                outcome.pause.add(source)
            elif state.paused and len(state.queue) <= limit // 2:
                state.paused = False
                outcome.resume.add(source)
