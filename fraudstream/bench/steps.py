"""Steps every phase shares: warm-up and probe, settling a consumer group, watching the apps
(CPU from /proc, the workers' /metrics) over the measured window."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fraudstream.bench import scrape
from fraudstream.bench.apps import Running
from fraudstream.bench.procfs import CpuWindow
from fraudstream.bench.receiver import Receiver
from fraudstream.bench.sender import StampingProducer
from fraudstream.bench.session import Session
from fraudstream.bench.traffic import Record

LOAD_GENERATOR = "bench (load generator + receiver)"


def all_alive(apps: Sequence[Running]) -> Callable[[], bool]:
    return lambda: all(app.alive() for app in apps)


def probe(
    producer: StampingProducer,
    receiver: Receiver,
    topic: str,
    records: Sequence[Record],
    apps: Sequence[Running],
    timeout_s: float,
) -> float:
    """Warm the producer (one record delivered), send the rest, wait for every output: the
    whole path works on every partition before anything is timed. Returns the warm-up time."""
    warm_up_s = producer.warm(topic, records[0])
    producer.burst(topic, records[1:])
    producer.flush()
    receiver.wait_for(
        [r.transaction_id for r in records], timeout_s, all_alive(apps), "probe outputs"
    )
    return warm_up_s


def scrape_all(apps: Sequence[Running]) -> list[scrape.Samples | None]:
    return [scrape.scrape(app.metrics_port) for app in apps if app.metrics_port is not None]


def settle_group(
    producer: StampingProducer,
    receiver: Receiver,
    topic: str,
    pool: Sequence[Record],
    apps: Sequence[Running],
    timeout_s: float,
    chunk: int = 50,
) -> dict[str, Any]:
    """Send small rounds until every worker scored in the same round (so each owns partitions
    and the group has settled) and, if exported, the lag gauges' partitions do not overlap."""
    deadline = time.monotonic() + timeout_s
    for rounds, start in enumerate(range(0, len(pool) - chunk + 1, chunk), start=1):
        before = _scored(scrape_all(apps))
        part = pool[start : start + chunk]
        producer.burst(topic, part)
        producer.flush()
        receiver.wait_for([r.transaction_id for r in part], timeout_s, all_alive(apps))
        after_samples = scrape_all(apps)
        after = _scored(after_samples)
        if before is None or after is None:
            time.sleep(10.0)  # no counters to tell: give the group time instead
            return {"settled": None, "rounds": rounds, "note": "no scored counter: waited 10 s"}
        owned = [scrape.lag_partitions(s) for s in after_samples]
        disjoint = sum(len(o) for o in owned) == len(set().union(*owned))
        if all(a > b for a, b in zip(after, before, strict=True)) and disjoint:
            return {"settled": True, "rounds": rounds}
        if time.monotonic() > deadline:
            break
        time.sleep(1.0)
    return {"settled": False, "rounds": len(pool) // chunk}


def _scored(samples: Sequence[scrape.Samples | None]) -> list[float] | None:
    """Each worker's scored counter, or None if any worker does not tell."""
    counts = [scrape.total(s, scrape.SCORED_METRIC) for s in samples]
    known = [c for c in counts if c is not None]
    return known if len(known) == len(counts) and known else None


class Watch:
    """CPU per process and the workers' metrics, from `start` to `stop`."""

    def __init__(self, session: Session, apps: Sequence[Running]) -> None:
        pids: dict[str, int | None] = {"broker": session.broker_pid, LOAD_GENERATOR: os.getpid()}
        pids |= {app.name: app.pid for app in apps}
        self.apps = apps
        self.cpu = CpuWindow(pids)
        self.before: list[scrape.Samples | None] = []

    def start(self) -> Watch:
        self.before = scrape_all(self.apps)
        self.cpu.start()
        return self

    def stop(self, transactions: int) -> dict[str, Any]:
        """CPU (with µs per transaction) and the stage breakdown over the window."""
        cpu = self.cpu.stop()
        for usage in cpu["processes"].values():
            spent = usage.get("cpu_s")
            usage["us_per_tx"] = (
                None if spent is None or transactions <= 0 else round(spent / transactions * 1e6, 1)
            )
        after = scrape_all(self.apps)
        result: dict[str, Any] = {"cpu": cpu}
        if self.before:
            result["stages"] = scrape.stage_breakdown(
                scrape.combined(self.before), scrape.combined(after)
            )
            names = [app.name for app in self.apps if app.metrics_port is not None]
            result["scored_by_worker"] = {
                name: _growth(b, a) for name, b, a in zip(names, self.before, after, strict=True)
            }
        return result


def _growth(before: scrape.Samples | None, after: scrape.Samples | None) -> float | None:
    old, new = (scrape.total(s, scrape.SCORED_METRIC) for s in (before, after))
    return None if old is None or new is None else new - old


@contextmanager
def explained(apps: Sequence[Running]) -> Iterator[None]:
    """Failures of a phase carry the tails of its apps' logs."""
    try:
        yield
    except (TimeoutError, RuntimeError) as exc:
        tails = "\n".join(app.log_tail() for app in apps)
        raise RuntimeError(f"{exc}\n{tails}") from None


def wait_scored(port: int, count: int, timeout_s: float, alive: Callable[[], bool]) -> None:
    """Until the worker's scored counter reaches `count` (it must export the counter)."""
    deadline = time.monotonic() + timeout_s
    while True:
        scored = scrape.total(scrape.scrape(port), scrape.SCORED_METRIC)
        if scored is not None and scored >= count:
            return
        if not alive():
            raise RuntimeError("the worker exited")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{scrape.SCORED_METRIC} at {scored} (want {count}) after {timeout_s:.0f} s"
            )
        time.sleep(0.25)
