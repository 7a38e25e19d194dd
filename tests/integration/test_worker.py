"""The scoring worker on a real broker: parity with offline scoring, dead letters, restarts,
several workers, out-of-order traffic."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from models.fraud_labels import attributed_frauds
from models.registry import ModelRegistry
from models.scoring import Scorer, score_offline
from schemas.events import DeadLetter, FraudScore, Label, Transaction
from schemas.jsonl import read_events
from tests.integration.conftest import DATA, Stack, collect, covers, free_port, stop

pytestmark = pytest.mark.integration

TRAFFIC = DATA / "traffic.jsonl"
LABELS = DATA / "traffic_labels.jsonl"


def offline_scores(stack: Stack, traffic: Path, labels: Path | None) -> dict[str, FraudScore]:
    scorer = Scorer.from_loaded(ModelRegistry(stack.registry, "fraud-xgb").load())
    txs = read_events(traffic, Transaction).records
    frauds = attributed_frauds(read_events(labels, Label).records).frauds if labels else None
    return {s.transaction_id: s for s in score_offline(txs, scorer, frauds)}


def scores_by_id(messages: list[Any]) -> dict[str, list[FraudScore]]:
    found: dict[str, list[FraudScore]] = {}
    for message in messages:
        score = FraudScore.model_validate_json(message.value())
        assert message.key().decode() == score.user_id
        found.setdefault(score.transaction_id, []).append(score)
    return found


def wait_for_scores(
    stack: Stack, ids: set[str], timeout_s: float = 120
) -> dict[str, list[FraudScore]]:
    messages = collect(
        stack.broker,
        stack.topics["fraud-scores"],
        covers(ids),
        timeout_s,
        f"{len(ids)} scored transactions",
        stack.worker_logs,
    )
    return scores_by_id(messages)


def assert_same(online: FraudScore, offline: FraudScore) -> None:
    assert online.features == offline.features, online.transaction_id
    assert abs(online.score - offline.score) <= 1e-6, online.transaction_id
    assert online.decision == offline.decision
    assert online.reasons == offline.reasons
    assert online.model_version == offline.model_version
    assert online.late == offline.late


def scrape(port: int) -> dict[str, float]:
    """Every sample of /metrics as 'name{labels}' -> value (labels sorted, as exported)."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return samples


