"""The worker's collector schedule (checked in a child process: it changes the interpreter)."""

from __future__ import annotations

import subprocess
import sys


def test_tune_freezes_start_up_objects_and_widens_the_young_generation() -> None:
    code = (
        "import gc\n"
        "from stream_app import collector\n"
        "collector.tune()\n"
        "print(gc.get_threshold(), gc.get_freeze_count() > 1000)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["(50000,", "20,", "10)", "True"]
