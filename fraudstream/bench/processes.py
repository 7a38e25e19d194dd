"""Subprocesses of a phase: the apps under test (stopped at the end, whatever happens) and
an optional py-spy recorder on one of them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from fraudstream.bench.profile_shares import shares


@contextmanager
def background(
    command: list[str], log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess for the duration of a phase; SIGTERM (then SIGKILL) at the end."""
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            env={**os.environ, "OMP_WAIT_POLICY": "passive", **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def profiled(
    pid: int, out: str | None, progress: Callable[[str], None] = lambda _: None
) -> Iterator[None]:
    """Sample `pid` with py-spy (the dev extras install it) into the flame graph `out` (an SVG;
    collapsed stacks, one line per stack with its sample count, if `out` ends with `.txt`)."""
    if out is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise RuntimeError("--profile needs py-spy (pip install py-spy; the dev extras have it)")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    recorder = subprocess.Popen(  # noqa: S603 - py-spy from this environment
        [
            *(spy, "record", "--pid", str(pid), "--rate", "100", "--output", out),
            *(("--format", "raw") if out.endswith(".txt") else ()),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes the flame graph on SIGINT
        try:
            _, errors = recorder.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            recorder.kill()
            errors = b"py-spy did not finish"
        if recorder.returncode not in (0, -signal.SIGINT) or not Path(out).exists():
            progress(f"profile not written: {errors.decode(errors='replace')[-300:]}")
        else:
            progress(f"worker profile written to {out}")
            if out.endswith(".txt"):
                with Path(out).open() as stacks:
                    progress(f"where the profiled worker's time went: {shares(stacks).summary()}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def http_ok(port: int, path: str, timeout_s: float = 2.0) -> bool:
    """True when 127.0.0.1:`port``path` answers 200."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return int(answer.status) == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def wait_until(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    alive: Callable[[], bool] = lambda: True,
    every_s: float = 0.2,
) -> None:
    """Poll `condition` until it holds; TimeoutError naming `what`, RuntimeError if not alive."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if not alive():
            raise RuntimeError(f"an app under test exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(every_s)
