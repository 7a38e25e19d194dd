"""Broker stall: the broker is frozen (SIGSTOP) for 20 s in the middle of a stream and then
resumed. Producer and worker recover by themselves; every transaction is scored, as offline."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fraudstream.testing import Stack
from producers.replay import Pacer, read_recording, replay
from tests.integration.test_worker import TRAFFIC, assert_same, offline_scores, wait_for_scores

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow]
# slow: ~100 s (a 20 s freeze, then the group's recovery); `make reliability` runs it.

FREEZE_S = 20.0


def test_a_frozen_broker_loses_nothing(fraudstream_stack: Stack, tmp_path: Path) -> None:
    stack = fraudstream_stack
    pid = stack.broker.pid
    if pid is None:
        pytest.skip("needs the embedded broker's process to freeze (not a container)")
    expected = offline_scores(stack, TRAFFIC, None)
    lines = TRAFFIC.read_bytes().splitlines()
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(b"\n".join(lines[:2000]) + b"\n")
    second.write_bytes(b"\n".join(lines[2000:]) + b"\n")
    worker = stack.start_worker()
    sent: dict[str, Any] = {}
    try:
        stack.replay(first)
        wait_for_scores(stack, {json.loads(line)["transaction_id"] for line in lines[:2000]})
        producer = threading.Thread(
            target=lambda: sent.update(
                stats=replay(
                    read_recording(second, False),
                    stack.topics["transactions"],
                    stack.broker.client_config(),
                    Pacer(rate=400),  # ~10 s of traffic: the freeze lands in the middle
                )
            )
        )
        producer.start()
        # Freeze once part of the second half has been scored: mid-stream.
        wait_for_scores(stack, {json.loads(line)["transaction_id"] for line in lines[2000:2300]})
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(FREEZE_S)  # the fault itself: the broker answers nothing for 20 s
        finally:
            os.kill(pid, signal.SIGCONT)
        producer.join(timeout=120)
        assert not producer.is_alive(), "the producer did not finish after the broker resumed"
        assert sent["stats"].failed == 0, sent["stats"].first_errors
        online = wait_for_scores(stack, set(expected), timeout_s=240)
        assert worker.running, "the worker died during the stall"
    finally:
        os.kill(pid, signal.SIGCONT)
    worker.stop()
    for transaction_id, copies in online.items():
        for copy in copies:  # redelivered after the stall: the identical score
            assert_same(copy, expected[transaction_id])
