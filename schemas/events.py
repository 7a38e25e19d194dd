"""Event models: the JSON contract on every topic (see docs/CONTRACT.md).

Validation is strict on purpose: a stream that accepts anything passes garbage to the model.
Invalid input is rejected here with a message, and the stream turns it into a dead letter.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

MAX_AMOUNT = 1_000_000_000.0
"""Largest accepted amount (in the transaction's currency); anything above is an input error."""

MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2100, 1, 1, tzinfo=UTC)
_EPOCH = MIN_TIME
_MS = timedelta(milliseconds=1)
_MINUTE = timedelta(minutes=1)


_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _event_time(value: object) -> object:
    """Timestamps in JSON must be RFC 3339 text with an offset (no epoch numbers, no '+0100'),
    with a whole-minute offset, between 1970 and 2100. One Python call per timestamp (three
    validators cost ~1.5 us each on the hot path); `AwareDatetime` then checks the result."""
    if isinstance(value, str):
        if not _RFC3339.match(value):
            raise ValueError(
                "must be an RFC 3339 timestamp with an offset, e.g. 2024-03-01T12:00:00Z"
            )
        value = datetime.fromisoformat(value.upper())
    if isinstance(value, datetime) and value.tzinfo is not None:
        offset = value.utcoffset()
        # JSON keeps only hours and minutes of the offset: "+00:19:32" would come back as
        # "+00:19", silently moving the instant. Only Python callers can build such values.
        if offset is not None and offset % _MINUTE:
            raise ValueError(f"UTC offset {offset} is not a whole number of minutes")
        if not MIN_TIME <= value < MAX_TIME:
            raise ValueError(f"timestamp {value.isoformat()} is outside [1970, 2100)")
    return value


Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
]
"""Opaque identifiers (transaction, user, merchant, model): short, printable, no spaces."""

EventTime = Annotated[AwareDatetime, BeforeValidator(_event_time)]
"""RFC 3339 timestamp with an explicit offset (naive timestamps are rejected)."""

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
"""Checked in pydantic's core: a Python validator per value cost ~0.7 µs, 29 times per score."""
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
MerchantCategory = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]
ShortText = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
]
"""Free text without control characters (no log injection through newlines)."""
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Decision = Literal["approve", "review", "decline"]
DECISIONS: tuple[Decision, ...] = ("approve", "review", "decline")


class Event(BaseModel):
    """Common configuration: strict types, unknown fields rejected, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, protected_namespaces=())


class Transaction(Event):
    """A card or payment transaction. Carries no names, card numbers or other PII."""

    transaction_id: Identifier
    user_id: Identifier
    merchant_id: Identifier
    amount: Annotated[float, Field(gt=0, le=MAX_AMOUNT, allow_inf_nan=False)]
    currency: Currency = "EUR"
    timestamp: EventTime
    channel: ShortText | None = None
    country: CountryCode | None = None
    mcc: MerchantCategory | None = None
    device_id: ShortText | None = None


class Label(Event):
    """Ground truth for one transaction, usually known days after it happened.

    `merchant_id` and `transaction_time` (the labelled transaction's event time) are optional;
    a fraud-operations feed normally knows both, and the merchant risk features need both (with
    `labeled_at`): a fraud label without them is counted as unattributable, not used there.
    """

    transaction_id: Identifier
    is_fraud: bool
    labeled_at: EventTime | None = None
    merchant_id: Identifier | None = None
    transaction_time: EventTime | None = None


class Reason(Event):
    """One feature's signed contribution (log-odds) to a score."""

    name: ShortText
    value: FiniteFloat


class ShadowScore(Event):
    """The challenger's opinion on the same transaction, when a challenger is shadowing."""

    model_version: Identifier
    score: Annotated[float, Field(ge=0.0, le=1.0)]
    decision: Decision


Arm = Literal["champion", "challenger"]
ARMS: tuple[Arm, ...] = ("champion", "challenger")
Percent = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]


class CanaryArm(Event):
    """Which arm of a canary rollout decided a transaction, and the other model's opinion.

    A user's arm is a pure function of `rollout` and `user_id` (`models.canary.bucket`), so any
    consumer, and `fraudstream score --rollout`, can recompute it. `fallback`: the user is in the
    challenger's arm but the challenger could not score the batch, so the champion decided.
    """

    rollout: Identifier
    step: Annotated[int, Field(ge=0)]
    share: Percent
    """Percent of users the challenger decides for in this step."""
    arm: Arm
    other: ShadowScore | None
    """The model that did not decide, on the same transaction (None on a `fallback`)."""
    fallback: bool = False


