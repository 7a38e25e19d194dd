"""The Prometheus config and rules checked by the real `promtool`.

promtool comes, in this order, from `FRAUDSTREAM_PROMTOOL` (a path), the PATH, or a cache that
this module fills once per machine from Debian's `prometheus` package: `apt-get download` (no
root needed; with the system's package lists, or with private lists fetched into the cache when
the system has none or they are stale), and only `usr/bin/promtool` is taken out of the .deb
(`dpkg-deb --fsys-tarfile`). The cache is `$FRAUDSTREAM_CACHE_DIR`, else
`${XDG_CACHE_HOME:-~/.cache}/fraudstream` (shared by every clone), else, when that is not
writable, the repository's `.pytest_cache/fraudstream`. The tests are skipped, with the reason,
only when none of that works (not Debian/Ubuntu, or no package registry reachable). Every
subprocess has a timeout, and the worst case stays under pytest's 600 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
CONFIGS = [PROMETHEUS / "prometheus.yml", ROOT / "deploy" / "k8s" / "prometheus-kubernetes.yml"]
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = [PROMETHEUS / "alerts_test.yml", PROMETHEUS / "alerts_test_hours.yml"]

APT_TIMEOUT_S = 120
RUN_TIMEOUT_S = 60
APT_NETWORK = ["-o", "Acquire::http::Timeout=30", "-o", "Acquire::Retries=2", "-q"]


def _cache_dirs() -> list[Path]:
    if explicit := os.environ.get("FRAUDSTREAM_CACHE_DIR"):
        return [Path(explicit)]
    dirs = [ROOT / ".pytest_cache" / "fraudstream"]
    try:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    except RuntimeError:  # no home directory at all
        return dirs
    return [Path(base) / "fraudstream", *dirs]


def _works(promtool: Path) -> bool:
    try:
        done = subprocess.run(
            [str(promtool), "--version"], capture_output=True, timeout=RUN_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _apt(args: list[str], cwd: Path, extra: list[str]) -> subprocess.CompletedProcess[str]:
    sandbox = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []
    return subprocess.run(
        ["apt-get", *APT_NETWORK, *sandbox, *extra, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=APT_TIMEOUT_S,
        check=False,
    )


def _download_deb(work: Path) -> Path:
    """`apt-get download prometheus` into `work`; private package lists if the system's fail."""
    done = _apt(["download", "prometheus"], work, [])
    if done.returncode != 0:
        lists = work / "lists"
        (lists / "partial").mkdir(parents=True)
        (work / "archives" / "partial").mkdir(parents=True)
        private = [
            "-o", f"Dir::State::Lists={lists}",
            "-o", f"Dir::Cache={work}",
            "-o", "Debug::NoLocking=1",
        ]  # fmt: skip
        update = _apt(["update"], work, private)
        done = _apt(["download", "prometheus"], work, private)
        if done.returncode != 0:
            raise RuntimeError(
                "apt-get download prometheus failed: "
                f"{(update.stderr + done.stderr).strip()[-600:]}"
            )
    debs = sorted(work.glob("prometheus_*.deb"))
    if not debs:
        raise RuntimeError("apt-get download prometheus left no .deb")
    return debs[-1]


def _extract_promtool(deb: Path, target: Path) -> None:
    """Stream the package's file tree and keep only usr/bin/promtool."""
    dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=dpkg.stdout, mode="r|") as archive:
            for member in archive:
                if member.isfile() and member.name.removeprefix("./") == "usr/bin/promtool":
                    source = archive.extractfile(member)
                    assert source is not None
                    with target.open("wb") as out:
                        shutil.copyfileobj(source, out)
                    break
            else:
                raise RuntimeError(f"{deb.name} holds no usr/bin/promtool")
    finally:
        dpkg.kill()  # the rest of the package is not needed
        dpkg.wait(timeout=RUN_TIMEOUT_S)
        if dpkg.stdout is not None:
            dpkg.stdout.close()
    target.chmod(0o755)


def _fetch_into(cached: Path) -> None:
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise RuntimeError("apt-get and dpkg-deb are needed to fetch it (Debian/Ubuntu)")
    with tempfile.TemporaryDirectory(dir=cached.parent, prefix=".fetch-") as tmp:
        work = Path(tmp)
        staged = work / "promtool"
        _extract_promtool(_download_deb(work), staged)
        if not _works(staged):
            raise RuntimeError("the promtool taken from the package does not run")
        staged.replace(cached)  # atomic: a concurrent run sees the old state or the whole file


