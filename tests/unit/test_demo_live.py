"""The streaming demo's view when its output is piped: plain progress lines at intervals."""

from __future__ import annotations

import io

from rich.console import Console

from fraudstream.cli import demo_workdir
from fraudstream.demo_live import PlainProgress, _display, _View
from fraudstream.settings import Settings


def piped() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=80), buffer


def test_a_piped_demo_prints_a_progress_line_at_intervals() -> None:
    console, buffer = piped()
    clock = [100.0]
    show = PlainProgress(console, every_s=10.0, clock=lambda: clock[0])
    view = _View(n_history=50, live_start_ms=0)
    score = {"latency_ms": 12.0, "model_version": "v1", "event_time": "2024-03-01T00:00:00Z"}
    for at in (100.0, 104.0, 109.9, 110.0, 115.0, 121.0):
        clock[0] = at
        view.score({**score, "transaction_id": f"t{at}", "decision": "approve"}, {})
        show(view)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 3  # at 100, 110 and 121 s
    assert lines[0].startswith("phase: history replay")
    assert "scored: 1 (1 of 50 history)" in lines[0]
    assert "scored: 4 (4 of 50 history)" in lines[1]
    assert "scored by: v1 (6)" in lines[2]
    assert "\x1b[" not in buffer.getvalue()  # no terminal control codes in a log


def test_only_a_terminal_gets_the_live_table() -> None:
    console, _ = piped()
    with _display(console) as show:
        assert isinstance(show, PlainProgress)
    terminal = Console(file=io.StringIO(), force_terminal=True)
    with _display(terminal) as show:
        assert not isinstance(show, PlainProgress)


def test_the_offline_demo_never_shares_the_streaming_demo_registry() -> None:
    settings = Settings(state_dir="state")
    assert demo_workdir(settings, offline=False) == settings.state_dir / "demo"
    assert demo_workdir(settings, offline=True) == settings.state_dir / "demo-offline"


def test_the_view_says_each_canary_steps_share() -> None:
    from fraudstream.demo_live import _update_text

    step = {"action": "canary", "version": "v2", "canary": {"share": 10.0}}
    assert _update_text(step) == "canary v2 10 %"
    assert _update_text({"action": "canary_rollback", "version": "v2"}) == "canary_rollback v2"
