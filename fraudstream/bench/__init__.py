"""`fraudstream bench`: the pipeline measured against pass-through baselines, in one run.

Modules, one job each:

* `config` — what a run does (sizes, rates, durations; `--quick`);
* `prepare` — simulated traffic, a trained model, the records to send;
* `traffic` — replayed, history-then-live (event time = now) and many-users traffic;
* `pacing` — the open-loop Poisson schedule of live traffic and the pacer keeping to it;
* `sender` — warmed producers that stamp each send;
* `receiver` — the downstream consumer stamping each receipt on its own thread;
* `matching`, `stats`, `lag` — latencies per transaction id, percentiles and rates, keep-up;
* `scrape` — the worker's /metrics and its per-stage breakdown;
* `procfs` — RSS and CPU per process from /proc;
* `passthrough` — the raw aiokafka and bare-Faust apps (run as `python -m fraudstream.bench`);
* `apps`, `processes` — starting and stopping the apps under test;
* `steps`, `drain`, `live`, `memory`, `components` — the phases;
* `targets`, `glossary`, `render`, `results` — verdicts, definitions, tables, result files;
* `session`, `run` — the run's context and its order of phases.
"""

from fraudstream.bench.config import PHASES, BenchConfig
from fraudstream.bench.passthrough import main
from fraudstream.bench.procfs import rss_bytes
from fraudstream.bench.render import render
from fraudstream.bench.results import machine_facts, write_result
from fraudstream.bench.run import run
from fraudstream.bench.stats import latency_summary, percentile, rate_between

__all__ = [
    "PHASES",
    "BenchConfig",
    "latency_summary",
    "machine_facts",
    "main",
    "percentile",
    "rate_between",
    "render",
    "rss_bytes",
    "run",
    "write_result",
]
