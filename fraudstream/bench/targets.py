"""The issue's targets, each judged met / not met (or n/a, with the reason) from a result.

Ratios and excesses come first: they compare apps measured in the same run on the same
broker, which absolute numbers on a shared 2-core machine cannot. Absolute latency targets
are judged only on a real Kafka cluster (`--bootstrap`): the embedded broker's own latency
grows with the batches it stores.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from fraudstream.bench.stats import difference, ratio

MET, NOT_MET, NA = "met", "not met", "n/a"
FULL_USERS = 1_000_000
RSS_LIMIT_MB = 1024.0


@dataclass(frozen=True)
class Verdict:
    key: str
    target: str
    figure: str
    status: str
    value: float | bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _get(result: Mapping[str, Any], *path: str) -> Any:
    node: Any = result
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _judge(
    key: str,
    target: str,
    value: float | None,
    threshold: float,
    compare: Callable[[float, float], bool],
    figure: str,
    missing: str,
) -> Verdict:
    if value is None:
        return Verdict(key, target, missing, NA)
    return Verdict(key, target, figure, MET if compare(value, threshold) else NOT_MET, value)


def _n(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+,.1f}"


def drain_verdicts(result: Mapping[str, Any]) -> list[Verdict]:
    one = _get(result, "drain", "pipeline_1w", "tx_per_s")
    two = _get(result, "drain", "pipeline_2w", "tx_per_s")
    tuned = _get(result, "drain", "faust_tuned", "tx_per_s")
    over_tuned, scaling = ratio(one, tuned), ratio(two, one)
    return [
        _judge(
            "drain_over_tuned_faust",
            "backlog drain, 1 worker / tuned bare Faust >= 1.5x",
            over_tuned,
            1.5,
            operator.ge,
            f"{_n(over_tuned, 2)}x ({_n(one)} / {_n(tuned)} tx/s)",
            "n/a (a drain phase did not run or failed)",
        ),
        _judge(
            "drain_tx_per_s",
            "backlog drain, 1 worker >= 8,000 tx/s",
            one,
            8000.0,
            operator.ge,
            f"{_n(one)} tx/s",
            "n/a (the pipeline drain did not run or failed)",
        ),
        _judge(
            "two_workers_over_one",
            "backlog drain, 2 workers / 1 worker >= 1.5x",
            scaling,
            1.5,
            operator.ge,
            f"{_n(scaling, 2)}x ({_n(two)} / {_n(one)} tx/s)",
            "n/a (a drain phase did not run or failed)",
        ),
    ]


def _excess(result: Mapping[str, Any], load: str, point: str) -> tuple[float | None, str]:
    pipe = _get(result, "live", load, "pipeline_1w", "latency_ms", point)
    raw = _get(result, "live", load, "raw", "latency_ms", point)
    excess = difference(pipe, raw)
    return (
        excess,
        f"{_signed(excess)} ms ({_n(pipe, 1)} vs raw {_n(raw, 1)})",
    )


def live_verdicts(result: Mapping[str, Any]) -> list[Verdict]:
    rate = _get(result, "config", "rate")
    high = _get(result, "config", "high_rate")
    verdicts = []
    for point, limit in (("p50", 10.0), ("p99", 20.0)):
        excess, figure = _excess(result, "rate", point)
        verdicts.append(
            _judge(
                f"live_{point}_excess",
                f"live {_n(rate)} tx/s: {point} excess over raw pass-through <= {limit:.0f} ms",
                excess,
                limit,
                operator.le,
                figure,
                "n/a (lost outputs, or a live phase did not run)",
            )
        )
    keep = _get(result, "live", "high_rate", "pipeline_1w", "keep_up")
    keeps = None if not isinstance(keep, Mapping) else keep.get("keeps_up")
    if keeps is None:
        verdicts.append(Verdict("high_keeps_up", f"{_n(high)} tx/s offered: keeps up", "n/a", NA))
    else:
        figure = (
            f"served/offered {_n(keep.get('served_over_offered'), 3)}, "
            f"lag at end {_n(keep.get('lag_end'))} msgs ({_n(keep.get('lag_end_s'), 2)} s)"
        )
        status = MET if keeps else NOT_MET
        verdicts.append(
            Verdict("high_keeps_up", f"{_n(high)} tx/s offered: keeps up", figure, status, keeps)
        )
    excess, figure = _excess(result, "high_rate", "p99")
    verdicts.append(
        _judge(
            "high_p99_excess",
            f"{_n(high)} tx/s offered: added p99 < 100 ms",
            excess,
            100.0,
            operator.lt,
            figure,
            "n/a (lost outputs: p99 not reached, or the phase did not run)",
        )
    )
    return verdicts


def memory_verdict(result: Mapping[str, Any]) -> Verdict:
    target = "worker RSS <= 1 GB with 1,000,000 users"
    memory = _get(result, "memory")
    if not isinstance(memory, Mapping) or memory.get("rss_mb_peak") is None:
        return Verdict("rss_1m_users", target, "n/a (the memory phase did not run)", NA)
    peak, users = memory["rss_mb_peak"], memory.get("users_scored", 0)
    figure = f"{_n(peak)} MB peak with {_n(users)} users"
    if peak > RSS_LIMIT_MB:
        return Verdict("rss_1m_users", target, figure, NOT_MET, peak)
    if users < FULL_USERS:
        return Verdict("rss_1m_users", target, f"{figure} (fewer than 1,000,000: not judged)", NA)
    return Verdict("rss_1m_users", target, figure, MET, peak)


def absolute_verdicts(result: Mapping[str, Any]) -> list[Verdict]:
    external = str(result.get("broker", "")).startswith("external")
    verdicts = []
    for point, limit in (("p50", 15.0), ("p99", 40.0)):
        target = f"real Kafka, live 1,000 tx/s: pipeline {point} <= {limit:.0f} ms"
        value = _get(result, "live", "rate", "pipeline_1w", "latency_ms", point)
        if not external:
            verdicts.append(Verdict(f"kafka_{point}", target, "n/a (embedded broker)", NA))
            continue
        verdicts.append(
            _judge(f"kafka_{point}", target, value, limit, operator.le, f"{_n(value, 1)} ms", "n/a")
        )
    return verdicts


def verdicts(result: Mapping[str, Any]) -> list[Verdict]:
    """Every target, ratios and excesses first."""
    drains = drain_verdicts(result)
    return [
        drains[0],
        *live_verdicts(result),
        drains[2],
        drains[1],
        memory_verdict(result),
        *absolute_verdicts(result),
    ]
