"""The event contract: exported schemas are current, events round-trip, bad input is rejected.

The models are the wire contract of every topic, so these tests pin what goes in and out as
JSON text (the stream's path), not only Python objects.
"""

from __future__ import annotations

import base64
import json
import math
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.errors import InputError
from schemas.events import (
    DECISIONS,
    EVENT_MODELS,
    MAX_AMOUNT,
    DeadLetter,
    DeadLetterReason,
    DriftEvent,
    Event,
    FraudScore,
    Label,
    ModelUpdate,
    Reason,
    ShadowScore,
    Transaction,
    epoch_ms,
    from_epoch_ms,
)
from schemas.export import SCHEMA_DIR, export_schemas, render_schemas
from schemas.jsonl import describe_validation_error, read_events, write_events

PROPERTY = settings(max_examples=150, deadline=None)

# -- strategies ---------------------------------------------------------------------------------

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"
identifiers = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=64)
short_texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=128
)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
probabilities = st.floats(min_value=0.0, max_value=1.0)
amounts = st.floats(
    min_value=0.0, max_value=MAX_AMOUNT, exclude_min=True, allow_nan=False, allow_infinity=False
)
# JSON keeps whole-minute offsets only; |offset| < 24 h.
offsets = st.one_of(
    st.just(UTC),
    st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    ),
)


@st.composite
def event_times(draw: st.DrawFn) -> datetime:
    """An instant in [1970, 2100) UTC, shown in some offset (so local wall time may leave it)."""
    naive_utc = draw(
        st.datetimes(
            min_value=datetime(1970, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59, 999999)
        )
    )
    return naive_utc.replace(tzinfo=UTC).astimezone(draw(offsets))


@st.composite
def millisecond_times(draw: st.DrawFn) -> datetime:
    last_ms = epoch_ms(datetime(2100, 1, 1, tzinfo=UTC)) - 1
    instant = from_epoch_ms(draw(st.integers(min_value=0, max_value=last_ms)))
    return instant.astimezone(draw(offsets))


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


float_maps = st.dictionaries(st.text(max_size=24), finite_floats, max_size=6)
base64_bytes = st.binary(max_size=64).map(lambda raw: base64.b64encode(raw).decode())
sha256_hex = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)

MODEL_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "Transaction": st.builds(
        Transaction,
        transaction_id=identifiers,
        user_id=identifiers,
        merchant_id=identifiers,
        amount=amounts,
        currency=st.from_regex(r"\A[A-Z]{3}\Z"),
        timestamp=event_times(),
        channel=optional(short_texts),
        country=optional(st.from_regex(r"\A[A-Z]{2}\Z")),
        mcc=optional(st.from_regex(r"\A[0-9]{4}\Z")),
        device_id=optional(short_texts),
    ),
    "Label": st.builds(
        Label,
        transaction_id=identifiers,
        is_fraud=st.booleans(),
        labeled_at=optional(event_times()),
        merchant_id=optional(identifiers),
        transaction_time=optional(event_times()),
    ),
    "FraudScore": st.builds(
        FraudScore,
        transaction_id=identifiers,
        user_id=identifiers,
        score=probabilities,
        decision=st.sampled_from(DECISIONS),
        model_version=identifiers,
        reasons=st.lists(st.builds(Reason, name=short_texts, value=finite_floats), max_size=5),
        features=float_maps,
        event_time=event_times(),
        scored_at=event_times(),
        latency_ms=st.floats(min_value=0.0, allow_nan=False, allow_infinity=False),
        late=st.booleans(),
        shadow=optional(
            st.builds(
                ShadowScore,
                model_version=identifiers,
                score=probabilities,
                decision=st.sampled_from(DECISIONS),
            )
        ),
    ),
    "DriftEvent": st.builds(
        DriftEvent,
        detector=short_texts,
        signal=short_texts,
        model_version=identifiers,
        detected_at=event_times(),
        statistics=float_maps,
    ),
    "ModelUpdate": st.builds(
        ModelUpdate,
        model_name=identifiers,
        version=identifiers,
        sha256=sha256_hex,
        location=st.text(min_size=1, max_size=1024),
        metrics=float_maps,
        reason=st.text(max_size=1024),
        action=st.sampled_from(["promote", "rollback", "shadow", "unshadow"]),
        issued_at=optional(event_times()),
    ),
    "DeadLetter": st.builds(
        DeadLetter,
        reason=st.sampled_from(get_args(DeadLetterReason)),
        error=st.text(max_size=4096),
        original_key=optional(base64_bytes),
        original_value=base64_bytes,
        topic=st.text(min_size=1, max_size=249),
        partition=st.integers(min_value=0, max_value=2**31 - 1),
        offset=st.integers(min_value=0, max_value=2**63 - 1),
        received_at=event_times(),
        original_size=optional(st.integers(min_value=0, max_value=2**31)),
        original_sha256=optional(sha256_hex),
        truncated=st.booleans(),
        original_key_size=optional(st.integers(min_value=0, max_value=2**31)),
        original_key_sha256=optional(sha256_hex),
        key_truncated=st.booleans(),
    ),
}