def find_promtool() -> Path:
    """A working promtool; raises RuntimeError saying why none could be had."""
    if explicit := os.environ.get("FRAUDSTREAM_PROMTOOL"):
        return Path(explicit)
    if on_path := shutil.which("promtool"):
        return Path(on_path)
    candidates = [cache / "promtool" / "promtool" for cache in _cache_dirs()]
    for cached in candidates:
        if cached.is_file() and _works(cached):
            return cached
    for cached in candidates:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue  # not writable here: the next cache
        try:
            _fetch_into(cached)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"fetching it failed: {exc}") from None
        return cached
    raise RuntimeError(f"no writable cache directory among {[str(c) for c in candidates]}")


@pytest.fixture(scope="session")
def promtool() -> Iterator[Path]:
    try:
        found = find_promtool()
    except RuntimeError as exc:
        pytest.skip(f"promtool is not on PATH and could not be fetched: {exc}")
    yield found


def run_promtool(promtool: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=PROMETHEUS,
        check=False,
    )


def _ok(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, f"promtool failed:\n{done.stdout}\n{done.stderr}"


# -- with promtool --------------------------------------------------------------------------------
def _without_kubernetes_sd(config: Path, tmp_path: Path) -> Path:
    """The config with Kubernetes discovery swapped for a static target, rules still included."""
    doc = yaml.safe_load(config.read_text())
    doc["rule_files"] = [str((config.parent / rule).resolve()) for rule in doc["rule_files"]]
    for scrape in doc["scrape_configs"]:
        if scrape.pop("kubernetes_sd_configs", None) is not None:
            scrape["static_configs"] = [{"targets": ["127.0.0.1:9100"]}]
    copy = tmp_path / config.name
    copy.write_text(yaml.safe_dump(doc))
    return copy


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_promtool_check_config(promtool: Path, config: Path, tmp_path: Path) -> None:
    done = run_promtool(promtool, "check", "config", config)
    if "field kubernetes_sd_configs not found" in done.stdout + done.stderr:
        # Debian builds Prometheus without Kubernetes discovery; check everything else.
        done = run_promtool(promtool, "check", "config", _without_kubernetes_sd(config, tmp_path))
    _ok(done)
    assert "SUCCESS" in done.stdout + done.stderr


def test_promtool_check_rules(promtool: Path) -> None:
    done = run_promtool(promtool, "check", "rules", RULES)
    _ok(done)
    assert f"SUCCESS: {len(_alerts()) + len(_records())} rules found" in done.stdout


def test_promtool_rule_unit_tests_pass(promtool: Path) -> None:
    done = run_promtool(promtool, "test", "rules", *RULE_TESTS)
    _ok(done)
    assert done.stdout.count("SUCCESS") == len(RULE_TESTS), done.stdout


def test_promtool_rule_unit_tests_can_fail(promtool: Path, tmp_path: Path) -> None:
    """The harness notices a wrong expectation: a quiet alert claimed to fire must fail."""
    suite = yaml.safe_load(RULE_TESTS[0].read_text())
    suite["rule_files"] = [str(RULES)]
    first = suite["tests"][0]
    quiet = next(case for case in first["alert_rule_test"] if not case["exp_alerts"])
    quiet["exp_alerts"] = [{"exp_labels": {"severity": "warning"}}]
    suite["tests"] = [first]
    broken = tmp_path / "broken_test.yml"
    broken.write_text(yaml.safe_dump(suite))
    done = run_promtool(promtool, "test", "rules", broken)
    assert done.returncode != 0, done.stdout
    assert quiet["alertname"] in done.stdout + done.stderr


# -- without promtool -----------------------------------------------------------------------------
def _rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _alerts() -> list[dict[str, object]]:
    return [rule for rule in _rules() if "alert" in rule]


def _records() -> list[dict[str, object]]:
    return [rule for rule in _rules() if "record" in rule]


def test_every_alert_is_labelled_and_annotated() -> None:
    alerts = _alerts()
    assert len(alerts) >= 10
    names = [rule["alert"] for rule in alerts]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in alerts:
        labels = rule.get("labels")
        annotations = rule.get("annotations")
        assert isinstance(labels, dict) and isinstance(annotations, dict), rule["alert"]
        assert labels.get("severity") in {"critical", "warning", "info"}, rule["alert"]
        for key in ("summary", "description", "runbook_url"):
            assert str(annotations.get(key, "")).strip(), f"{rule['alert']} lacks {key}"


def test_every_alert_has_a_firing_and_a_quiet_promtool_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        suite = yaml.safe_load(path.read_text())
        assert suite["rule_files"] == [RULES.name], path.name
        for test in suite["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {str(rule["alert"]) for rule in _alerts()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"
    assert (firing | quiet) - names == set(), "tests for alerts that do not exist"
