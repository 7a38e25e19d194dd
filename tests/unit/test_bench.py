"""The benchmark's statistics, matching and configuration; a real quick run is marked `bench`
(skipped by default)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from fraudstream.bench import BenchConfig, machine_facts, percentile, rss_bytes, write_result
from fraudstream.bench.lag import LagSample, keep_up
from fraudstream.bench.matching import match
from fraudstream.bench.stats import latency_summary, rate_after_head, rate_between, ratio


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
    assert summary == {"n": 4, "lost": 0, "p50": 20.0, "p95": 40.0, "p99": 40.0, "max": 40.0}
    assert latency_summary([])["p50"] is None


def test_lost_messages_count_as_slower_than_all_others() -> None:
    received = [float(v) for v in range(1, 98)]  # 97 arrived, 3 lost
    summary = latency_summary(received, missing=3)
    assert summary["p50"] == 50.0
    assert summary["p95"] == 95.0
    assert summary["p99"] is None  # falls among the lost: not a (flattering) number
    assert summary["max"] is None
    assert summary["lost"] == 3
    assert percentile([1.0, math.inf], 100) == math.inf


def test_rates() -> None:
    assert rate_between(10.0, 12.0, 5) == 2.0  # 4 intervals in 2 s
    assert rate_between(None, 1.0, 5) is None
    assert rate_between(1.0, 1.0, 5) is None
    assert rate_between(1.0, 2.0, 1) is None
    # a slow start (first 2 receipts) is discarded: 4 intervals in 1 s after it
    times = [0.0, 5.0, 10.0, 10.25, 10.5, 10.75, 11.0]
    assert rate_after_head(times, 2) == 4.0
    assert rate_after_head(times, 0) == pytest.approx(6 / 11)
    assert rate_after_head(times, 7) is None
    assert ratio(3.0, 0.0) is None and ratio(None, 2.0) is None and ratio(3.0, 2.0) == 1.5


def test_match_discards_the_head_and_counts_the_lost() -> None:
    ids = ["a", "b", "c", "d", "e"]
    sent = [1.0, 1.1, 1.2, 1.3, 1.4]
    received = {"a": 1.5, "b": 1.6, "c": 1.25, "e": 1.45, "zz": 0.0}  # d never arrived
    matched = match(ids, sent, received, head=2)
    assert matched.head == 2 and matched.measured == 3
    assert matched.latencies_ms == pytest.approx([50.0, 50.0])
    assert matched.lost == 1
    everything = match(ids, sent, received, head=0)
    assert everything.latencies_ms[:2] == pytest.approx([500.0, 500.0])  # the warm-up tail
    with pytest.raises(ValueError):
        match(ids, sent[:2], received, head=0)


def _samples(sent_per_s: float, received_per_s: float) -> list[LagSample]:
    return [
        LagSample(t / 4, int(sent_per_s * t / 4), int(received_per_s * t / 4)) for t in range(41)
    ]


def test_keep_up_when_receipts_follow_the_offered_load() -> None:
    verdict = keep_up(_samples(5000, 4990), rate=5000)
    assert verdict["keeps_up"] is True
    assert verdict["served_over_offered"] == pytest.approx(0.998, abs=0.001)
    assert verdict["lag_end"] == 100


def test_no_keep_up_when_the_backlog_grows() -> None:
    verdict = keep_up(_samples(5000, 2000), rate=5000)
    assert verdict["keeps_up"] is False
    assert verdict["served_over_offered"] == pytest.approx(0.4)
    assert verdict["lag_end_s"] == pytest.approx(6.0)


def test_keep_up_needs_samples_and_reports_the_gauge() -> None:
    assert keep_up(_samples(5000, 5000)[:2], rate=5000)["keeps_up"] is None
    samples = [LagSample(s.at_s, s.sent, s.received, gauge=7.0) for s in _samples(10, 10)]
    assert keep_up(samples, rate=10)["gauge_max"] == 7.0


def test_write_result_creates_a_new_file_each_time(tmp_path: Path) -> None:
    result = {"kind": "fraudstream-bench", "machine": machine_facts()}
    first = write_result(result, tmp_path / "results")
    second = write_result(result, tmp_path / "results")
    assert first != second
    saved = json.loads(first.read_text())
    assert saved["machine"]["cpu_count"] == os.cpu_count()
    assert {"python", "versions", "memory_gb", "load_average"} <= saved["machine"].keys()


def test_rss_of_this_process() -> None:
    rss = rss_bytes(os.getpid())
    assert rss is not None and rss > 1024 * 1024
    assert rss_bytes(2**22 + 12345) is None  # no such process


def test_quick_config_is_smaller_and_sized_for_its_phases() -> None:
    quick, full = BenchConfig.quick(), BenchConfig()
    assert quick.backlog < full.backlog and quick.seconds < full.seconds
    assert quick.users < full.users == 1_000_000
    assert full.live_count(1000.0) == (1000, 10_000)
    assert full.records_needed >= full.probe + full.history + sum(full.live_count(5000.0))
    assert full.problems() == []
    assert BenchConfig(partitions=1, rate=0).problems() != []


@pytest.mark.bench
def test_quick_run_measures_every_phase() -> None:
    from fraudstream.bench import run

    result = run(BenchConfig.quick())
    for key in ("raw", "faust_default", "faust_tuned", "pipeline_1w", "pipeline_2w"):
        assert result["drain"][key]["tx_per_s"] > 0, result["drain"][key]
    quick = BenchConfig.quick()
    for key in ("raw", "pipeline_1w"):
        assert result["live"]["rate"][key]["measured"] == quick.live_count(quick.rate)[1]
    assert result["memory"]["rss_mb_peak"] > 0
    assert len(result["targets"]) == 10
