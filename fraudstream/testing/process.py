"""A `fraudstream` service (worker, retrain) run by a test: started, watched, stopped, checked.

Every way to stop one says which exit code it expects and fails otherwise, so a worker that
crashed on shutdown, or was never killed although the test thinks so, cannot pass unnoticed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

POLL_S = 0.2
"""How often bounded waits look again (never a fixed sleep standing in for a condition)."""


class ServiceProcess:
    """One `python -m fraudstream.cli COMMAND...` in the background, output in `log_file`."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: Mapping[str, str],
        log_file: Path,
        metrics_port: int | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_file = log_file
        self.metrics_port = metrics_port
        self.observed = False
        """True once the test has seen how it ended (`stop`, `kill`, `wait`)."""
        with log_file.open("ab") as log:
            self.popen = subprocess.Popen(  # noqa: S603 - our own CLI, arguments from the test
                [sys.executable, "-m", "fraudstream.cli", *self.command],
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def logs(self, tail_chars: int | None = None) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return text if tail_chars is None else text[-tail_chars:]

    def stop(
        self, sig: int = signal.SIGTERM, expect: int | None = 0, timeout_s: float = 30.0
    ) -> int:
        """Send `sig` (if still running), wait, and check the exit code against `expect`."""
        if self.running:
            self.popen.send_signal(sig)
        try:
            code = self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            self.observed = True
            raise AssertionError(
                f"{self.name} did not stop within {timeout_s:.0f} s of signal {sig}\n"
                f"--- {self.name} log ---\n{self.logs(3000)}"
            ) from None
        self.observed = True
        if expect is not None and code != expect:
            raise AssertionError(
                f"{self.name} exited with {code}, expected {expect}\n"
                f"--- {self.name} log ---\n{self.logs(3000)}"
            )
        return code

    def kill(self) -> int:
        """kill -9: no clean shutdown. The exit code must say it was this signal."""
        return self.stop(signal.SIGKILL, expect=-signal.SIGKILL)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until `/readyz` answers 200 (model loaded, tasks running); fails early if it dies."""
        if self.metrics_port is None:
            raise ValueError(f"{self.name} has no metrics port to ask")
        self._wait(
            lambda: http_status(self.metrics_port or 0, "/readyz") == 200, timeout_s, "ready"
        )

    def wait_for_log(self, text: str, timeout_s: float = 60.0) -> None:
        """Until its log contains `text`."""
        self._wait(lambda: text in self.logs(), timeout_s, f"logging '{text}'")

    def scrape(self) -> dict[str, float]:
        """Every sample of its `/metrics` (see `scrape`)."""
        if self.metrics_port is None:
            raise ValueError(f"{self.name} has no metrics port to scrape")
        return scrape(self.metrics_port)

    def wait_for_metrics(
        self, ready: Callable[[dict[str, float]], bool], timeout_s: float = 60.0, what: str = ""
    ) -> dict[str, float]:
        """Scrape until `ready(samples)` holds; the samples that satisfied it."""
        seen: dict[str, float] = {}

        def check() -> bool:
            nonlocal seen
            try:
                seen = self.scrape()
            except OSError:  # not serving yet
                return False
            return ready(seen)

        self._wait(check, timeout_s, what or "the expected metrics", lambda: f"last: {seen}")
        return seen

    def _wait(
        self,
        condition: Callable[[], bool],
        timeout_s: float,
        what: str,
        detail: Callable[[], str] = lambda: "",
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if not self.running:
                self.observed = True
                raise AssertionError(
                    f"{self.name} exited with {self.popen.returncode} while waiting for {what}\n"
                    f"--- {self.name} log ---\n{self.logs(3000)}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} not {what} within {timeout_s:.0f} s {detail()}\n"
                    f"--- {self.name} log ---\n{self.logs(3000)}"
                )
            time.sleep(POLL_S)


def scrape(port: int, host: str = "127.0.0.1") -> dict[str, float]:
    """Every sample of `/metrics` as 'name{labels}' -> value (labels sorted, as exported)."""
    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://{host}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        body = answer.read().decode()
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return samples


def http_status(port: int, path: str, host: str = "127.0.0.1") -> int | None:
    """The HTTP status of GET `path`, or None when nothing answers."""
    url = f"http://{host}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None
