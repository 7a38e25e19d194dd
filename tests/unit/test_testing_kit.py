"""fraudstream.testing without a broker: golden files, score copies, replay records, services'
exit codes, the plugin's skip and marker, and that importing the plugin stays cheap."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import fraudstream.testing.golden
import fraudstream.testing.recordings
import fraudstream.testing.scores
from fraudstream.broker import free_port
from fraudstream.testing import (
    Broker,
    BrokerUnavailable,
    Copy,
    GoldenMismatch,
    KitSettings,
    Scores,
    Stack,
    assert_matches_golden,
    compare,
    open_broker,
    read_golden,
    write_golden,
)
from fraudstream.testing.recordings import is_labels, records
from fraudstream.testing.scores import read_all
from fraudstream.testing.stack import base_environment
from schemas.errors import InputError
from schemas.events import FraudScore, Transaction

HEAVY = ("faust", "xgboost", "confluent_kafka", "aiokafka", "sklearn")


def score(
    transaction_id: str, value: float, decision: str = "approve", **changes: object
) -> FraudScore:
    base: dict[str, object] = {
        "transaction_id": transaction_id,
        "user_id": "u1",
        "score": value,
        "decision": decision,
        "model_version": "v1",
        "reasons": [],
        "features": {"amount": 1.0},
        "event_time": datetime(2024, 1, 1, tzinfo=UTC),
        "scored_at": datetime(2024, 1, 1, tzinfo=UTC),
        "latency_ms": 1.0,
    }
    return FraudScore.model_validate({**base, **changes}, strict=False)


@pytest.mark.parametrize("module", ["fraudstream.testing.plugin", "fraudstream.testing"])
def test_importing_the_kit_loads_no_heavy_library(module: str) -> None:
    code = f"import sys, {module}; print([m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("module", [fraudstream.testing.golden, fraudstream.testing.recordings])
def test_the_doctests_of_the_kit_run_and_pass(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted >= 2 and result.failed == 0


# -- golden files --------------------------------------------------------------------------
def test_golden_files_round_trip_and_report_what_changed(tmp_path: Path) -> None:
    golden = write_golden([score("t1", 0.1), score("t2", 0.9, "decline")], tmp_path / "g.jsonl")
    assert [json.loads(line)["transaction_id"] for line in golden.read_text().splitlines()] == [
        "t1",
        "t2",
    ]
    assert_matches_golden([score("t2", 0.9 + 1e-9, "decline"), score("t1", 0.1)], golden)
    with pytest.raises(GoldenMismatch) as failed:
        assert_matches_golden([score("t1", 0.3), score("t3", 0.5)], golden, tolerance=0.01)
    report = str(failed.value)
    assert "3 of 3 transactions differ" in report
    assert "t1: 0.100000 -> 0.300000 (+0.200000)" in report
    assert "in the golden file, not scored (1):\n    t2" in report
    assert "scored, not in the golden file (1):\n    t3" in report
    assert "--fraudstream-update-golden" in report


def test_a_missing_golden_file_is_written_and_fails_once(tmp_path: Path) -> None:
    path = tmp_path / "new" / "golden.jsonl"
    with pytest.raises(GoldenMismatch, match="no golden file yet"):
        assert_matches_golden([score("t1", 0.2)], path)
    assert_matches_golden([score("t1", 0.2)], path)  # now it exists and matches
    assert_matches_golden([score("t1", 0.7, "review")], path, update=True)
    assert read_golden(path)["t1"]["decision"] == "review"


def test_a_fraud_score_file_serves_as_golden_and_bad_lines_are_named(tmp_path: Path) -> None:
    scored = tmp_path / "scores.jsonl"
    scored.write_text(score("t1", 0.4, "review").model_dump_json() + "\n")
    assert read_golden(scored) == {
        "t1": {"decision": "review", "score": 0.4, "model_version": "v1"}
    }
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"transaction_id": "t1", "score": 0.4}\n')
    with pytest.raises(InputError, match=r"broken\.jsonl:1: not a golden line"):
        read_golden(broken)


def test_the_report_stops_after_its_limit() -> None:
    now = {f"t{i}": {"decision": "review", "score": 0.5} for i in range(30)}
    then = {f"t{i}": {"decision": "approve", "score": 0.5} for i in range(30)}
    report = compare(now, then).report(limit=5)
    assert report.count(": approve -> review") == 5 and "... and 25 more" in report


# -- every copy of every score -------------------------------------------------------------
def test_scores_keep_every_copy_and_check_that_copies_agree() -> None:
    first = score("t1", 0.2)
    again = score("t1", 0.2, scored_at=datetime(2024, 1, 2, tzinfo=UTC), latency_ms=9.0)
    scores = Scores(
        [Copy(first, 0, 5, b"u1"), Copy(again, 0, 9, b"u1"), Copy(score("t2", 0.1), 1, 0, None)]
    )
    assert len(scores) == 2 and scores.duplicates() == {"t1": 2}
    assert scores.decisions() == {"t1": "approve", "t2": "approve"}  # timing may differ
    assert scores.versions() == {"v1": 3}
    with pytest.raises(AssertionError, match="scored more than once"):
        scores.single()
    differing = Scores([Copy(first, 0, 5, None), Copy(score("t1", 0.3), 0, 9, None)])
    with pytest.raises(AssertionError, match="copies that differ"):
        differing.decisions()


class _Message:
    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> None:
        return None


class _TansuLikeConsumer:
    """Partitions of 50-record batches; ListOffsets answers the last batch's first offset plus
    one, fetches carry the true end; each consume hands over `piece` messages (a record
    producer may keep writing: `more` records land on partition 0 on every consume)."""

    def __init__(self, sizes: dict[int, int], piece: int, more: int = 0) -> None:
        self.sizes, self.piece, self.more = dict(sizes), piece, more
        self.read = dict.fromkeys(sizes, 0)

    def assignment(self) -> list[Any]:
        return [SimpleNamespace(partition=p) for p in self.sizes]

    def get_watermark_offsets(self, tp: Any, timeout: float = 0, cached: bool = False) -> Any:
        size = self.sizes[tp.partition]
        if cached:
            return (0, size if self.read[tp.partition] else -1001)
        return (0, (size - 1) // 50 * 50 + 1 if size else 0)

    def consume(self, count: int, timeout: float) -> list[_Message]:
        self.sizes[0] += self.more
        for p, size in self.sizes.items():
            if self.read[p] < size:
                start = self.read[p]
                self.read[p] = min(size, start + self.piece)
                return [_Message(p, o) for o in range(start, self.read[p])]
        return []

    def close(self) -> None: ...


def test_read_all_reads_to_the_true_end_when_the_listed_end_is_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = _TansuLikeConsumer({0: 120, 1: 0, 2: 37}, piece=7)
    monkeypatch.setattr(fraudstream.testing.scores, "_reader", lambda *_: consumer)
    got = read_all({}, "scores")
    assert sorted((m.partition(), m.offset()) for m in got) == [
        *((0, o) for o in range(120)),
        *((2, o) for o in range(37)),
    ]


def test_read_all_stops_at_the_ends_of_now_while_records_keep_coming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = _TansuLikeConsumer({0: 120}, piece=7, more=3)
    monkeypatch.setattr(fraudstream.testing.scores, "_reader", lambda *_: consumer)
    got = read_all({}, "scores", timeout_s=5)
    assert 120 <= len(got) < consumer.sizes[0]


# -- replay records ------------------------------------------------------------------------
def test_events_of_every_form_become_keyed_timed_records() -> None:
    tx = {
        "transaction_id": "t1",
        "user_id": "u7",
        "merchant_id": "m1",
        "amount": 5.0,
        "timestamp": "2024-01-01T00:00:01Z",
    }
    model = Transaction.model_validate_json(json.dumps({**tx, "transaction_id": "t2"}))
    made = list(records([tx, model, json.dumps(tx).encode(), json.dumps(tx)]))
    assert {r.key for r in made} == {b"u7"}
    assert {r.timestamp_ms for r in made} == {1704067201000}
    assert not is_labels([tx]) and is_labels([{"transaction_id": "t1", "is_fraud": True}])
    with pytest.raises(InputError, match="event 2: not a JSON object"):
        list(records([tx, b"[]"]))
    assert len(list(records([tx, b"[]"], send_invalid=True))) == 2


# -- services and their exit codes ---------------------------------------------------------
def offline_stack(tmp_path: Path) -> Stack:
    """A stack whose services need no broker (commands that fail on their input)."""
    broker = Broker(f"127.0.0.1:{free_port()}", "external")
    return Stack(broker, {"transactions": "t"}, "app-x", tmp_path / "registry", tmp_path)


def test_a_service_stopped_with_an_unexpected_exit_code_fails(tmp_path: Path) -> None:
    stack = offline_stack(tmp_path)
    failing = stack.start("score", "score", "--transactions", "missing.jsonl", "--out", "o.jsonl")
    failing.popen.wait(timeout=60)  # it ends by itself; stop() must still check how
    with pytest.raises(AssertionError, match=r"score exited with 2, expected 0") as failed:
        failing.stop()
    assert "missing.jsonl: file not found" in str(failed.value)  # its log, for the reader
    assert failing.observed and stack.close() == []


def test_close_reports_a_service_that_died_unobserved(tmp_path: Path) -> None:
    stack = offline_stack(tmp_path)
    stack.start("score", "score", "--transactions", "missing.jsonl", "--out", "o.jsonl")
    stack.processes[0].popen.wait(timeout=60)
    problems = stack.close()
    assert len(problems) == 1 and "score exited by itself with 2" in problems[0]


def test_services_get_the_stack_environment_and_nothing_from_the_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_BATCH_MAX", "1")
    assert "FRAUD_BATCH_MAX" not in base_environment()
    stack = offline_stack(tmp_path)
    stack.extra_env["FRAUD_USER_CACHE_SIZE"] = "40"
    env = stack.env()
    assert env["FRAUD_KAFKA_BOOTSTRAP"] == stack.broker.bootstrap
    assert env["FRAUD_TOPIC_TRANSACTIONS"] == "t" and env["FRAUD_APP_ID"] == "app-x"
    settings = stack.settings()
    assert (settings.user_cache_size, settings.state_dir) == (40, tmp_path)


# -- no broker -----------------------------------------------------------------------------
def test_an_external_broker_must_be_named_and_answer(tmp_path: Path) -> None:
    with pytest.raises(BrokerUnavailable, match="needs FRAUDSTREAM_TEST_BOOTSTRAP"):
        open_broker(tmp_path, KitSettings(broker="external")).__enter__()
    silent = KitSettings(bootstrap=f"127.0.0.1:{free_port()}", connect_timeout_s=0.5)
    with pytest.raises(BrokerUnavailable, match="nothing answers at FRAUDSTREAM_TEST_BOOTSTRAP"):
        open_broker(tmp_path, silent).__enter__()


NEEDS_BROKER = """
    def test_with_a_broker(fraudstream_broker):
        assert fraudstream_broker.bootstrap

    def test_without_one():
        assert True
