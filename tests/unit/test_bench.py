"""The benchmark's pure helpers; a real (quick) run is marked `bench` and skipped by default."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fraudstream.bench import (
    BenchConfig,
    Received,
    comparison_rows,
    latency_summary,
    machine_facts,
    percentile,
    rate_between,
    render,
    rss_bytes,
    write_result,
)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0) == 1.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input


@pytest.mark.parametrize("q", [-1, 101])
def test_percentile_rejects_bad_q(q: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], q)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_latency_summary() -> None:
    summary = latency_summary([10.0, 20.0, 30.0, 40.0])
    assert summary == {"n": 4, "p50": 20.0, "p95": 40.0, "p99": 40.0, "max": 40.0}
    assert latency_summary([])["p50"] is None


def test_rate_between_counts_intervals_not_messages() -> None:
    assert rate_between(10.0, 12.0, 5) == 2.0  # 4 intervals in 2 s
    assert rate_between(None, 1.0, 5) is None
    assert rate_between(1.0, 1.0, 5) is None
    assert rate_between(1.0, 2.0, 1) is None


def test_received_keeps_first_receipt_of_duplicates() -> None:
    received = Received()
    received.add("a", 1.0)
    received.add("b", 2.0)
    received.add("a", 3.0)  # redelivered (at-least-once): ignored
    assert received.at == {"a": 1.0, "b": 2.0}
    assert (received.first_s, received.last_s) == (1.0, 2.0)
    assert received.rate() == 1.0


def _result() -> dict[str, object]:
    return {
        "floor": {"backlog_events_per_s": 40000.0, "latency_ms": {"p50": 10.0, "p99": 20.0}},
        "faust": {"backlog_events_per_s": 4000.0},
        "pipeline": {
            "backlog_events_per_s": 2000.0,
            "latency_ms": {"p50": 50.0, "p99": 100.0},
            "rss_mb": {"first_score": 200.0, "after_backlog": 210.0, "after_paced": 211.0},
        },
    }


def test_comparison_rows_give_pipeline_ratios() -> None:
    rows = {row.metric: row for row in comparison_rows(_result())}
    throughput = rows["backlog throughput"]
    assert throughput.vs_floor == pytest.approx(0.05)
    assert throughput.vs_faust == pytest.approx(0.5)
    assert rows["latency p50"].vs_floor == pytest.approx(5.0)
    assert rows["latency p50"].vs_faust is None  # no Faust latency measured
    assert rows["latency p95"].vs_floor is None  # missing values stay missing
    assert throughput.to_dict()["pipeline_over_floor"] == pytest.approx(0.05)


def test_comparison_rows_of_a_partial_result() -> None:
    rows = comparison_rows({"pipeline": {"backlog_events_per_s": 10.0}})
    assert rows[0].pipeline == 10.0
    assert rows[0].vs_floor is None


def test_render_builds_tables() -> None:
    tables = render(_result())
    assert len(tables) == 2  # comparison and memory; no components in this result


def test_write_result_creates_a_new_file_each_time(tmp_path: Path) -> None:
    result = {"kind": "fraudstream-bench", "machine": machine_facts()}
    first = write_result(result, tmp_path / "results")
    second = write_result(result, tmp_path / "results")
    assert first != second
    saved = json.loads(first.read_text())
    assert saved["kind"] == "fraudstream-bench"
    assert saved["machine"]["cpu_count"] == os.cpu_count()
    assert "python" in saved["machine"] and "versions" in saved["machine"]


def test_rss_of_this_process() -> None:
    rss = rss_bytes(os.getpid())
    assert rss is not None and rss > 1024 * 1024
    assert rss_bytes(2**22 + 12345) is None  # no such process


def test_quick_config_is_smaller() -> None:
    quick, full = BenchConfig.quick(), BenchConfig()
    assert quick.backlog < full.backlog
    assert quick.paced < full.paced


@pytest.mark.bench
def test_quick_run_measures_every_phase() -> None:
    from fraudstream.bench import run

    result = run(BenchConfig.quick())
    for phase in ("floor", "faust", "pipeline"):
        assert result[phase]["backlog_events_per_s"] > 0
    for phase in ("floor", "pipeline"):
        assert result[phase]["latency_ms"]["n"] == BenchConfig.quick().paced
    assert result["pipeline"]["rss_mb"]["after_paced"] > 0
    assert result["components"]["scoring"]["500"]["us_per_row"] > 0


def test_saturation_is_noted_when_offered_load_exceeds_throughput() -> None:
    from fraudstream.bench import saturation_notes

    notes = saturation_notes(_result(), offered_per_s=3000.0)
    assert len(notes) == 1 and notes[0].startswith("pipeline:")
    assert saturation_notes(_result(), offered_per_s=1000.0) == []


def test_many_user_records_add_one_new_user_each() -> None:
    from fraudstream.bench import Record, many_user_records

    template = Record(
        "tx1",
        b"u1",
        b'{"transaction_id":"tx1","user_id":"u1","merchant_id":"m7","amount":12.5,'
        b'"currency":"EUR","timestamp":"2018-04-01T00:23:54Z"}',
        1522542234000,
    )
    records = many_user_records([template], 3, start_ms=1522542300000)
    documents = [json.loads(r.value) for r in records]
    assert {d["user_id"] for d in documents} == {r.key.decode() for r in records if r.key}
    assert len({d["user_id"] for d in documents}) == 3
    assert [r.timestamp_ms for r in records] == [1522542300000, 1522542300001, 1522542300002]
    assert documents[1]["timestamp"] == "2018-04-01T00:25:00.001+00:00"
    assert all(d["merchant_id"] == "m7" and d["amount"] == 12.5 for d in documents)
    from schemas.events import Transaction

    for document in documents:
        Transaction.model_validate(document)  # still a valid transaction


def test_render_reports_an_incomplete_many_users_run() -> None:
    from rich.console import Console

    result = _result()
    pipeline = result["pipeline"]
    assert isinstance(pipeline, dict)
    pipeline["many_users"] = {"users": 1000, "scored": 400, "complete": False, "events_per_s": 9.0}
    pipeline["rss_mb"]["after_many_users"] = 300.0
    console = Console(width=200, record=True)
    for table in render(result):
        console.print(table)
    text = console.export_text()
    assert "only 400 scored in time" in text
    assert "300.0" in text
