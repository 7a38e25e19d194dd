"""Matching what was sent with what came out, per transaction id.

Latency of one transaction = its first receipt downstream minus its send time, both read from
this process's monotonic clock. The first `head` sends are discarded: they cover the warm-up
of producer, app and consumer; a transaction that never came out is counted as lost (and as
slower than all others in the percentiles), never dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Matched:
    head: int
    measured: int
    latencies_ms: list[float] = field(default_factory=list)
    lost: int = 0


def match(
    sent_ids: Sequence[str],
    sent_at: Sequence[float],
    received: Mapping[str, float],
    head: int,
) -> Matched:
    """Latencies (ms) of the sends after the first `head`, in send order, and how many were
    never received."""
    if len(sent_ids) != len(sent_at):
        raise ValueError("one send time per id")
    if head < 0:
        raise ValueError("head must be >= 0")
    latencies: list[float] = []
    lost = 0
    for transaction_id, at in zip(sent_ids[head:], sent_at[head:], strict=True):
        arrived = received.get(transaction_id)
        if arrived is None:
            lost += 1
        else:
            latencies.append((arrived - at) * 1000.0)
    kept = max(0, len(sent_ids) - head)
    return Matched(head=min(head, len(sent_ids)), measured=kept, latencies_ms=latencies, lost=lost)
