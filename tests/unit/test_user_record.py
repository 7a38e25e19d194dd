"""What a user's record costs in memory: it is kept for every recent user."""

from __future__ import annotations

import tracemalloc

import orjson

from stream_app.user_record import JournalEntry, UserRecord

ROW = [0.125 * i for i in range(28)]


def test_a_journal_entry_keeps_its_encoding_at_its_exact_size() -> None:
    """orjson's output holds the buffer it wrote into (about 8 KB, traced): an entry that kept
    it would cost 15 times its size, for every transaction not committed yet."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        entries = [JournalEntry.of(i, ROW, False) for i in range(1_000)]
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / len(entries)
    finally:
        tracemalloc.stop()
    assert per_entry < 1_500, f"{per_entry:.0f} bytes per journal entry"
    assert orjson.loads(orjson.dumps(entries[7].encoded)) == [7, ROW, False]


def test_the_encoded_record_is_its_json() -> None:
    record = UserRecord()
    record.windows.observe(1_000, 500, "m1")
    record.remember(4, ROW, False)
    record.remember(5, ROW, True)
    assert record.encode() == orjson.dumps(record.to_json())
    assert UserRecord.from_json(orjson.loads(record.encode())).encode() == record.encode()
