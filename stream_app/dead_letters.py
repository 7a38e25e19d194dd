"""Dead letters that always fit the DLQ topic, whatever arrived.

An input record may be as large as the input topic allows (1 MB by default), but its dead letter
carries the original bytes base64-encoded (4/3 of the size) next to the reason and the origin, so
a 0.8 MB message would make a 1.1 MB dead letter: the producer refuses it, and a worker that
crashes on that refusal reads the same record again after its restart, forever. So a dead letter
is built for a byte budget: the whole original when it fits, otherwise a prefix of it together
with the original size and the sha256 of the whole payload, marked `truncated`. A key too large
to be a record key is replaced by its sha256 (hex) as the DLQ record's key, and the letter keeps a
prefix, its size and its sha256 the same way.

`smallest` is the fallback when even a fitted letter is refused (a broker whose limit is lower
than it said): no original bytes at all, only their sizes and hashes.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.events import DeadLetter, DeadLetterReason

RECORD_OVERHEAD_BYTES = 1024
"""Room left for the record batch and record headers around a dead letter's key and value
(Kafka's batch header is 61 bytes, a record's framing a few dozen)."""
MAX_KEY_BYTES = 1024
"""Keys longer than this are replaced by their sha256 as the DLQ record's key."""
MIN_LIMIT_BYTES = 8 * 1024
"""No DLQ limit below this is accepted: a letter needs room for its reason and origin."""
MAX_ERROR_CHARS = 4000


@dataclass(frozen=True, slots=True)
class Rejected:
    """An input that cannot be scored, before it is turned into a dead letter."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: DeadLetterReason
    error: str


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """What is sent to the DLQ: the record key, the JSON value, and the letter itself."""

    key: bytes | None
    value: bytes
    letter: DeadLetter


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(rejected: Rejected, limit_bytes: int, now: datetime | None = None) -> DeadLetterRecord:
    """The dead letter of `rejected`, its record key and value within `limit_bytes` in all."""
    if limit_bytes < MIN_LIMIT_BYTES:
        raise ValueError(f"a DLQ limit of {limit_bytes} bytes is too small to carry a letter")
    value = rejected.value or b""
    key = rejected.key
    record_key = key
    key_fields: dict[str, object] = {"original_key": None}
    if key is not None:
        key_fields = {"original_key": _b64(key), "original_key_size": len(key)}
        if len(key) > MAX_KEY_BYTES:
            digest = _sha256(key)
            record_key = digest.encode("ascii")
            key_fields = {
                "original_key": _b64(key[: MAX_KEY_BYTES // 4 * 3]),
                "original_key_size": len(key),
                "original_key_sha256": digest,
                "key_truncated": True,
            }
    fields: dict[str, object] = {
        "reason": rejected.reason,
        "error": rejected.error[:MAX_ERROR_CHARS],
        "topic": rejected.topic,
        "partition": rejected.partition,
        "offset": rejected.offset,
        "received_at": now or datetime.now(UTC),
        "original_size": len(value),
        "original_sha256": _sha256(value),
        **key_fields,
    }
    budget = limit_bytes - RECORD_OVERHEAD_BYTES - len(record_key or b"")
    whole = DeadLetter.model_validate({**fields, "original_value": _b64(value)})
    encoded = whole.model_dump_json().encode()
    if len(encoded) <= budget:
        return DeadLetterRecord(record_key, encoded, whole)
    empty = DeadLetter.model_validate({**fields, "original_value": "", "truncated": True})
    room = budget - len(empty.model_dump_json().encode())  # base64 characters that still fit
    prefix = value[: max(0, room // 4 * 3)]
    letter = empty.model_copy(update={"original_value": _b64(prefix)})
    return DeadLetterRecord(record_key, letter.model_dump_json().encode(), letter)


def smallest(record: DeadLetterRecord) -> DeadLetterRecord:
    """The same letter without any original bytes (the last resort before dropping it)."""
    letter = record.letter
    update: dict[str, object] = {"original_value": "", "truncated": True}
    key = record.key
    if letter.original_key is not None:
        digest = letter.original_key_sha256 or _sha256(base64.b64decode(letter.original_key))
        update.update(original_key="", key_truncated=True, original_key_sha256=digest)
        key = digest.encode("ascii")
    smaller = letter.model_copy(update=update)
    return DeadLetterRecord(key, smaller.model_dump_json().encode(), smaller)
