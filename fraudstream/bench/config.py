"""What one benchmark run does: sizes, rates and durations (`--quick` shrinks them)."""

from __future__ import annotations

from dataclasses import dataclass

from fraudstream.bench.pacing import Arrivals

PHASES = ("drain", "live", "scale", "memory", "components")
"""drain: backlog throughput of every app; live: latency at `rate` and `high_rate`, raw
pass-through beside the pipeline; scale: two workers against one; memory: RSS with `users`
users; components: in-process costs of the pure core."""


@dataclass(frozen=True)
class BenchConfig:
    backlog: int = 40_000
    """Transactions written in one burst for the drain phases."""
    rate: float = 1000.0
    """Live-paced latency phase, tx/s (the pipeline against the raw pass-through)."""
    high_rate: float = 5000.0
    """The load phase: does the worker keep up, and what does it add to p99."""
    seconds: float = 10.0
    """Measured duration of each live phase (after its head)."""
    head_s: float = 1.0
    """Live traffic sent, then discarded from the statistics, before the measured part."""
    history: int = 5000
    """Transactions (shifted to end before now) each live phase sends before its live part."""
    probe: int = 200
    """Records sent and awaited end to end before anything is timed (warm-up, all partitions)."""
    drain_head_fraction: float = 0.05
    """Share of a drain's first outputs left out of its rate (start-up transient)."""
    arrivals: Arrivals = "poisson"
    users: int = 1_000_000
    """The memory phase: one transaction for each of this many new users."""
    rss_abort_mb: int = 4096
    """Stop the memory phase if the worker grows past this (protects a shared machine)."""
    partitions: int = 4
    customers: int = 900
    merchants: int = 1000
    days: int = 40
    seed: int = 3
    fetch_wait_ms: int | None = None
    """Fetch wait of every consumer (apps and receiver); None: the settings' FRAUD_FETCH_WAIT_MS."""
    linger_ms: float = 5.0
    """The live load generator's producer linger (a payment service batching its sends)."""
    timeout_s: float = 120.0
    bootstrap: str | None = None
    """An existing Kafka cluster to run against; None: a private embedded broker."""
    profile: str | None = None
    """If set: a py-spy flame graph of the worker during the one-worker drain, written here."""

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(
            backlog=8000,
            seconds=3.0,
            head_s=0.5,
            history=2000,
            users=20_000,
            customers=300,
            merchants=600,
        )

    def live_count(self, rate: float) -> tuple[int, int]:
        """(head, measured) messages of a live phase at `rate`."""
        return max(1, round(rate * self.head_s)), max(1, round(rate * self.seconds))

    @property
    def records_needed(self) -> int:
        head, measured = self.live_count(max(self.rate, self.high_rate))
        live = self.probe + self.history + 1 + head + measured
        return max(self.probe * 4 + self.backlog, live)

    def problems(self) -> list[str]:
        """What is wrong with these settings (empty when they can run)."""
        problems = []
        if self.backlog < 100:
            problems.append("--backlog must be at least 100")
        if self.rate <= 0 or self.high_rate <= 0 or self.seconds <= 0 or self.head_s < 0:
            problems.append("--rate, --high-rate and --seconds must be > 0")
        if self.users < 0:
            problems.append("--users must be >= 0")
        if self.partitions < 2:
            problems.append("--partitions must be >= 2 (two workers share them)")
        return problems
