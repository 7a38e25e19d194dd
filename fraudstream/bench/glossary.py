"""What each number of the benchmark includes: printed under the tables and stored in the
result file, so a figure is never read without its definition."""

from __future__ import annotations

DEFINITIONS: dict[str, str] = {
    "drain tx/s": (
        "an app started on empty topics, ready and probed end to end, then a backlog written "
        "in one burst from a warm producer; outputs received downstream per transaction id, "
        "from output number `head` (the first 5 %) to the last. Replayed event times."
    ),
    "live latency": (
        "producer send (clock read right before produce(), producer warmed, first head_s of "
        "traffic discarded) to the first receipt of the output with the same transaction id, "
        "stamped per message by a dedicated poll() thread. Includes the load generator's "
        "producer linger, the broker (twice: in and out), the app, and the downstream fetch "
        "wait. Poisson arrivals, event time = now; a history was processed first. 'lost': "
        "never received within the timeout, counted as slower than all others."
    ),
    "excess": (
        "pipeline minus raw aiokafka pass-through at the same percentile, same schedule and "
        "records, same run: what the pipeline adds beyond moving a message through Kafka."
    ),
    "keeps up": (
        "over the second half of the offered window, received >= 95 % of sent, and the "
        "backlog (sent - received) at its end under 1 s of traffic. The worker's own lag "
        "gauge is shown beside it when exported."
    ),
    "cpu": (
        "utime + stime from /proc per process over the measured window; cores = CPU s / wall "
        "s; 'rest of machine' = all busy CPU minus the processes listed (other work)."
    ),
    "stages": (
        "from the worker's own fraudstream_stage_seconds_total{stage}, divided by the growth "
        "of fraudstream_transactions_scored_total over the same window (summed over workers). "
        "'deliver' is wall time waiting for the broker to acknowledge a fetch's outputs, "
        "overlapped with scoring the next fetch: shown, not in the total."
    ),
    "rss": (
        "VmRSS of the worker process from /proc: after its probe, the peak while scoring one "
        "transaction for each new user, and at the end."
    ),
    "generator lateness": (
        "how late the load generator sent against its schedule (p99); high values mean the "
        "generator itself was starved of CPU."
    ),
}
