"""The scoring worker on a real broker: parity with offline scoring, dead letters, restarts,
several workers, out-of-order traffic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka import Producer

from fraudstream.testing import Scores, Stack
from fraudstream.testing.process import http_status
from models.fraud_labels import attributed_frauds
from models.registry import ModelRegistry
from models.scoring import Scorer, score_offline
from schemas.events import FraudScore, Label, Transaction
from schemas.jsonl import read_events

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data"
TRAFFIC = DATA / "traffic.jsonl"
LABELS = DATA / "traffic_labels.jsonl"


def offline_scores(stack: Stack, traffic: Path, labels: Path | None) -> dict[str, FraudScore]:
    scorer = Scorer.from_loaded(ModelRegistry(stack.registry, "fraud-xgb").load())
    txs = read_events(traffic, Transaction).records
    frauds = attributed_frauds(read_events(labels, Label).records).frauds if labels else None
    return {s.transaction_id: s for s in score_offline(txs, scorer, frauds)}


def wait_for_scores(stack: Stack, ids: set[str], timeout_s: float = 120) -> Scores:
    """Every score published once `ids` are covered; each keyed by its user."""
    scores = stack.scores(ids, timeout=timeout_s)
    assert all(c.key == c.score.user_id.encode() for c in scores.copies)
    return scores


def assert_same(online: FraudScore, offline: FraudScore) -> None:
    assert online.features == offline.features, online.transaction_id
    assert abs(online.score - offline.score) <= 1e-6, online.transaction_id
    assert online.decision == offline.decision
    assert online.reasons == offline.reasons
    assert online.model_version == offline.model_version
    assert online.late == offline.late


@pytest.mark.parametrize(
    ("user_cache", "store"),
    [(None, None), (40, None), (40, "rocksdb://")],
    ids=["all-users-cached", "cache-of-40-users", "cache-of-40-users-rocksdb"],
)
def test_replayed_traffic_scores_exactly_as_offline(
    fraudstream_stack: Stack, user_cache: int | None, store: str | None
) -> None:
    """Every score equals `fraudstream score`'s; with a tiny user cache too, so users dropped
    from memory and read back from the table mid-replay give the same features (from the
    in-memory table, and from RocksDB)."""
    stack = fraudstream_stack
    if user_cache is not None:
        stack.extra_env["FRAUD_USER_CACHE_SIZE"] = str(user_cache)
    if store is not None:
        stack.extra_env["FRAUD_WORKER_STORE"] = store
    expected = offline_scores(stack, TRAFFIC, LABELS)
    # The recording first, then the worker: it reads complete input, as `fraudstream score`
    # does (the two-worker test replays into running workers instead).
    stack.replay(LABELS, "labels")
    stack.replay(TRAFFIC)
    worker = stack.start_worker()
    online = wait_for_scores(stack, set(expected))
    worker.stop()  # exit code 0 asserted
    assert set(online) == set(expected)
    for transaction_id, score in online.single().items():
        assert_same(score, expected[transaction_id])
    # The labels really fed the merchant risk features.
    assert any(s.features["merchant_fraud_rate_30d"] > 0 for s in expected.values())
    # Faust's data directory went to the state directory, not the current one.
    assert (stack.state_dir / f"{stack.app_id}-data").is_dir()
    assert not (Path.cwd() / f"{stack.app_id}-data").exists()


def test_bad_messages_become_dead_letters_and_the_rest_is_scored(
    fraudstream_stack: Stack, tmp_path: Path
) -> None:
    stack = fraudstream_stack
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
    worker = stack.start_worker()
    port = worker.metrics_port or 0
    stack.replay(mixed, send_invalid=True)
    producer = Producer(stack.broker.client_config())
    producer.produce(stack.topics["transactions"], value=b"\xff\xfe\x00 not utf-8", key=b"u9")
    producer.produce(stack.topics["transactions"], value=b"{" + b" " * 70_000 + b"}")
    assert producer.flush(10) == 0
    ids = {json.loads(line)["transaction_id"] for line in good}
    online = wait_for_scores(stack, ids)
    parsed = stack.dead_letters(7)
    metrics = worker.wait_for_metrics(
        lambda m: m.get("fraudstream_transactions_scored_total") == 300
    )
    health = {path: http_status(port, path) for path in ("/healthz", "/readyz", "/nope")}
    worker.stop()
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
    assert metrics["fraudstream_transactions_redelivered_total"] == 0  # nothing read twice
    assert health == {"/healthz": 200, "/readyz": 200, "/nope": 404}
    assert set(online) == ids
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


def committed_offsets(stack: Stack) -> dict[int, int]:
    """Offsets the workers' consumer group has committed on `transactions`, by partition."""
    from confluent_kafka import Consumer, TopicPartition

    topic = stack.topics["transactions"]
    consumer = Consumer({**stack.broker.client_config(), "group.id": stack.app_id})
    try:
        asked = [TopicPartition(topic, p) for p in range(stack.partitions)]
        return {
            tp.partition: tp.offset
            for tp in consumer.committed(asked, timeout=10)
            if tp.offset >= 0
        }
    finally:
        consumer.close()


