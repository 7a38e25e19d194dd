"""One micro-batch of raw Kafka messages → dead letters and fraud scores. No Kafka, no Faust.

The Faust agent hands raw messages to `decode_batch`, waits until the merchant snapshots the
valid ones need are final, then calls `score_batch` with the users' records. Everything here is
the same code `fraudstream score` runs offline (`UserWindows.observe`, `assemble`, `Scorer`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from models.canary import Canary
from models.features import amount_cents, assemble
from models.merchant_window import MerchantValues, snapshot_boundary
from models.score_records import ScoredRecord, Unscorable
from models.scoring import Scorer, score_rows
from models.seen_ids import DEFAULT_DEDUPE_HORIZON_MS
from models.stages import NO_STAGES, StageClock
from schemas.events import DeadLetterReason, Transaction, epoch_ms
from schemas.jsonl import describe_validation_error
from stream_app.dead_letters import Rejected
from stream_app.user_record import UserRecord


@dataclass(slots=True)  # not frozen: see "Hot value objects", models/stages.py
class Incoming:
    """A raw message as consumed."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    received_s: float
    """time.monotonic() when the worker received it (for latency)."""


@dataclass(slots=True)  # not frozen: see "Hot value objects", models/stages.py
class Decoded:
    message: Incoming
    tx: Transaction
    ts_ms: int
    boundary_ms: int


def rejected(message: Incoming, reason: DeadLetterReason, error: str) -> Rejected:
    return Rejected(
        message.topic, message.partition, message.offset, message.key, message.value, reason, error
    )


def decode(
    message: Incoming, max_bytes: int, max_future_ms: int | None = None
) -> Decoded | Rejected:
    """Validate one message; anything unusable is rejected with its reason (a dead letter).

    `max_future_ms`: an event time further ahead of this machine's clock is refused. A producer
    (buggy or malicious) could otherwise push the merchant watermark years ahead, after which
    every honest transaction would arrive "late".
    """
    value = message.value
    if value is None:
        return rejected(message, "invalid_json", "empty message (no value)")
    if len(value) > max_bytes:
        return rejected(
            message, "oversized", f"message is {len(value)} bytes; the limit is {max_bytes}"
        )
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return rejected(message, "not_utf8", f"not UTF-8 at byte {exc.start}")
    try:
        tx = Transaction.model_validate_json(value)
    except ValidationError as exc:
        is_json_error = any(e["type"] == "json_invalid" for e in exc.errors())
        reason: DeadLetterReason = "invalid_json" if is_json_error else "invalid_event"
        return rejected(message, reason, describe_validation_error(exc))
    ts = epoch_ms(tx.timestamp)
    if max_future_ms is not None and ts > time.time() * 1000 + max_future_ms:
        return rejected(
            message,
            "invalid_event",
            f"timestamp: {tx.timestamp.isoformat()} is more than {max_future_ms // 1000} s "
            "ahead of the worker's clock",
        )
    return Decoded(message, tx, ts, snapshot_boundary(ts))


def decode_batch(
    messages: Sequence[Incoming], max_bytes: int, max_future_ms: int | None = None
) -> tuple[list[Decoded], list[Rejected]]:
    valid: list[Decoded] = []
    dead: list[Rejected] = []
    for message in messages:
        result = decode(message, max_bytes, max_future_ms)
        (valid if isinstance(result, Decoded) else dead).append(result)  # type: ignore[arg-type]
    return valid, dead


@dataclass(frozen=True)
class ScoredBatchResult:
    scores: list[ScoredRecord]
    touched_users: set[str]
    late: int
    replayed: int
    rows: list[list[float] | tuple[float, ...]] = field(default_factory=list)
    event_time_ms: list[int] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    """Duplicates and unscorable transactions: dead letters, not scores."""
    received_s: list[float] = field(default_factory=list)
    """When each scored record arrived (aligned with `scores`)."""


