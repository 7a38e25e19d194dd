"""Target verdicts and the rendered tables, from synthetic results."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from rich.console import Console

from fraudstream.bench import render
from fraudstream.bench.targets import MET, NA, NOT_MET, verdicts


def _latency(p50: float, p99: float, lost: int = 0) -> dict[str, Any]:
    return {"n": 10_000, "lost": lost, "p50": p50, "p95": p99, "p99": p99, "max": p99}


def _cpu(worker_s: float) -> dict[str, Any]:
    return {
        "wall_s": 2.0,
        "processes": {
            "broker": {"cpu_s": 0.5, "cores": 0.25, "us_per_tx": 25.0},
            "bench (load generator + receiver)": {"cpu_s": 0.2, "cores": 0.1, "us_per_tx": 10.0},
            "worker 1": {"cpu_s": worker_s, "cores": worker_s / 2, "us_per_tx": 100.0},
        },
        "rest_of_machine_cores": 0.3,
    }


RESULT: dict[str, Any] = {
    "broker": "embedded (tansu)",
    "config": {"rate": 1000.0, "high_rate": 5000.0},
    "drain": {
        "raw": {"app": "raw aiokafka pass-through", "tx_per_s": 40_000.0},
        "faust_default": {"app": "bare Faust, defaults", "tx_per_s": 2000.0},
        "faust_tuned": {"app": "bare Faust, tuned", "tx_per_s": 6000.0},
        "pipeline_1w": {
            "app": "pipeline, 1 worker",
            "tx_per_s": 9600.0,
            "cpu": _cpu(1.8),
            "stages": {
                "available": True,
                "us_per_tx": {"decode": 5.0, "model": 20.0},
                "total_us_per_tx": 25.0,
            },
        },
        "pipeline_2w": {"app": "pipeline, 2 workers", "tx_per_s": 12_000.0},
    },
    "live": {
        "rate": {
            "offered_per_s": 1000.0,
            "raw": {"app": "raw", "offered_per_s": 1000.0, "latency_ms": _latency(40.0, 200.0)},
            "pipeline_1w": {
                "app": "pipeline, 1 worker",
                "offered_per_s": 1000.0,
                "latency_ms": _latency(48.0, 230.0),
                "keep_up": {"served_over_offered": 1.0, "keeps_up": True},
                "generator": {"lateness_ms_p99": 0.5},
            },
        },
        "high_rate": {
            "offered_per_s": 5000.0,
            "raw": {"app": "raw", "offered_per_s": 5000.0, "latency_ms": _latency(50.0, 300.0)},
            "pipeline_1w": {
                "app": "pipeline, 1 worker",
                "offered_per_s": 5000.0,
                "latency_ms": _latency(900.0, 2000.0, lost=200),
                "keep_up": {
                    "served_over_offered": 0.4,
                    "lag_end": 30_000,
                    "lag_end_s": 6.0,
                    "keeps_up": False,
                },
            },
        },
    },
    "memory": {
        "users": 1_000_000,
        "users_scored": 1_000_000,
        "rss_mb_at_start": 200.0,
        "rss_mb_peak": 900.0,
        "rss_mb_end": 880.0,
        "outcome": "complete",
    },
}


def _by_key(result: dict[str, Any]) -> dict[str, Any]:
    return {verdict.key: verdict for verdict in verdicts(result)}


def test_verdicts_of_a_full_result() -> None:
    found = _by_key(RESULT)
    assert found["drain_over_tuned_faust"].status == MET  # 9,600 / 6,000 = 1.6x
    assert found["drain_over_tuned_faust"].figure.startswith("1.60x")
    assert found["drain_tx_per_s"].status == MET
    assert found["live_p50_excess"].status == MET  # +8 ms
    assert found["live_p99_excess"].status == NOT_MET  # +30 ms
    assert found["live_p99_excess"].figure.startswith("+30.0 ms")
    assert found["high_keeps_up"].status == NOT_MET
    assert found["high_p99_excess"].status == NOT_MET
    assert found["two_workers_over_one"].status == NOT_MET  # 1.25x
    assert found["rss_1m_users"].status == MET
    assert found["kafka_p50"].status == NA  # embedded broker: absolute latency not judged
    assert next(iter(found)) == "drain_over_tuned_faust"  # ratios first


def test_lost_outputs_and_missing_phases_are_not_judged() -> None:
    result = copy.deepcopy(RESULT)
    result["live"]["high_rate"]["pipeline_1w"]["latency_ms"]["p99"] = None  # p99 among lost
    del result["drain"]["faust_tuned"]
    found = _by_key(result)
    assert found["high_p99_excess"].status == NA
    assert found["drain_over_tuned_faust"].status == NA
    assert _by_key({})["rss_1m_users"].status == NA


@pytest.mark.parametrize(
    ("peak", "users", "status"),
    [(900.0, 1_000_000, MET), (1100.0, 400_000, NOT_MET), (600.0, 20_000, NA)],
)
def test_memory_verdict(peak: float, users: int, status: str) -> None:
    result = {"memory": {"rss_mb_peak": peak, "users_scored": users}}
    assert _by_key(result)["rss_1m_users"].status == status


def test_absolute_latency_is_judged_on_real_kafka() -> None:
    result = copy.deepcopy(RESULT)
    result["broker"] = "external (kafka:9092)"
    found = _by_key(result)
    assert found["kafka_p50"].status == NOT_MET  # 48 ms > 15 ms
    assert found["kafka_p50"].figure == "48.0 ms"


def _text(result: dict[str, Any]) -> str:
    console = Console(width=250, record=True)
    for part in render(result):
        console.print(part)
    return console.export_text()


def test_render_shows_targets_figures_and_definitions() -> None:
    text = _text(RESULT)
    assert "1.60x (9,600 / 6,000 tx/s)" in text
    assert "not met" in text and "met" in text
    assert "lost" in text  # the 5,000 tx/s pipeline lost outputs
    assert "decode" in text and "25.0" in text  # stage breakdown
    assert "rest of machine" in text
    assert "what the numbers include" in text and "producer send" in text


def test_render_says_when_stage_counters_are_missing_and_phases_failed() -> None:
    result = copy.deepcopy(RESULT)
    note = "n/a (the worker does not export fraudstream_stage_seconds_total)"
    result["drain"]["pipeline_1w"]["stages"] = {"available": False, "note": note}
    result["drain"]["faust_default"] = {"app": "bare Faust, defaults", "error": "boom [x]\ntail"}
    text = _text(result)
    assert note in text
    assert "failed: drain.faust_default: boom [x]" in text