# -- a small JSON Schema checker (the `jsonschema` package is not a dependency) -----------------

KNOWN_KEYWORDS = {
    "$schema", "$id", "$defs", "$ref", "title", "description", "default", "format", "type",
    "anyOf", "enum", "pattern", "minLength", "maxLength", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "required", "properties", "additionalProperties",
    "items",
}  # fmt: skip
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
    "object": (dict,),
    "array": (list,),
}


def ecma_search(pattern: str, value: str) -> bool:
    """JSON Schema patterns are ECMA-262: `$` is the very end (Python's `$` allows a final \\n)."""
    return re.search(re.sub(r"(?<!\\)\$", r"\\Z", pattern), value) is not None


def schema_errors(schema: dict[str, Any], value: Any, root: dict[str, Any], at: str) -> list[str]:
    """Violations of the JSON Schema subset pydantic emits; unknown keywords fail loudly."""
    unknown = set(schema) - KNOWN_KEYWORDS
    assert not unknown, f"{at}: keywords {sorted(unknown)} are not understood by this checker"
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return schema_errors(root["$defs"][name], value, root, at)
    if "anyOf" in schema:
        branches = [schema_errors(branch, value, root, at) for branch in schema["anyOf"]]
        return [] if any(not errors for errors in branches) else [f"{at}: matches no anyOf branch"]
    kind = schema.get("type")
    if kind is not None:
        is_bool = isinstance(value, bool)
        if not isinstance(value, JSON_TYPES[kind]) or (is_bool and kind != "boolean"):
            return [f"{at}: {value!r} is not of type {kind}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{at}: shorter than {schema['minLength']}")
        if len(value) > schema.get("maxLength", math.inf):
            errors.append(f"{at}: longer than {schema['maxLength']}")
        if "pattern" in schema and not ecma_search(schema["pattern"], value):
            errors.append(f"{at}: does not match {schema['pattern']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not value >= schema.get("minimum", -math.inf):
            errors.append(f"{at}: below minimum {schema['minimum']}")
        if not value <= schema.get("maximum", math.inf):
            errors.append(f"{at}: above maximum {schema['maximum']}")
        if "exclusiveMinimum" in schema and not value > schema["exclusiveMinimum"]:
            errors.append(f"{at}: not above {schema['exclusiveMinimum']}")
        if "exclusiveMaximum" in schema and not value < schema["exclusiveMaximum"]:
            errors.append(f"{at}: not below {schema['exclusiveMaximum']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        errors += [f"{at}: missing {key}" for key in schema.get("required", []) if key not in value]
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(properties[key], item, root, f"{at}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{at}: unexpected property {key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(schema["additionalProperties"], item, root, f"{at}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(schema["items"], item, root, f"{at}[{index}]")
    return errors


def exported_schema(model_name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (SCHEMA_DIR / f"{model_name}.schema.json").read_text(encoding="utf-8")
    )
    return schema


def violations(model_name: str, document: Any) -> list[str]:
    schema = exported_schema(model_name)
    return schema_errors(schema, document, schema, "$")


# -- exported JSON Schema files -----------------------------------------------------------------


def test_committed_schema_files_match_the_models() -> None:
    expected = render_schemas()
    committed = {path.name: path.read_text(encoding="utf-8") for path in SCHEMA_DIR.glob("*.json")}
    stale = sorted(name for name, text in expected.items() if committed.get(name) != text)
    unexpected = sorted(set(committed) - set(expected))
    assert not stale and not unexpected, (
        f"schemas/json is out of date with schemas/events.py (differs or missing: {stale}; "
        f"no longer a model: {unexpected}). Run `make schemas` and commit schemas/json/."
    )


def test_one_schema_file_per_event_model() -> None:
    assert sorted(render_schemas()) == sorted(f"{name}.schema.json" for name in EVENT_MODELS)


@pytest.mark.parametrize("name", sorted(EVENT_MODELS))
def test_exported_schema_describes_the_model(name: str) -> None:
    schema = exported_schema(name)
    model = EVENT_MODELS[name]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/{name}.schema.json")
    assert schema["title"] == name
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(model.model_fields)
    required = {field for field, info in model.model_fields.items() if info.is_required()}
    assert set(schema["required"]) == required


def test_exported_schema_carries_the_patterns() -> None:
    properties = exported_schema("Transaction")["properties"]
    assert properties["transaction_id"]["pattern"] == r"^[A-Za-z0-9_.:\-]+$"
    assert properties["transaction_id"]["maxLength"] == 64
    assert properties["currency"]["pattern"] == "^[A-Z]{3}$"
    assert properties["amount"] == {
        "exclusiveMinimum": 0,
        "maximum": MAX_AMOUNT,
        "title": "Amount",
        "type": "number",
    }
    assert properties["timestamp"]["format"] == "date-time"
    assert exported_schema("ModelUpdate")["properties"]["sha256"]["pattern"] == "^[0-9a-f]{64}$"


def test_export_writes_what_render_produces(tmp_path: Path) -> None:
    written = export_schemas(tmp_path / "json")
    rendered = render_schemas()
    assert sorted(path.name for path in written) == sorted(rendered)
    for path in written:
        assert path.read_text(encoding="utf-8") == rendered[path.name]


def test_transaction_fields_are_the_contract_and_carry_no_pii() -> None:
    assert set(Transaction.model_fields) == {
        "transaction_id", "user_id", "merchant_id", "amount", "currency", "timestamp",
        "channel", "country", "mcc", "device_id",
    }  # fmt: skip


# -- round trips --------------------------------------------------------------------------------


def test_every_model_has_a_strategy() -> None:
    assert set(MODEL_STRATEGIES) == set(EVENT_MODELS)


@pytest.mark.parametrize("name", sorted(EVENT_MODELS))
@PROPERTY
@given(data=st.data())
def test_json_round_trip_and_schema_conformance(name: str, data: st.DataObject) -> None:
    event = data.draw(MODEL_STRATEGIES[name], label=name)
    text = event.model_dump_json()
    assert EVENT_MODELS[name].model_validate_json(text) == event
    assert violations(name, json.loads(text)) == []


@PROPERTY
@given(when=millisecond_times())
def test_epoch_ms_round_trips_millisecond_times(when: datetime) -> None:
    assert from_epoch_ms(epoch_ms(when)) == when
    assert epoch_ms(from_epoch_ms(epoch_ms(when))) == epoch_ms(when)


@PROPERTY
@given(when=event_times())
def test_epoch_ms_truncates_to_the_millisecond(when: datetime) -> None:
    ms = epoch_ms(when)
    assert from_epoch_ms(ms) <= when < from_epoch_ms(ms + 1)


@settings(max_examples=30, deadline=None)
@given(events=st.lists(MODEL_STRATEGIES["Transaction"], max_size=8))
def test_jsonl_files_round_trip(events: list[Transaction]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "transactions.jsonl"
        assert write_events(path, events) == len(events)
        assert read_events(path, Transaction).records == events


# -- what is accepted ---------------------------------------------------------------------------

WHEN = "2024-03-01T12:00:00.123+05:30"
TRANSACTION = {
    "transaction_id": "tx-1",
    "user_id": "u-1",
    "merchant_id": "m-1",
    "amount": 12.5,
    "currency": "EUR",
    "timestamp": WHEN,
    "country": "DE",
    "mcc": "5411",
}
VALID: dict[str, dict[str, Any]] = {
    "Transaction": TRANSACTION,
    "Label": {"transaction_id": "tx-1", "is_fraud": True, "labeled_at": WHEN},
    "FraudScore": {
        "transaction_id": "tx-1",
        "user_id": "u-1",
        "score": 0.25,
        "decision": "approve",
        "model_version": "v1",
        "reasons": [{"name": "amount_z", "value": -0.5}],
        "features": {"amount": 12.5},
        "event_time": WHEN,
        "scored_at": WHEN,
        "latency_ms": 3.5,
        "shadow": {"model_version": "v2", "score": 0.5, "decision": "review"},
    },
    "DriftEvent": {
        "detector": "adwin",
        "signal": "score",
        "model_version": "v1",
        "detected_at": WHEN,
        "statistics": {"mean_before": 0.1, "mean_after": 0.3},
    },
    "ModelUpdate": {
        "model_name": "fraud",
        "version": "v2",
        "sha256": "0" * 64,
        "location": "registry/fraud/v2",
        "metrics": {"auc": 0.93},
        "reason": "drift",
        "action": "promote",
        "issued_at": WHEN,
    },
    "DeadLetter": {
        "reason": "invalid_event",
        "error": "amount: Input should be greater than 0",
        "original_key": base64.b64encode(b"u-1").decode(),
        "original_value": base64.b64encode(b'{"amount": -1}').decode(),
        "topic": "transactions",
        "partition": 0,
        "offset": 42,
        "received_at": WHEN,
    },
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_examples_are_accepted_by_model_and_schema(name: str) -> None:
    event = EVENT_MODELS[name].model_validate_json(json.dumps(VALID[name]))
    assert event.model_fields_set == set(VALID[name])
    assert violations(name, VALID[name]) == []


@pytest.mark.parametrize("amount", [12, 1, 1_000_000_000])
def test_integer_amounts_are_read_as_floats(amount: int) -> None:
    tx = Transaction.model_validate_json(json.dumps({**TRANSACTION, "amount": amount}))
    assert type(tx.amount) is float
    assert tx.amount == amount
    assert f'"amount":{float(amount)!r}' in tx.model_dump_json()


def test_offset_timestamps_keep_the_offset_and_give_exact_epoch_ms() -> None:
    tx = Transaction.model_validate_json(json.dumps(TRANSACTION))
    assert tx.timestamp.utcoffset() == timedelta(hours=5, minutes=30)
    # 2024-03-01T06:30:00.123Z: 19_783 days (54 years incl. 13 leap days, + Jan + 29 Feb days)
    # plus 6.5 hours.
    assert epoch_ms(tx.timestamp) == (19_783 * 86_400 + 6 * 3_600 + 30 * 60) * 1_000 + 123
    assert epoch_ms(tx.timestamp) == 1_709_274_600_123
    assert '"timestamp":"2024-03-01T12:00:00.123000+05:30"' in tx.model_dump_json()


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.001-01:00", 3_600_001),
        ("1970-01-01T05:30:00+05:30", 0),
        ("2099-12-31T23:59:59.999Z", 4_102_444_799_999),
        ("2024-03-01T00:00:00.999999+00:00", 1_709_251_200_999),
    ],
)
def test_epoch_ms_of_known_instants(text: str, expected_ms: int) -> None:
    tx = Transaction.model_validate_json(json.dumps({**TRANSACTION, "timestamp": text}))
    assert epoch_ms(tx.timestamp) == expected_ms


def test_events_are_immutable() -> None:
    tx = Transaction.model_validate_json(json.dumps(TRANSACTION))
    with pytest.raises(ValidationError):
        tx.amount = 1.0  # type: ignore[misc]


# -- what is rejected ---------------------------------------------------------------------------

MISSING = object()


@dataclass(frozen=True)
class Bad:
    """`VALID[model]` with the value at `path` replaced (or removed: MISSING)."""

    model: str
    path: tuple[str | int, ...]
    value: Any
    schema_rejects: bool = True
    """False where JSON Schema cannot say it (NaN, time range, offsets): the model alone guards."""

    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(json.dumps(VALID[self.model]))
        parent: Any = document
        for key in self.path[:-1]:
            parent = parent[key]
        if self.value is MISSING:
            del parent[self.path[-1]]
        else:
            parent[self.path[-1]] = self.value
        return document


def bad_id(case: Bad) -> str:
    value = "MISSING" if case.value is MISSING else repr(case.value)[:20]
    return f"{case.model}.{'.'.join(map(str, case.path))}={value}"


BAD = [
    # amounts: finite, > 0, <= 1e9, a JSON number
    Bad("Transaction", ("amount",), math.nan, schema_rejects=False),
    Bad("Transaction", ("amount",), math.inf, schema_rejects=False),
    Bad("Transaction", ("amount",), -math.inf, schema_rejects=False),
    Bad("Transaction", ("amount",), 0),
    Bad("Transaction", ("amount",), 0.0),
    Bad("Transaction", ("amount",), -0.01),
    Bad("Transaction", ("amount",), MAX_AMOUNT * (1 + 1e-15)),
    Bad("Transaction", ("amount",), 1e10),
    Bad("Transaction", ("amount",), "12"),
    Bad("Transaction", ("amount",), True),
    Bad("Transaction", ("amount",), None),
    # timestamps: with an offset, inside [1970, 2100) as an instant
    Bad("Transaction", ("timestamp",), "2024-03-01T12:00:00", schema_rejects=False),
    Bad("Transaction", ("timestamp",), "2200-01-01T00:00:00Z", schema_rejects=False),
    Bad("Transaction", ("timestamp",), "1969-12-31T23:59:59.999Z", schema_rejects=False),
    Bad("Transaction", ("timestamp",), "2099-12-31T23:00:00-05:00", schema_rejects=False),
    Bad("Transaction", ("timestamp",), "1970-01-01T03:00:00+05:00", schema_rejects=False),
    Bad("Transaction", ("timestamp",), "2024-02-30T00:00:00Z", schema_rejects=False),
    Bad("Transaction", ("timestamp",), "yesterday", schema_rejects=False),
    Bad("Transaction", ("timestamp",), 1_709_294_400),
    Bad("Label", ("labeled_at",), "2024-03-01T12:00:00", schema_rejects=False),
    Bad("DeadLetter", ("received_at",), "2024-03-01 12:00", schema_rejects=False),
    # required fields
    *(Bad("Transaction", (field,), MISSING) for field in ("transaction_id", "user_id")),
    *(Bad("Transaction", (field,), MISSING) for field in ("merchant_id", "amount", "timestamp")),
    Bad("Label", ("is_fraud",), MISSING),
    Bad("Label", ("transaction_id",), MISSING),
    Bad("FraudScore", ("score",), MISSING),
    Bad("FraudScore", ("features",), MISSING),
    Bad("FraudScore", ("reasons", 0, "value"), MISSING),
    Bad("DriftEvent", ("detected_at",), MISSING),
    Bad("ModelUpdate", ("sha256",), MISSING),
    Bad("DeadLetter", ("original_value",), MISSING),
    # unknown fields, PII first
    Bad("Transaction", ("card_number",), "4111111111111111"),
    Bad("Transaction", ("cardholder_name",), "Jane Doe"),
    Bad("Transaction", ("Amount",), 12.5),
    Bad("Label", ("email",), "jane@example.com"),
    Bad("FraudScore", ("reasons", 0, "card_number"), "4111111111111111"),
    Bad("FraudScore", ("shadow", "extra"), 1),
    # currency and other codes
    Bad("Transaction", ("currency",), "eur"),
    Bad("Transaction", ("currency",), "EURO"),
    Bad("Transaction", ("currency",), "EU"),
    Bad("Transaction", ("currency",), "€"),
    Bad("Transaction", ("currency",), None),
    Bad("Transaction", ("country",), "de"),
    Bad("Transaction", ("mcc",), "54111"),
    Bad("Transaction", ("mcc",), 5411),
    Bad("Transaction", ("channel",), ""),
    # identifiers
    Bad("Transaction", ("user_id",), "user 1"),
    Bad("Transaction", ("user_id",), "a" * 65),
    Bad("Transaction", ("user_id",), ""),
    Bad("Transaction", ("user_id",), "u-1\n"),
    Bad("Transaction", ("user_id",), "ü"),
    Bad("Transaction", ("user_id",), "a/b"),
    Bad("Transaction", ("transaction_id",), 123),
    Bad("FraudScore", ("model_version",), "v 2"),
    # booleans are JSON booleans
    Bad("Label", ("is_fraud",), "true"),
    Bad("Label", ("is_fraud",), 1),
    Bad("Label", ("is_fraud",), 0),
    Bad("Label", ("is_fraud",), None),
    Bad("FraudScore", ("late",), "false"),
    # scores
    Bad("FraudScore", ("score",), 1.0000001),
    Bad("FraudScore", ("score",), -0.1),
    Bad("FraudScore", ("score",), math.nan, schema_rejects=False),
    Bad("FraudScore", ("decision",), "maybe"),
    Bad("FraudScore", ("decision",), "APPROVE"),
    Bad("FraudScore", ("latency_ms",), -1),
    Bad("FraudScore", ("latency_ms",), math.inf, schema_rejects=False),
    Bad("FraudScore", ("features", "amount"), math.nan, schema_rejects=False),
    Bad("FraudScore", ("features", "amount"), "12.5"),
    Bad("FraudScore", ("reasons", 0, "value"), math.inf, schema_rejects=False),
    Bad("FraudScore", ("shadow", "score"), 2),
    Bad("FraudScore", ("shadow", "decision"), "maybe"),
    Bad("DriftEvent", ("statistics", "mean_after"), math.nan, schema_rejects=False),
    # dead letters
    Bad("DeadLetter", ("offset",), -1),
    Bad("DeadLetter", ("offset",), 1.5),
    Bad("DeadLetter", ("offset",), "42"),
    Bad("DeadLetter", ("partition",), -1),
    Bad("DeadLetter", ("reason",), "other"),
    Bad("DeadLetter", ("topic",), ""),
    Bad("DeadLetter", ("error",), "x" * 4097),
    # model updates
    Bad("ModelUpdate", ("sha256",), "abc123"),
    Bad("ModelUpdate", ("sha256",), "0" * 63),
    Bad("ModelUpdate", ("sha256",), "0" * 65),
    Bad("ModelUpdate", ("sha256",), "A" * 64),
    Bad("ModelUpdate", ("sha256",), "g" * 64),
    Bad("ModelUpdate", ("action",), "delete"),
    Bad("ModelUpdate", ("location",), ""),
    Bad("ModelUpdate", ("metrics", "auc"), math.inf, schema_rejects=False),
]


@pytest.mark.parametrize("case", BAD, ids=bad_id)
def test_invalid_events_are_rejected_at_the_field(case: Bad) -> None:
    text = json.dumps(case.document())  # NaN and Infinity as the JSON extensions pydantic reads
    with pytest.raises(ValidationError) as caught:
        EVENT_MODELS[case.model].model_validate_json(text)
    locations = [error["loc"] for error in caught.value.errors()]
    assert any(loc[: len(case.path)] == case.path for loc in locations), locations


@pytest.mark.parametrize("case", [case for case in BAD if case.schema_rejects], ids=bad_id)
def test_exported_schema_rejects_them_too(case: Bad) -> None:
    assert violations(case.model, case.document()) != []


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0.0, -1.0, 2e9])
def test_python_built_transactions_are_checked_too(value: float) -> None:
    fields = Transaction.model_validate_json(json.dumps(TRANSACTION)).model_dump()
    with pytest.raises(ValidationError):
        Transaction(**{**fields, "amount": value})


def test_python_built_scores_reject_non_finite_features() -> None:
    fields = FraudScore.model_validate_json(json.dumps(VALID["FraudScore"])).model_dump()
    with pytest.raises(ValidationError, match="finite"):
        FraudScore(**{**fields, "features": {"amount": math.inf}})


@pytest.mark.parametrize("seconds", [30, -1, 19 * 60 + 32])
def test_offsets_that_json_cannot_carry_are_rejected(seconds: int) -> None:
    """RFC 3339 offsets are whole minutes; pydantic would otherwise drop the seconds on dump."""
    when = datetime(2024, 3, 1, 12, tzinfo=timezone(timedelta(seconds=seconds)))
    with pytest.raises(ValidationError, match="whole number of minutes"):
        Label(transaction_id="tx-1", is_fraud=False, labeled_at=when)


@pytest.mark.parametrize(
    "text",
    [
        "1709294400",
        "1709294400000",
        "2024-03-01T12:00+01:00",
        "2024-03-01T12:00:00+0100",
        "2024-03-01_12:00:00Z",
    ],
)
def test_timestamps_must_be_rfc3339_text(text: str) -> None:
    with pytest.raises(ValidationError):
        Transaction.model_validate_json(json.dumps({**TRANSACTION, "timestamp": text}))


# -- describe_validation_error ------------------------------------------------------------------


def validation_error(model: type[Event], document: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(
            json.dumps(document) if not isinstance(document, str) else document
        )
    return caught.value


def test_description_is_field_colon_message() -> None:
    error = validation_error(Transaction, {**TRANSACTION, "amount": -1, "currency": "eur"})
    text = describe_validation_error(error)
    assert re.fullmatch(r"amount: [^;]*greater than 0[^;]*; currency: [^;]*pattern[^;]*", text)


def test_description_names_nested_fields_with_dots() -> None:
    document = {**VALID["FraudScore"], "reasons": [{"name": "x", "value": "high"}]}
    text = describe_validation_error(validation_error(FraudScore, document))
    assert text.startswith("reasons.0.value: ")


def test_description_is_limited_and_counts_the_rest() -> None:
    error = validation_error(Transaction, {})
    assert error.error_count() == 5
    text = describe_validation_error(error, limit=3)
    assert text.count("Field required") == 3
    assert text.endswith("; (+2 more)")


def test_description_of_broken_json_names_the_record() -> None:
    text = describe_validation_error(validation_error(Transaction, '{"amount": '))
    assert text.startswith("<record>: ")
    assert "JSON" in text


def test_description_does_not_echo_values() -> None:
    """Rejected input may hold card numbers: messages name fields, never their values."""
    error = validation_error(
        Transaction, {**TRANSACTION, "card_number": "4111111111111111", "user_id": "4111 1111"}
    )
    text = describe_validation_error(error)
    assert "card_number: " in text
    assert "4111" not in text


# -- JSON Lines files ---------------------------------------------------------------------------


def line(**changes: Any) -> str:
    return json.dumps({**TRANSACTION, **changes})


def test_reading_stops_at_the_first_bad_line_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "tx.jsonl"
    path.write_text(f"{line()}\n\n{line(amount=-1)}\n{{broken\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_events(path, Transaction)
    message = str(caught.value)
    assert message.startswith(f"{path}:3: invalid Transaction: amount: ")
    assert "--skip-invalid" in message


def test_reading_reports_malformed_json_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "tx.jsonl"
    path.write_text(f"{line()}\n{{broken\n", encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(f"{path}:2: invalid Transaction: <record>")):
        read_events(path, Transaction)


def test_skip_invalid_counts_bad_lines_and_keeps_good_ones(tmp_path: Path) -> None:
    path = tmp_path / "tx.jsonl"
    lines = [line(transaction_id="a"), "{broken", line(transaction_id="b", currency="eur")]
    path.write_text("\n".join([*lines, line(transaction_id="c")]) + "\n", encoding="utf-8")
    result = read_events(path, Transaction, skip_invalid=True)
    assert [tx.transaction_id for tx in result.records] == ["a", "c"]
    assert result.skipped == 2
    assert [message.split(": ")[0] for message in result.first_errors] == [
        f"{path}:2",
        f"{path}:3",
    ]
    assert "currency" in result.first_errors[1]


def test_skip_invalid_keeps_only_the_first_few_messages(tmp_path: Path) -> None:
    path = tmp_path / "tx.jsonl"
    path.write_text("{}\n" * 7 + line() + "\n", encoding="utf-8")
    result = read_events(path, Transaction, skip_invalid=True)
    assert (len(result.records), result.skipped, len(result.first_errors)) == (1, 7, 5)


def test_blank_lines_and_crlf_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "tx.jsonl"
    path.write_bytes(f"\n   \n{line()}\r\n\t\n{line(transaction_id='b')}".encode())
    result = read_events(path, Transaction)
    assert [tx.transaction_id for tx in result.records] == ["tx-1", "b"]
    assert result.skipped == 0


def test_empty_file_reads_as_no_events(tmp_path: Path) -> None:
    path = tmp_path / "tx.jsonl"
    path.write_bytes(b"")
    assert read_events(path, Transaction).records == []


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(InputError, match=re.escape(f"{path}: file not found")):
        read_events(path, Transaction)


def test_directory_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        read_events(tmp_path, Transaction)


def transactions(*ids: str) -> list[Transaction]:
    return [Transaction.model_validate_json(line(transaction_id=tx)) for tx in ids]


def test_write_events_creates_directories_and_leaves_only_the_target(tmp_path: Path) -> None:
    path = tmp_path / "out" / "tx.jsonl"
    assert write_events(path, transactions("a", "b")) == 2
    assert list(path.parent.iterdir()) == [path]
    assert path.read_text(encoding="utf-8").splitlines() == [
        tx.model_dump_json() for tx in transactions("a", "b")
    ]


def test_write_events_target_appears_only_when_complete(tmp_path: Path) -> None:
    path = tmp_path / "tx.jsonl"
    seen_while_writing = []

    def produce() -> Iterator[Transaction]:
        for tx in transactions("a", "b", "c"):
            seen_while_writing.append(path.exists())
            yield tx

    write_events(path, produce())
    assert seen_while_writing == [False, False, False]
    assert len(read_events(path, Transaction).records) == 3


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "tx.jsonl"
    write_events(path, transactions("old"))
    before = path.read_bytes()

    def failing() -> Iterator[Transaction]:
        yield from transactions("new")
        raise RuntimeError("upstream failed")

    with pytest.raises(RuntimeError, match="upstream failed"):
        write_events(path, failing())
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("text", ["pos\nFAKE LOG LINE", "a\x00b", "\x7f"])
def test_free_text_rejects_control_characters(text: str) -> None:
    with pytest.raises(ValidationError, match="channel"):
        Transaction.model_validate_json(json.dumps({**TRANSACTION, "channel": text}))


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        ("2024-03-01T12:00:00Z", 1_709_294_400_000),
        ("2024-03-01t12:00:00z", 1_709_294_400_000),
        ("2024-03-01 12:00:00+00:00", 1_709_294_400_000),
        ("2024-03-01T13:00:00.123456789+01:00", 1_709_294_400_123),
    ],
)
def test_rfc3339_variants_are_accepted(text: str, expected_ms: int) -> None:
    tx = Transaction.model_validate_json(json.dumps({**TRANSACTION, "timestamp": text}))
    assert epoch_ms(tx.timestamp) == expected_ms