class FraudScore(Event):
    """The published result for one transaction; keyed by `user_id` on the score topic."""

    transaction_id: Identifier
    user_id: Identifier
    score: Annotated[float, Field(ge=0.0, le=1.0)]
    decision: Decision
    model_version: Identifier
    reasons: list[Reason]
    features: dict[str, FiniteFloat]
    event_time: EventTime
    scored_at: EventTime
    latency_ms: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
    late: bool = False
    """True when the transaction arrived later than the allowed lateness for its user."""
    shadow: ShadowScore | None = None
    canary: CanaryArm | None = None
    """During a canary rollout: the arm that decided (`model_version` is its version)."""


class DriftEvent(Event):
    """A drift detector fired on a monitored signal."""

    detector: ShortText
    signal: ShortText
    model_version: Identifier
    detected_at: EventTime
    statistics: dict[str, FiniteFloat] = Field(default_factory=dict)


class CanaryPlan(Event):
    """A canary rollout's step: the challenger (the update's `version`) decides for `share`
    percent of users, chosen by hashing `rollout` with each `user_id`."""

    rollout: Identifier
    step: Annotated[int, Field(ge=0)]
    share: Percent
    steps: list[Percent]
    champion: Identifier
    hold_s: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.0
    min_decisions: Annotated[int, Field(ge=0)] = 0


class ModelUpdate(Event):
    """Tells running workers that the registry's champion (or shadow, or canary) changed.

    `canary` starts a rollout's step (`canary` plan set); `canary_rollback` ends a rollout with the
    champion deciding for everyone (the `reason` names the breach, `metrics` hold the evidence);
    a rollout that passed every step ends with a `promote` of its challenger.
    """

    model_name: Identifier
    version: Identifier
    sha256: Sha256Hex
    location: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict)
    reason: Annotated[str, StringConstraints(max_length=1024)] = ""
    action: Literal["promote", "rollback", "shadow", "unshadow", "canary", "canary_rollback"] = (
        "promote"
    )
    issued_at: EventTime | None = None
    canary: CanaryPlan | None = None


DeadLetterReason = Literal[
    "oversized", "not_utf8", "invalid_json", "invalid_event", "duplicate", "unscorable"
]
"""Why an input became a dead letter: `duplicate` is a transaction id the user's state already
applied (its score was published once); `unscorable` is a valid transaction the scorer could not
turn into a publishable score (the error says why)."""


class DeadLetter(Event):
    """An input message the stream could not use, kept with the reason and where it came from.

    A dead letter always fits the DLQ topic: when the original bytes do not, `original_value`
    (or `original_key`) holds only their first bytes, `truncated` (or `key_truncated`) says so,
    and the size and sha256 of the whole original identify it.
    """

    reason: DeadLetterReason
    error: Annotated[str, StringConstraints(max_length=4096)]
    original_key: str | None = None
    """Base64 of the original key bytes (None if the message had no key)."""
    original_value: str
    """Base64 of the original value bytes (of their first bytes when `truncated`)."""
    topic: Annotated[str, StringConstraints(min_length=1, max_length=249)]
    partition: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=0)]
    received_at: EventTime
    original_size: Annotated[int, Field(ge=0)] | None = None
    """Bytes of the whole original value."""
    original_sha256: Sha256Hex | None = None
    """sha256 of the whole original value (hex)."""
    truncated: bool = False
    original_key_size: Annotated[int, Field(ge=0)] | None = None
    original_key_sha256: Sha256Hex | None = None
    key_truncated: bool = False


def epoch_ms(value: datetime) -> int:
    """Exact integer milliseconds since the Unix epoch (no float rounding)."""
    return (value - _EPOCH) // _MS


def from_epoch_ms(value: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=value)


EVENT_MODELS: dict[str, type[Event]] = {
    "Transaction": Transaction,
    "Label": Label,
    "FraudScore": FraudScore,
    "DriftEvent": DriftEvent,
    "ModelUpdate": ModelUpdate,
    "DeadLetter": DeadLetter,
}