def score_batch(
    valid: Sequence[Decoded],
    record_of: Callable[[str], UserRecord],
    merchant_of: Callable[[int, str], MerchantValues],
    scorer: Scorer,
    allowed_lateness_ms: int,
    clock: Callable[[], float],
    shadow: Scorer | None = None,
    dedupe_horizon_ms: int = DEFAULT_DEDUPE_HORIZON_MS,
    stages: StageClock = NO_STAGES,
    canary: Canary | None = None,
) -> ScoredBatchResult:
    """Features (state updated in order), one model call for the batch, one FraudScore each.

    A redelivered record (same offset, still in the user's journal) gets its journalled row back;
    a transaction id the user's state already applied under another offset is rejected as a
    `duplicate`; a row whose score cannot be built is rejected as `unscorable`.
    """
    with stages.time("features"):
        rows, late_flags, kept, rejects, touched, replayed = _features(
            valid, record_of, merchant_of, allowed_lateness_ms, dedupe_horizon_ms
        )
    if not rows:
        return ScoredBatchResult([], touched, 0, replayed, rejected=rejects)
    results = score_rows(
        scorer,
        [item.tx for item in kept],
        rows,
        late_flags,
        [item.message.received_s for item in kept],
        clock,
        shadow,
        stages,
        canary,
    )
    scores: list[ScoredRecord] = []
    scored_rows: _Rows = []
    times: list[int] = []
    received: list[float] = []
    late = 0
    for item, features, too_late, result in zip(kept, rows, late_flags, results, strict=True):
        if isinstance(result, Unscorable):
            rejects.append(rejected(item.message, "unscorable", result.error))
            continue
        scores.append(result)
        scored_rows.append(features)
        times.append(item.ts_ms)
        received.append(item.message.received_s)
        late += too_late
    return ScoredBatchResult(scores, touched, late, replayed, scored_rows, times, rejects, received)


_Rows = list[list[float] | tuple[float, ...]]


def _features(
    valid: Sequence[Decoded],
    record_of: Callable[[str], UserRecord],
    merchant_of: Callable[[int, str], MerchantValues],
    allowed_lateness_ms: int,
    dedupe_horizon_ms: int,
) -> tuple[_Rows, list[bool], list[Decoded], list[Rejected], set[str], int]:
    """Rows in order (the users' state updated as it goes), and what is not scored."""
    rows: _Rows = []
    late_flags: list[bool] = []
    kept: list[Decoded] = []
    rejects: list[Rejected] = []
    touched: set[str] = set()
    replayed = 0
    for item in valid:
        tx, offset = item.tx, item.message.offset
        record = record_of(tx.user_id)
        earlier = record.replayed(offset)
        if earlier is not None:
            # Redelivered after a crash: the state already holds it; give the same answer.
            rows.append(earlier.row)
            late_flags.append(earlier.late)
            kept.append(item)
            replayed += 1
            continue
        first = record.seen.first_offset(tx.transaction_id)
        if first is not None and first != offset:
            rejects.append(_duplicate(item, first))
            continue
        user = record.windows.observe(
            item.ts_ms, amount_cents(tx.amount), tx.merchant_id, allowed_lateness_ms
        )
        row = assemble(tx, user, merchant_of(item.boundary_ms, tx.merchant_id))
        record.remember(offset, row, user.too_late)
        newest = record.windows.last_ts if record.windows.last_ts is not None else item.ts_ms
        record.seen.add(tx.transaction_id, item.ts_ms, offset, newest, dedupe_horizon_ms)
        touched.add(tx.user_id)
        rows.append(row)
        late_flags.append(user.too_late)
        kept.append(item)
    return rows, late_flags, kept, rejects, touched, replayed


def _duplicate(item: Decoded, first_offset: int) -> Rejected:
    return rejected(
        item.message,
        "duplicate",
        f"transaction_id {item.tx.transaction_id} was already applied for user "
        f"{item.tx.user_id} (partition {item.message.partition}, offset {first_offset}): "
        "not counted or scored again",
    )
