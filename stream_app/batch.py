"""One micro-batch of raw Kafka messages → dead letters and fraud scores. No Kafka, no Faust.

The Faust agent hands raw messages to `decode_batch`, waits until the merchant snapshots the
valid ones need are final, then calls `score_batch` with the users' records. Everything here is
the same code `fraudstream score` runs offline (`UserWindows.observe`, `assemble`, `Scorer`).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from models.features import amount_cents, assemble
from models.merchant_window import MerchantValues, snapshot_boundary
from models.scoring import Scorer, score_rows
from schemas.events import DeadLetter, FraudScore, Transaction, epoch_ms
from schemas.jsonl import describe_validation_error
from stream_app.user_record import UserRecord

MAX_ERROR_CHARS = 4000


@dataclass(frozen=True, slots=True)
class Incoming:
    """A raw message as consumed."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    received_s: float
    """time.monotonic() when the worker received it (for latency)."""


@dataclass(frozen=True, slots=True)
class Decoded:
    message: Incoming
    tx: Transaction
    ts_ms: int
    boundary_ms: int


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def dead_letter(message: Incoming, reason: str, error: str) -> DeadLetter:
    return DeadLetter(
        reason=reason,  # type: ignore[arg-type]  # one of the Literal reasons, by construction
        error=error[:MAX_ERROR_CHARS],
        original_key=_b64(message.key),
        original_value=_b64(message.value) or "",
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        received_at=datetime.now(UTC),
    )


def decode(
    message: Incoming, max_bytes: int, max_future_ms: int | None = None
) -> Decoded | DeadLetter:
    """Validate one message; anything unusable becomes a dead letter with its reason.

    `max_future_ms`: an event time further ahead of this machine's clock is refused. A producer
    (buggy or malicious) could otherwise push the merchant watermark years ahead, after which
    every honest transaction would arrive "late".
    """
    value = message.value
    if value is None:
        return dead_letter(message, "invalid_json", "empty message (no value)")
    if len(value) > max_bytes:
        return dead_letter(
            message, "oversized", f"message is {len(value)} bytes; the limit is {max_bytes}"
        )
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return dead_letter(message, "not_utf8", f"not UTF-8 at byte {exc.start}")
    try:
        tx = Transaction.model_validate_json(value)
    except ValidationError as exc:
        is_json_error = any(e["type"] == "json_invalid" for e in exc.errors())
        reason = "invalid_json" if is_json_error else "invalid_event"
        return dead_letter(message, reason, describe_validation_error(exc))
    ts = epoch_ms(tx.timestamp)
    if max_future_ms is not None and ts > time.time() * 1000 + max_future_ms:
        return dead_letter(
            message,
            "invalid_event",
            f"timestamp: {tx.timestamp.isoformat()} is more than {max_future_ms // 1000} s "
            "ahead of the worker's clock",
        )
    return Decoded(message, tx, ts, snapshot_boundary(ts))


def decode_batch(
    messages: Sequence[Incoming], max_bytes: int, max_future_ms: int | None = None
) -> tuple[list[Decoded], list[DeadLetter]]:
    valid: list[Decoded] = []
    dead: list[DeadLetter] = []
    for message in messages:
        result = decode(message, max_bytes, max_future_ms)
        (valid if isinstance(result, Decoded) else dead).append(result)  # type: ignore[arg-type]
    return valid, dead


@dataclass(frozen=True)
class ScoredBatchResult:
    scores: list[FraudScore]
    touched_users: set[str]
    late: int
    replayed: int
    rows: list[list[float] | tuple[float, ...]] = field(default_factory=list)
    event_time_ms: list[int] = field(default_factory=list)


def score_batch(
    valid: Sequence[Decoded],
    record_of: Callable[[str], UserRecord],
    merchant_of: Callable[[int, str], MerchantValues],
    scorer: Scorer,
    allowed_lateness_ms: int,
    clock: Callable[[], float],
    shadow: Scorer | None = None,
) -> ScoredBatchResult:
    """Features (state updated in order), one model call for the batch, one FraudScore each."""
    rows: list[list[float] | tuple[float, ...]] = []
    late_flags: list[bool] = []
    touched: set[str] = set()
    replayed = 0
    for item in valid:
        tx = item.tx
        record = record_of(tx.user_id)
        earlier = record.replayed(item.message.offset)
        if earlier is not None:
            # Redelivered after a crash: the state already holds it; give the same answer.
            rows.append(earlier.row)
            late_flags.append(earlier.late)
            replayed += 1
            continue
        user = record.windows.observe(
            item.ts_ms, amount_cents(tx.amount), tx.merchant_id, allowed_lateness_ms
        )
        row = assemble(tx, user, merchant_of(item.boundary_ms, tx.merchant_id))
        record.remember(item.message.offset, row, user.too_late)
        touched.add(tx.user_id)
        rows.append(row)
        late_flags.append(user.too_late)
    if not rows:
        return ScoredBatchResult([], touched, 0, replayed)
    scores = score_rows(
        scorer,
        [item.tx for item in valid],
        rows,
        late_flags,
        [item.message.received_s for item in valid],
        clock,
        shadow,
    )
    return ScoredBatchResult(
        scores, touched, sum(late_flags), replayed, rows, [item.ts_ms for item in valid]
    )