def wait_for_metrics(
    port: int, ready: Callable[[dict[str, float]], bool], timeout_s: float = 30
) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            samples = scrape(port)
        except OSError:
            samples = {}
        if ready(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(
                f"metrics on port {port} not as expected within {timeout_s} s: {samples}"
            )
        time.sleep(0.2)


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("user_cache", [None, 40], ids=["all-users-cached", "cache-of-40-users"])
def test_replayed_traffic_scores_exactly_as_offline(stack: Stack, user_cache: int | None) -> None:
    """Every score equals `fraudstream score`'s; with a tiny user cache too, so users dropped
    from memory and read back from the table mid-replay give the same features."""
    if user_cache is not None:
        stack.extra_env["FRAUD_USER_CACHE_SIZE"] = str(user_cache)
    expected = offline_scores(stack, TRAFFIC, LABELS)
    worker = stack.start_worker()
    try:
        stack.replay(LABELS, "labels")
        stack.replay(TRAFFIC)
        online = wait_for_scores(stack, set(expected))
    finally:
        assert stop(worker) == 0, stack.worker_logs()[-3000:]
    assert set(online) == set(expected)
    for transaction_id, copies in online.items():
        assert len(copies) == 1, f"{transaction_id} scored {len(copies)} times"
        assert_same(copies[0], expected[transaction_id])
    # The labels really fed the merchant risk features.
    assert any(s.features["merchant_fraud_rate_30d"] > 0 for s in expected.values())


def test_bad_messages_become_dead_letters_and_the_rest_is_scored(
    stack: Stack, tmp_path: Path
) -> None:
    good = TRAFFIC.read_bytes().splitlines()[:300]
    bad = [
        b"{not json",
        b'{"transaction_id":"x1","user_id":"u1","merchant_id":"m1","amount":"12","timestamp":"2024-01-01T00:00:00Z"}',
        b'{"transaction_id":"x2","user_id":"u1","merchant_id":"m1","amount":-5,"timestamp":"2024-01-01T00:00:00Z"}',
        b'{"transaction_id":"x3","user_id":"u1","merchant_id":"m1","amount":NaN,"timestamp":"2024-01-01T00:00:00Z"}',
        b'{"transaction_id":"x4","user_id":"u1","amount":5.0,"timestamp":"2024-01-01T00:00:00Z"}',
    ]
    mixed = tmp_path / "mixed.jsonl"
    lines = []
    for i, line in enumerate(good):
        lines.append(line)
        if i % 60 == 0 and bad:
            lines.append(bad.pop())
    mixed.write_bytes(b"\n".join(lines) + b"\n")
    port = free_port()
    stack.extra_env["FRAUD_METRICS_PORT"] = str(port)
    worker = stack.start_worker()
    try:
        stack.replay(mixed, send_invalid=True)
        producer = Producer(stack.broker.client_config())
        producer.produce(stack.topics["transactions"], value=b"\xff\xfe\x00 not utf-8", key=b"u9")
        producer.produce(stack.topics["transactions"], value=b"{" + b" " * 70_000 + b"}")
        assert producer.flush(10) == 0
        ids = {json.loads(line)["transaction_id"] for line in good}
        online = wait_for_scores(stack, ids)
        letters = collect(
            stack.broker,
            stack.topics["transactions-dlq"],
            lambda m: len(m) >= 7,
            60,
            "7 dead letters",
            stack.worker_logs,
        )
        metrics = wait_for_metrics(
            port, lambda m: m.get("fraudstream_transactions_scored_total") == 300
        )
        health = {path: http_status(port, path) for path in ("/healthz", "/readyz", "/nope")}
    finally:
        assert stop(worker) == 0
    # The worker's metrics moved by exactly what went through it.
    assert metrics["fraudstream_transactions_consumed_total"] == 307
    assert {k: v for k, v in metrics.items() if k.startswith("fraudstream_dead_letters_total")} == {
        'fraudstream_dead_letters_total{reason="invalid_event"}': 4,
        'fraudstream_dead_letters_total{reason="invalid_json"}': 1,
        'fraudstream_dead_letters_total{reason="not_utf8"}': 1,
        'fraudstream_dead_letters_total{reason="oversized"}': 1,
        'fraudstream_dead_letters_total{reason="duplicate"}': 0,
        'fraudstream_dead_letters_total{reason="unscorable"}': 0,
    }
    decisions = sum(v for k, v in metrics.items() if k.startswith("fraudstream_decisions_total{"))
    assert decisions == 300
    assert metrics["fraudstream_end_to_end_latency_seconds_count"] == 300
    assert metrics["fraudstream_score_count"] == 300
    assert metrics["fraudstream_scoring_batch_size_sum"] == 300
    assert metrics['fraudstream_model_info{shadow_version="",version="v1"}'] == 1
    assert health == {"/healthz": 200, "/readyz": 200, "/nope": 404}
    assert set(online) == ids
    parsed = [DeadLetter.model_validate_json(m.value()) for m in letters]
    reasons = sorted(d.reason for d in parsed)
    assert reasons == sorted(
        [
            "invalid_json",
            "invalid_event",
            "invalid_event",
            "invalid_event",
            "invalid_event",
            "not_utf8",
            "oversized",
        ]
    )
    missing = next(d for d in parsed if "merchant_id" in d.error)
    assert "Field required" in missing.error
    assert all(d.topic == stack.topics["transactions"] and d.offset >= 0 for d in parsed)
    assert next(d for d in parsed if d.reason == "not_utf8").original_key is not None


@pytest.mark.reliability
def test_killed_worker_restarts_from_its_changelog_and_loses_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    expected = offline_scores(stack, TRAFFIC, None)
    lines = TRAFFIC.read_bytes().splitlines()
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(b"\n".join(lines[:3000]) + b"\n")
    second.write_bytes(b"\n".join(lines[3000:]) + b"\n")
    first_ids = {json.loads(line)["transaction_id"] for line in lines[:3000]}

    worker = stack.start_worker("a")
    stack.replay(first)
    wait_for_scores(stack, first_ids)
    stop(worker, signal.SIGKILL)  # no clean shutdown: uncommitted work is redelivered

    worker = stack.start_worker("b")
    try:
        stack.replay(second)
        online = wait_for_scores(stack, set(expected))
    finally:
        assert stop(worker) == 0
    for transaction_id, copies in online.items():
        for copy in copies:  # a redelivered transaction carries the identical score
            assert_same(copy, expected[transaction_id])


def test_two_workers_share_the_partitions_and_score_everything(stack: Stack) -> None:
    expected = offline_scores(stack, TRAFFIC, None)
    workers = [stack.start_worker("a"), stack.start_worker("b")]
    try:
        stack.replay(TRAFFIC)
        online = wait_for_scores(stack, set(expected))
    finally:
        codes = [stop(w) for w in workers]
    assert codes == [0, 0]
    for transaction_id, copies in online.items():
        for copy in copies:
            assert_same(copy, expected[transaction_id])
    logs = stack.worker_logs()
    assert "Traceback" not in logs, logs[-3000:]


def test_out_of_order_transactions_update_their_own_windows(stack: Stack, tmp_path: Path) -> None:
    base = {"user_id": "u-ooo", "merchant_id": "m1", "currency": "EUR"}
    rows = [
        ("o1", "2024-03-01T10:00:00Z", 10.0),
        ("o2", "2024-03-01T10:30:00Z", 20.0),
        ("o3", "2024-03-01T10:25:00Z", 40.0),  # 5 minutes late: within the allowed lateness
        ("o4", "2024-03-01T10:40:00Z", 80.0),
        ("o5", "2024-03-01T09:00:00Z", 160.0),  # 100 minutes late: beyond it
        ("o6", "2024-03-01T10:45:00Z", 1.0),
    ]
    recording = tmp_path / "ooo.jsonl"
    recording.write_text(
        "\n".join(
            json.dumps({"transaction_id": i, **base, "amount": a, "timestamp": t})
            for i, t, a in rows
        )
        + "\n"
    )
    worker = stack.start_worker()
    try:
        stack.replay(recording)
        online = wait_for_scores(stack, {r[0] for r in rows})
    finally:
        stop(worker)
    by_id = {k: v[0] for k, v in online.items()}
    # o3 lands in its own (earlier) time: its 1 h window holds o1 and itself, not o2.
    assert by_id["o3"].features["user_tx_count_1h"] == 2
    assert by_id["o3"].late is False
    # o5 is too late: scored and flagged, but not stored.
    assert by_id["o5"].late is True
    # o6 sees o1..o4 in its hour window (o3 was stored, o5 was not).
    assert by_id["o6"].features["user_tx_count_1h"] == 5
    assert by_id["o6"].features["user_amount_sum_1h"] == 151.0