@pytest.mark.reliability
@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_kill_9_with_records_in_flight_redelivers_them_with_identical_scores(
    fraudstream_stack: Stack, store: str
) -> None:
    """A worker killed mid-backlog, nothing committed: its successor reads everything again,
    answers what was already applied from the journal (counted), and loses nothing — with the
    users' table in memory (rebuilt from the changelog) or in RocksDB (kept on disk)."""
    stack = fraudstream_stack
    stack.extra_env["FRAUD_WORKER_STORE"] = store
    expected = offline_scores(stack, TRAFFIC, None)
    sent = stack.replay(TRAFFIC)
    # Worker a never commits (an hour between commits): all it scored is uncommitted when it
    # dies, with the rest of the backlog sent but not yet scored (in flight). It scores one
    # transaction per model call: at full speed it once finished the whole backlog between the
    # 1,000th score and the kill. It writes users' records after every micro-batch (no
    # write-behind), so some of what it scored is in the table: the successor answers that
    # from the journal.
    first = stack.start_worker(
        "a",
        env={
            "FRAUD_COMMIT_INTERVAL_S": "3600",
            "FRAUD_BATCH_MAX": "1",
            "FRAUD_USERS_WRITE_BEHIND_S": "0",
        },
    )
    stack.scores(1000)
    first.kill()  # exit code -9 asserted
    scored_by_first = set(stack.all_scores())
    assert 1000 <= len(scored_by_first) < len(expected), "nothing was in flight at the kill"
    assert committed_offsets(stack) == {}, "worker a committed: nothing would be redelivered"

    second = stack.start_worker("b")
    stack.scores(sent, timeout=180)
    metrics = second.wait_for_metrics(
        lambda m: m.get("fraudstream_transactions_scored_total", 0) >= len(expected)
    )
    second.stop()
    redelivered = metrics["fraudstream_transactions_redelivered_total"]
    # Answered from the journal: the transactions whose users' records worker a had written.
    # That can include a few whose scores never left its producer (the two go to different
    # topics, in different requests): b publishes those once, from the journal.
    assert 0 < redelivered < len(expected), (redelivered, len(scored_by_first))
    scores = stack.all_scores()
    # Exactly what worker a had published was published again, once, and identically.
    assert set(scores.duplicates()) == scored_by_first
    assert set(scores.duplicates().values()) == {2}
    assert set(scores) == set(expected)
    scores.assert_copies_identical()
    for transaction_id, copies in scores.items():
        for copy in copies:
            assert_same(copy, expected[transaction_id])


def read_by_role(samples: dict[str, float]) -> dict[str, float]:
    prefix = 'fraudstream_messages_read_total{role="'
    return {k[len(prefix) : -2]: v for k, v in samples.items() if k.startswith(prefix)}


def test_two_workers_share_the_partitions_and_score_everything(fraudstream_stack: Stack) -> None:
    """Two running workers, then traffic with labels: each parses about its share of the input
    (not all of it, as a per-worker merchant replica did), both read the merchant log, and every
    score equals the offline one, labels' merchant fraud rates included."""
    stack = fraudstream_stack
    expected = offline_scores(stack, TRAFFIC, LABELS)
    workers = [stack.start_worker("a", wait_ready=False), stack.start_worker("b")]
    workers[0].wait_ready()
    labels = stack.replay(LABELS, "labels").sent
    sent = stack.replay(TRAFFIC).sent
    online = wait_for_scores(stack, set(expected))
    read = [
        read_by_role(w.wait_for_metrics(lambda m: read_by_role(m).get("tx", 0) > 0))
        for w in workers
    ]
    for worker in workers:
        worker.stop()  # exit code 0 asserted
    for transaction_id, copies in online.items():
        for copy in copies:
            assert_same(copy, expected[transaction_id])
    assert any(s.features["merchant_fraud_rate_30d"] > 0 for s in expected.values())
    print(f"messages read per worker by role: {read} (sent {sent} transactions, {labels} labels)")
    total = sum(r["tx"] for r in read)
    assert sent <= total <= sent * 1.2, f"transactions read {total} for {sent} sent: {read}"
    for r in read:
        assert 0.2 * sent <= r["tx"] <= 0.8 * sent, f"one worker parsed most transactions: {read}"
        assert r.get("merchant_log", 0) > 0, f"a worker never read the merchant log: {read}"
    assert sum(r.get("labels", 0) for r in read) <= labels * 1.2
    logs = stack.logs()
    assert "Traceback" not in logs, logs[-3000:]


def test_out_of_order_transactions_update_their_own_windows(
    fraudstream_stack: Stack, tmp_path: Path
) -> None:
    stack = fraudstream_stack
    base = {"user_id": "u-ooo", "merchant_id": "m1", "currency": "EUR"}
    rows = [
        ("o1", "2024-03-01T10:00:00Z", 10.0),
        ("o2", "2024-03-01T10:30:00Z", 20.0),
        ("o3", "2024-03-01T10:25:00Z", 40.0),  # 5 minutes late: within the allowed lateness
        ("o4", "2024-03-01T10:40:00Z", 80.0),
        ("o5", "2024-03-01T09:00:00Z", 160.0),  # 100 minutes late: beyond it
        ("o6", "2024-03-01T10:45:00Z", 1.0),
    ]
    sent = stack.replay(
        {"transaction_id": i, **base, "amount": a, "timestamp": t} for i, t, a in rows
    )
    worker = stack.start_worker()
    by_id = stack.scores(sent).single()
    worker.stop()
    # o3 lands in its own (earlier) time: its 1 h window holds o1 and itself, not o2.
    assert by_id["o3"].features["user_tx_count_1h"] == 2
    assert by_id["o3"].late is False
    # o5 is too late: scored and flagged, but not stored.
    assert by_id["o5"].late is True
    # o6 sees o1..o4 in its hour window (o3 was stored, o5 was not).
    assert by_id["o6"].features["user_tx_count_1h"] == 5
    assert by_id["o6"].features["user_amount_sum_1h"] == 151.0
