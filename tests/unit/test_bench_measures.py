"""What the benchmark reads from the apps: receipts, /metrics scrapes (synthetic here), /proc."""

from __future__ import annotations

import os

import pytest

from fraudstream.bench.procfs import CpuWindow, cpu_seconds, parse_machine_cpu, parse_stat_cpu
from fraudstream.bench.receiver import Receipts, transaction_id_of
from fraudstream.bench.scrape import (
    STAGE_METRIC,
    combined,
    lag_messages,
    lag_partitions,
    parse_metrics,
    stage_breakdown,
    total,
)


def exposition(scored: float, stages: dict[str, float] | None = None, lag: int = 0) -> str:
    """A worker's /metrics text, as prometheus-client writes it."""
    lines = [
        "# HELP fraudstream_transactions_scored_total Scores published.",
        "# TYPE fraudstream_transactions_scored_total counter",
        f"fraudstream_transactions_scored_total {scored}",
        "fraudstream_transactions_scored_created 1.7e9",
        "# HELP fraudstream_consumer_lag_messages Messages behind.",
        "# TYPE fraudstream_consumer_lag_messages gauge",
        f'fraudstream_consumer_lag_messages{{partition="0"}} {lag}',
        f'fraudstream_consumer_lag_messages{{partition="2"}} {lag}',
    ]
    if stages is not None:
        lines += [
            "# HELP fraudstream_stage_seconds Seconds per stage.",
            "# TYPE fraudstream_stage_seconds counter",
        ]
        lines += [f'{STAGE_METRIC}{{stage="{k}"}} {v}' for k, v in stages.items()]
    return "\n".join(lines) + "\n"


def test_stage_breakdown_is_microseconds_per_scored_transaction() -> None:
    before = parse_metrics(exposition(1000, {"decode": 0.5, "features": 1.0, "model": 2.0}))
    after = parse_metrics(
        exposition(3000, {"decode": 0.52, "features": 1.1, "model": 2.06, "gc": 0.002})
    )
    breakdown = stage_breakdown(before, after)
    assert breakdown["available"] is True
    assert breakdown["scored"] == 2000
    assert breakdown["us_per_tx"] == pytest.approx(
        {"decode": 10.0, "features": 50.0, "model": 30.0, "gc": 1.0}
    )
    assert list(breakdown["us_per_tx"])[-1] == "gc"  # stages the worker adds come last
    assert breakdown["total_us_per_tx"] == pytest.approx(91.0)
    assert "serialise" in breakdown["missing_stages"]


def test_the_overlapped_delivery_wait_is_shown_but_not_in_the_total() -> None:
    before = parse_metrics(exposition(1000, {"features": 1.0, "deliver": 1.0}))
    after = parse_metrics(exposition(3000, {"features": 1.1, "deliver": 1.3}))
    breakdown = stage_breakdown(before, after)
    assert breakdown["us_per_tx"] == pytest.approx({"features": 50.0, "deliver": 150.0})
    assert breakdown["total_us_per_tx"] == pytest.approx(50.0)


def test_stage_breakdown_without_the_counter_says_so() -> None:
    before, after = parse_metrics(exposition(10)), parse_metrics(exposition(20))
    breakdown = stage_breakdown(before, after)
    assert breakdown["available"] is False
    assert breakdown["note"] == f"n/a (the worker does not export {STAGE_METRIC})"
    assert stage_breakdown(None, after)["available"] is False


def test_stage_breakdown_with_nothing_scored_or_a_restart() -> None:
    stages = {"decode": 1.0}
    same = parse_metrics(exposition(50, stages))
    assert "nothing scored" in stage_breakdown(same, same)["note"]
    restarted = parse_metrics(exposition(5, {"decode": 0.1}))
    assert stage_breakdown(same, restarted)["available"] is False


def test_scrapes_of_two_workers_add_up() -> None:
    one = parse_metrics(exposition(100, {"model": 1.0}, lag=3))
    two = parse_metrics(exposition(50, {"model": 0.5}, lag=4))
    both = combined([one, two])
    assert total(both, "fraudstream_transactions_scored_total") == 150
    assert lag_messages(one) == 6 and lag_messages(both) == 14
    assert lag_partitions(one) == {"0", "2"}
    assert lag_messages(parse_metrics("")) is None
    assert combined([one, None]) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"transaction_id":"tx42","score":0.1}', "tx42"),
        (b'{"score": 0.1, "transaction_id": "tx 7"}', "tx 7"),
        (b'{"transaction_id":"a\\"b"}', 'a"b'),  # escaped: the slow road
        (b"not json", None),
        (b"[1, 2]", None),
        (None, None),
    ],
)
def test_transaction_id_of_outputs(value: bytes | None, expected: str | None) -> None:
    assert transaction_id_of(value) == expected


def test_receipts_keep_the_first_of_duplicates() -> None:
    receipts = Receipts()
    receipts.add("a", 1.0)
    receipts.add("b", 2.0)
    receipts.add("a", 3.0)  # redelivered (at-least-once)
    receipts.add(None, 4.0)
    assert receipts.first == {"a": 1.0, "b": 2.0}
    assert receipts.order == ["a", "b"] and receipts.times == [1.0, 2.0]
    assert (receipts.duplicates, receipts.unreadable, receipts.count()) == (1, 1, 2)


def test_proc_parsers() -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    stat = f"42 (odd (name) x) S 1 2 3 4 5 6 7 8 9 10 {3 * ticks} {ticks} 0 0 20"
    assert parse_stat_cpu(stat) == pytest.approx(4.0)
    busy, whole = parse_machine_cpu(f"cpu  {ticks} 0 {ticks} {2 * ticks} 0 0 0 0 0 0\ncpu0 1\n")
    assert (busy, whole) == pytest.approx((2.0, 4.0))
    with pytest.raises(ValueError):
        parse_machine_cpu("intr 1 2 3")


def test_cpu_window_of_this_process() -> None:
    assert cpu_seconds(os.getpid()) is not None
    window = CpuWindow({"me": os.getpid(), "nobody": None}).start()
    sum(i * i for i in range(200_000))
    usage = window.stop()
    assert set(usage["processes"]) == {"me"}
    assert usage["processes"]["me"]["cpu_s"] >= 0
    assert usage["wall_s"] >= 0 and "rest_of_machine_cores" in usage
