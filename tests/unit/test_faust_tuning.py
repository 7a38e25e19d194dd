"""How the worker stops when an output cannot be delivered."""

from __future__ import annotations


def test_a_delivery_failure_exits_at_once_with_its_own_code() -> None:
    """No `finally` runs (faust's would acknowledge the micro-batch), the exit code says why."""
    import subprocess
    import sys

    from stream_app.faust_tuning import EXIT_DELIVERY_FAILED

    code = (
        "import logging\n"
        "from stream_app.faust_tuning import exit_on_delivery_failure\n"
        "try:\n"
        "    exit_on_delivery_failure(RuntimeError('broker gone'), logging.getLogger('w'))\n"
        "finally:\n"
        "    print('finally ran')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == EXIT_DELIVERY_FAILED
    assert "finally ran" not in done.stdout
    assert "broker gone" in done.stderr
