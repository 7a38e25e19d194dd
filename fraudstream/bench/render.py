"""The human output: rich tables, targets first, then the figures behind them, then what each
number includes (`glossary`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fraudstream.bench.glossary import DEFINITIONS
from fraudstream.bench.scrape import STAGES
from fraudstream.bench.stats import difference, ratio
from fraudstream.bench.steps import LOAD_GENERATOR
from fraudstream.bench.targets import MET, NOT_MET, verdicts

_STATUS_STYLE = {MET: "green", NOT_MET: "red"}
DRAIN_ORDER = ("raw", "faust_default", "faust_tuned", "pipeline_1w", "pipeline_2w")
LIVE_APPS = ("raw", "pipeline_1w")


def _fmt(value: Any, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:,.{digits}f}{suffix}"


def _table(title: str, *columns: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    return table


def targets_table(result: Mapping[str, Any]) -> Any:
    table = _table("targets (ratios first; same broker, same run)", "target", "figure", "verdict")
    for verdict in verdicts(result):
        style = _STATUS_STYLE.get(verdict.status, "dim")
        table.add_row(verdict.target, verdict.figure, f"[{style}]{verdict.status}[/{style}]")
    return table


def drain_table(result: Mapping[str, Any]) -> Any | None:
    drains = result.get("drain") or {}
    if not drains:
        return None
    tuned = (drains.get("faust_tuned") or {}).get("tx_per_s")
    raw = (drains.get("raw") or {}).get("tx_per_s")
    table = _table(
        "backlog drain (replayed event times)",
        "app",
        "tx/s",
        "/ tuned Faust",
        "/ raw",
        "app CPU µs/tx",
        "window s",
    )
    for key in DRAIN_ORDER:
        phase = drains.get(key)
        if not phase:
            continue
        if "error" in phase:
            table.add_row(phase.get("app", key), "[red]failed[/red]", "", "", "", "")
            continue
        rate = phase.get("tx_per_s")
        table.add_row(
            phase["app"],
            _fmt(rate, 0),
            _fmt(ratio(rate, tuned), 2, "x"),
            _fmt(ratio(rate, raw), 3, "x"),
            _fmt(_app_cpu_us(phase), 0),
            _fmt(phase.get("window_s"), 2),
        )
    return table


def _app_cpu_us(phase: Mapping[str, Any]) -> float | None:
    """CPU µs per transaction of the app under test (summed over its processes)."""
    processes = (phase.get("cpu") or {}).get("processes") or {}
    values = [
        usage.get("us_per_tx")
        for name, usage in processes.items()
        if name not in ("broker", LOAD_GENERATOR)
    ]
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def live_table(result: Mapping[str, Any]) -> Any | None:
    loads = result.get("live") or {}
    if not loads:
        return None
    table = _table(
        "live-paced latency, producer send → output received (ms)",
        "app @ offered tx/s",
        "p50",
        "p95",
        "p99",
        "max",
        "n",
        "lost",
        "+p50",
        "+p99",
        "served/offered",
        "gen. late p99",
    )
    for load in ("rate", "high_rate"):
        phases = loads.get(load) or {}
        raw = (phases.get("raw") or {}).get("latency_ms") or {}
        for key in LIVE_APPS:
            phase = phases.get(key)
            if not phase:
                continue
            if "error" in phase:
                table.add_row(f"{phase.get('app', key)}", "[red]failed[/red]", *[""] * 10)
                continue
            latency = phase["latency_ms"]
            excess = [
                difference(latency.get(p), raw.get(p)) if key != "raw" else None
                for p in ("p50", "p99")
            ]
            lost = latency.get("lost") or 0
            table.add_row(
                f"{phase['app']} @ {phase['offered_per_s']:,.0f}",
                *(_lat(latency.get(p), lost) for p in ("p50", "p95", "p99", "max")),
                _fmt(latency.get("n"), 0),
                _fmt(lost, 0),
                _fmt(excess[0], 1),
                _fmt(excess[1], 1),
                _fmt((phase.get("keep_up") or {}).get("served_over_offered"), 3),
                _fmt((phase.get("generator") or {}).get("lateness_ms_p99"), 2),
            )
    return table


def _lat(value: float | None, lost: int) -> str:
    return "lost" if value is None and lost else _fmt(value, 1)


def cpu_table(result: Mapping[str, Any]) -> Any | None:
    phases = [
        (f"drain: {p['app']}", p)
        for key, p in (result.get("drain") or {}).items()
        if key.startswith("pipeline") and p and "cpu" in p
    ]
    high = ((result.get("live") or {}).get("high_rate") or {}).get("pipeline_1w")
    if high and "cpu" in high:
        phases.append((f"live {high['offered_per_s']:,.0f} tx/s: pipeline", high))
    if not phases:
        return None
    table = _table(
        "where the CPU goes (/proc, measured window)", "phase / process", "CPU s", "cores", "µs/tx"
    )
    for title, phase in phases:
        cpu = phase["cpu"]
        table.add_row(f"[bold]{title}[/bold]", "", "", f"wall {cpu['wall_s']:.1f} s")
        for name, usage in cpu["processes"].items():
            table.add_row(
                f"  {name}",
                _fmt(usage.get("cpu_s"), 2),
                _fmt(usage.get("cores"), 2),
                _fmt(usage.get("us_per_tx"), 0),
            )
        table.add_row("  rest of machine", "", _fmt(cpu.get("rest_of_machine_cores"), 2), "")
    return table


def stages_table(result: Mapping[str, Any]) -> Any | str | None:
    columns = {
        "drain, 1 worker": (result.get("drain") or {}).get("pipeline_1w"),
        "live": ((result.get("live") or {}).get("rate") or {}).get("pipeline_1w"),
        "live, high rate": ((result.get("live") or {}).get("high_rate") or {}).get("pipeline_1w"),
    }
    present = {k: v["stages"] for k, v in columns.items() if v and "stages" in v}
    if not present:
        return None
    if not any(s.get("available") for s in present.values()):
        note = next(iter(present.values())).get("note", "n/a")
        return f"per-stage breakdown: {note}"
    table = _table(
        "per-stage breakdown, worker's own counters (µs per scored tx)", "stage", *present
    )
    stages = list(STAGES) + sorted(
        {s for v in present.values() for s in (v.get("us_per_tx") or {})} - set(STAGES)
    )
    for stage in stages:
        table.add_row(
            stage, *(_fmt((v.get("us_per_tx") or {}).get(stage), 1) for v in present.values())
        )
    table.add_row("total of stages", *(_fmt(v.get("total_us_per_tx"), 1) for v in present.values()))
    table.add_row("worker CPU (/proc)", *(_fmt(_app_cpu_us(columns[k] or {}), 0) for k in present))
    return table


def memory_table(result: Mapping[str, Any]) -> Any | None:
    memory = result.get("memory")
    if not memory:
        return None
    if "error" in memory:
        return None  # listed with the other failures
    table = _table(
        "worker memory with many users (RSS, MB)",
        "users scored",
        "at start",
        "peak",
        "at end",
        "tx/s",
        "outcome",
        "broker RSS",
    )
    table.add_row(
        f"{memory['users_scored']:,} / {memory['users']:,}",
        _fmt(memory.get("rss_mb_at_start")),
        _fmt(memory.get("rss_mb_peak")),
        _fmt(memory.get("rss_mb_end")),
        _fmt(memory.get("tx_per_s"), 0),
        memory.get("outcome", ""),
        _fmt(memory.get("broker_rss_mb")),
    )
    return table


def components_table(result: Mapping[str, Any]) -> Any | None:
    parts = result.get("components")
    if not parts or "error" in parts:
        return None
    table = _table(
        f"components in-process ({parts['transactions']:,} transactions)",
        "component",
        "µs per transaction",
        "µs per call",
    )
    table.add_row("features (FeatureBuilder)", _fmt(parts["features_us_per_tx"], 2), "–")
    for size, cost in parts["scoring"].items():
        table.add_row(
            f"scoring, batch {size}", _fmt(cost["us_per_row"], 2), _fmt(cost["us_per_call"])
        )
    for size, cost in parts["drift_observe_scores"].items():
        table.add_row(
            f"drift observe_scores, batch {size}",
            _fmt(cost["us_per_row"], 2),
            _fmt(cost["us_per_batch"]),
        )
    for schedule, run in (parts.get("pipeline") or {}).items():
        if isinstance(run, dict):
            table.add_row(
                f"pipeline, no broker, {schedule} collector (CPU; collector "
                f"{_fmt(run['collector_us_per_tx'], 1)} µs/tx)",
                _fmt(run["us_per_tx"], 1),
                "–",
            )
    return table


def errors(result: Mapping[str, Any]) -> list[str]:
    """One line per failed phase."""
    found = []
    for section in ("drain", "live", "memory", "components"):
        node = result.get(section) or {}
        stack = [(section, node)]
        while stack:
            where, item = stack.pop()
            if isinstance(item, Mapping):
                if "error" in item:
                    found.append(f"{where}: {str(item['error']).splitlines()[0]}")
                else:
                    stack.extend(
                        (f"{where}.{k}", v) for k, v in item.items() if isinstance(v, Mapping)
                    )
    return found


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def render(result: Mapping[str, Any]) -> list[Any]:
    """Tables (and notes) in reading order."""
    parts = [
        targets_table(result),
        drain_table(result),
        live_table(result),
        stages_table(result),
        cpu_table(result),
        memory_table(result),
        components_table(result),
    ]
    shown: list[Any] = [part for part in parts if part is not None]
    shown.extend(f"[red]failed:[/red] {escape(line)}" for line in errors(result))
    shown.append("[bold]what the numbers include[/bold]")
    shown.extend(f"  [bold]{name}[/bold]: {text}" for name, text in DEFINITIONS.items())
    return shown
