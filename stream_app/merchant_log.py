"""The merchant log: final hourly partials on an internal topic that every worker reads.

Each partition's owner publishes its `FinalHours` here (one partition, so one order for all);
every worker reads the whole log and combines it into the same `MerchantHistory`. A Faust
GlobalTable would do the reading, but faust-streaming has open multi-instance bugs with them
(faust-streaming/faust#283), and a plain log with idempotent application needs no key
semantics: a source's hours are applied once, whoever sends them again (restarts, rebalances,
this worker's own echo), because the combination ignores hours a source had already closed.

Records are compact JSON (orjson); a final with more merchants than fit one record is split
into parts that the reader reassembles before applying (a final is applied whole or not at all).
The log must keep at least the longest window plus the lookback (45 days by default) on a real
cluster (`retention.ms`, set by `fraudstream topics create`); it is never compacted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.merchant_partials import FinalHours, Key, Source

FORMAT = 1
MAX_RECORD_ENTRIES = 20_000
"""Merchant entries per record: ~20 bytes each keeps a record well under 1 MB."""
RETENTION_MS = 45 * 24 * 3_600_000
"""What the log topic must keep: the longest window (30 days) plus the lookback (14) and a day."""


def encode(final: FinalHours) -> Iterator[tuple[bytes, bytes]]:
    """(record key, record value) of each part of `final`, in order."""
    entries: list[list[Any]] = []
    for hour in sorted(final.hours):
        for key, count in final.hours[hour].items():
            if isinstance(key, tuple):
                entries.append([hour, key[0], key[1], count])
            else:
                entries.append([hour, key, count])
    parts = max(1, -(-len(entries) // MAX_RECORD_ENTRIES))
    head = {
        "v": FORMAT,
        "kind": final.source.kind,
        "partition": final.source.partition,
        "start": final.start,
        "closed_before": final.closed_before,
        "resume": final.resume_offset,
        "next": final.next_offset,
        "newest": final.newest_ms,
        "late": final.late,
        "parts": parts,
    }
    record_key = str(final.source).encode()
    for part in range(parts):
        chunk = entries[part * MAX_RECORD_ENTRIES : (part + 1) * MAX_RECORD_ENTRIES]
        yield record_key, orjson.dumps({**head, "part": part, "entries": chunk})


class LogFormatError(ValueError):
    """A record on the merchant log that this version cannot read."""


@dataclass
class Assembler:
    """Reassembles finals from their parts; a final is returned once all its parts are in."""

    _partial: dict[Source, tuple[tuple[Any, ...], list[list[Any]], int]] = field(
        default_factory=dict
    )
    unreadable: int = 0

    def add(self, value: bytes | None) -> FinalHours | None:
        try:
            data = orjson.loads(value or b"")
            if data.get("v") != FORMAT:
                raise LogFormatError(f"format {data.get('v')!r}")
            source = Source(data["kind"], int(data["partition"]))
            ident = (data["start"], data["closed_before"], data["next"], data["parts"])
            part, parts = int(data["part"]), int(data["parts"])
        except (ValueError, KeyError, TypeError, AttributeError):
            self.unreadable += 1
            return None
        current = self._partial.get(source)
        if part == 0 or current is None or current[0] != ident or current[2] != part:
            current = (ident, [], 0)  # a new final (an unfinished one was abandoned)
            if part != 0:
                self._partial.pop(source, None)
                return None
        entries = current[1]
        entries.extend(data["entries"])
        if part + 1 < parts:
            self._partial[source] = (ident, entries, part + 1)
            return None
        self._partial.pop(source, None)
        return _final(source, data, entries)


def _final(source: Source, data: dict[str, Any], entries: list[list[Any]]) -> FinalHours:
    hours: dict[int, Counter[Key]] = {}
    for entry in entries:
        counts = hours.get(entry[0])
        if counts is None:
            counts = hours[entry[0]] = Counter()
        if len(entry) == 4:
            counts[(entry[1], entry[2])] += entry[3]
        else:
            counts[entry[1]] += entry[2]
    return FinalHours(
        source=source,
        start=data["start"],
        closed_before=int(data["closed_before"]),
        hours=hours,
        resume_offset=int(data["resume"]),
        next_offset=int(data["next"]),
        newest_ms=data["newest"],
        late=int(data["late"]),
    )