"""


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (project / "test_needs_broker.py").write_text(textwrap.dedent(NEEDS_BROKER))
    env = base_environment() | {
        "FRAUDSTREAM_TEST_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nothing listens there
        "FRAUDSTREAM_TEST_CONNECT_TIMEOUT_S": "0.5",
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *args],
        cwd=project,
        env={k: v for k, v in env.items() if k != "PYTEST_ADDOPTS"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_a_broker_the_plugin_skips_saying_why(tmp_path: Path) -> None:
    done = run_pytest(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 1 skipped" in done.stdout
    assert "no Kafka broker for fraudstream's fixtures: nothing answers at" in done.stdout


def test_the_plugin_can_insist_on_a_broker_and_marks_the_tests_that_need_one(
    tmp_path: Path,
) -> None:
    strict = run_pytest(tmp_path, "-o", "fraudstream_require_broker=true")
    assert strict.returncode == 1 and "1 passed, 1 error" in strict.stdout, strict.stdout
    deselected = run_pytest(tmp_path, "-m", "not fraudstream")
    assert "1 passed, 1 deselected" in deselected.stdout, deselected.stdout


USES_REGISTRY = """
    def test_registry(fraudstream_registry):
        assert fraudstream_registry.name == "given"
"""


def test_a_registry_can_be_given_on_the_command_line_or_in_the_ini_file(tmp_path: Path) -> None:
    (tmp_path / "given").mkdir()
    (tmp_path / "test_registry.py").write_text(textwrap.dedent(USES_REGISTRY))
    for args in (
        ["--fraudstream-registry", str(tmp_path / "given")],
        ["-o", "fraudstream_registry=given"],
    ):
        done = run_pytest(tmp_path, "test_registry.py", *args)
        assert "1 passed" in done.stdout, done.stdout
    missing = run_pytest(tmp_path, "test_registry.py", "--fraudstream-registry", "nowhere")
    assert "fraudstream registry nowhere is not a directory" in missing.stdout, missing.stdout


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    from importlib.metadata import entry_points

    found = [e.value for e in entry_points(group="pytest11") if e.name == "fraudstream"]
    assert found == ["fraudstream.testing.plugin"]
    assert os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") is None
