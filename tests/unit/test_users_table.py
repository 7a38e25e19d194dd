"""The users' table: its RocksDB options reach faust's store for every partition database."""

from __future__ import annotations

from pathlib import Path

import faust

from stream_app.app import USERS_ROCKSDB_OPTIONS, users_table


def test_the_rocksdb_store_of_the_users_table_takes_the_small_options(tmp_path: Path) -> None:
    app = faust.App("users-table-rocksdb", store="rocksdb://", datadir=str(tmp_path))
    options = users_table(app, 4).data.rocksdb_options
    assert options.write_buffer_size == USERS_ROCKSDB_OPTIONS["write_buffer_size"] < 64 * 2**20
    assert options.max_write_buffer_number == 2
    assert options.block_cache_size == USERS_ROCKSDB_OPTIONS["block_cache_size"] < 2**30
    assert (
        options.block_cache_compressed_size == USERS_ROCKSDB_OPTIONS["block_cache_compressed_size"]
    )
    # The store pops keys from the mapping it is given: the module's own stays whole.
    assert len(USERS_ROCKSDB_OPTIONS) == 4


def test_the_memory_store_ignores_them(tmp_path: Path) -> None:
    app = faust.App("users-table-memory", store="memory://", datadir=str(tmp_path))
    table = users_table(app, 4)
    table.data[b"u1"] = b"record"
    assert table.data[b"u1"] == b"record"
