"""The `fraudstream` command line: the happy path end to end, and bad input of every kind.

Happy paths run in-process (`CliRunner`). Error cases go through `fraudstream.cli.main`, where
FraudstreamError becomes `error: ...` on stderr and exit code 2: most call `main()` in-process
(any other exception escapes and fails the test, which is what a traceback would be), and a few
run the real console entry point in a subprocess to check stderr end to end.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import typer.main
from typer.testing import CliRunner, Result

from fraudstream.cli import app, main
from models.features import FEATURE_NAMES
from models.registry import HISTORY_FILE, METADATA_FILE, MODEL_FILE, SUMS_FILE, ModelRegistry
from models.report import (
    COST_CURVE_PNG,
    HTML_REPORT,
    MARKDOWN_REPORT,
    PRECISION_RECALL_PNG,
    SCORE_HISTOGRAM_PNG,
)
from models.training import TrainingResult
from schemas.events import FraudScore, Label, epoch_ms
from schemas.jsonl import write_events

if TYPE_CHECKING:
    from tests.conftest import SimulatedData, TrainedRegistry

REGISTRY_ENV = "FRAUD_REGISTRY_DIR"
runner = CliRunner()

# Each CLI run sees no FRAUD_* variables from the developer's shell (None unsets in CliRunner).
CLEAN_ENV: dict[str, str | None] = {name: None for name in os.environ if name.startswith("FRAUD_")}


@pytest.fixture(autouse=True)
def _no_fraud_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CLEAN_ENV:
        monkeypatch.delenv(name, raising=False)


def invoke(*args: object, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, [str(a) for a in args], env={**CLEAN_ENV, **(env or {})})


def ok(*args: object, env: dict[str, str] | None = None) -> Result:
    result = invoke(*args, env=env)
    assert result.exit_code == 0, (
        f"fraudstream {' '.join(map(str, args))} failed ({result.exit_code}):\n"
        f"{result.output}\n{result.exception!r}"
    )
    return result


def ok_json(*args: object, env: dict[str, str] | None = None) -> dict[str, Any]:
    data = json.loads(ok(*args, "--json", env=env).stdout)
    assert isinstance(data, dict)
    return data


def assert_clean_error(code: int | str | None, stderr: str) -> str:
    """A handled error: exit 2, one `error: ...` line, no traceback. Returns all of stderr."""
    assert code == 2, f"exit code {code!r}, stderr:\n{stderr}"
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return stderr


@pytest.fixture
def fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., str]:
    """Run `fraudstream ARGS` through `main()` in-process; it must fail cleanly. Gives stderr."""

    def run(*args: object) -> str:
        monkeypatch.setattr(sys, "argv", ["fraudstream", *map(str, args)])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main()
        return assert_clean_error(exited.value.code, capsys.readouterr().err)

    return run


def run_script(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The console script's entry point (`fraudstream.cli:main`) in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_")}
    return subprocess.run(
        [sys.executable, "-m", "fraudstream.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )


def script_fails(*args: object, cwd: Path) -> str:
    done = run_script(*args, cwd=cwd)
    return assert_clean_error(done.returncode, done.stderr)


def write_lines(path: Path, lines: list[str] | list[bytes]) -> Path:
    raw = [line.encode() if isinstance(line, str) else line for line in lines]
    path.write_bytes(b"".join(line + b"\n" for line in raw))
    return path


def registry_state(root: Path) -> dict[str, bytes]:
    """Every file under a registry, by relative path, with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def hidden_entries(store: ModelRegistry) -> list[str]:
    """Leftovers of interrupted writes (`.incoming-*` directories, `.history.json.*` files)."""
    found = [p.name for p in store.base.iterdir() if p.name.startswith(".")]
    if store.versions_dir.is_dir():
        found += [p.name for p in store.versions_dir.iterdir() if p.name.startswith(".")]
    return found


# -- the happy path, end to end -------------------------------------------------------------
@dataclass(frozen=True)
class Pipeline:
    data_dir: Path
    registry: Path
    scores_file: Path
    report_dir: Path
    simulated: dict[str, Any]
    trained: dict[str, Any]
    scored: dict[str, Any]
    evaluated: dict[str, Any]


@pytest.fixture(scope="module")
def pipeline(
    tmp_path_factory: pytest.TempPathFactory,
    small_dataset: SimulatedData,
) -> Pipeline:
    """simulate -> train --promote -> score --labels -> evaluate --report, all through the CLI."""
    base = tmp_path_factory.mktemp("pipeline")
    config = small_dataset.config
    data_dir, registry = base / "data", base / "registry"
    scores_file, report_dir = base / "scores.jsonl", base / "report"
    simulated = ok_json(
        "simulate",
        "--out",
        data_dir,
        "--days",
        config.days,
        "--seed",
        config.seed,
        "--start",
        config.start.isoformat(),
        "--customers",
        config.customers,
        "--merchants",
        config.merchants,
    )
    tx_file, label_file = data_dir / "transactions.jsonl", data_dir / "labels.jsonl"
    trained = ok_json(
        "train",
        "--transactions",
        tx_file,
        "--labels",
        label_file,
        "--registry",
        registry,
        "--promote",
    )
    scored = ok_json(
        "score",
        "--transactions",
        tx_file,
        "--labels",
        label_file,
        "--registry",
        registry,
        "--out",
        scores_file,
    )
    evaluated = ok_json(
        "evaluate", "--scores", scores_file, "--labels", label_file, "--report", report_dir
    )
    return Pipeline(
        data_dir, registry, scores_file, report_dir, simulated, trained, scored, evaluated
    )


def test_simulate_writes_the_same_files_as_the_simulator(
    pipeline: Pipeline, small_dataset: SimulatedData
) -> None:
    assert pipeline.simulated["transactions"] == len(small_dataset.transactions)
    assert pipeline.simulated["frauds"] == small_dataset.summary["frauds"]
    for name in ("transactions.jsonl", "labels.jsonl"):
        assert (pipeline.data_dir / name).read_bytes() == (
            small_dataset.directory / name
        ).read_bytes()


def test_train_registers_and_promotes_a_complete_version(
    pipeline: Pipeline, small_training: TrainingResult
) -> None:
    trained = pipeline.trained
    assert (trained["version"], trained["champion"]) == ("v1", "v1")
    assert 0.5 < trained["validation"]["auc_roc"] <= 1.0
    assert 0.0 <= trained["thresholds"]["review"] <= trained["thresholds"]["decline"] <= 1.0
    version_dir = Path(trained["path"])
    assert version_dir == pipeline.registry / "fraud-xgb" / "versions" / "v1"
    assert sorted(p.name for p in version_dir.iterdir()) == sorted(
        [MODEL_FILE, METADATA_FILE, SUMS_FILE]
    )
    # SHA256SUMS is `sha256sum -c` compatible and matches both files.
    sums: dict[str, str] = {}
    for line in (version_dir / SUMS_FILE).read_text().splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    for name in (MODEL_FILE, METADATA_FILE):
        assert sums[name] == hashlib.sha256((version_dir / name).read_bytes()).hexdigest()
    assert trained["sha256"] == sums[MODEL_FILE]
    # The CLI trains exactly what the library trains with its defaults.
    assert (version_dir / MODEL_FILE).read_bytes() == small_training.model_bytes
    assert trained["data"]["fingerprint"] == small_training.metadata["data"]["fingerprint"]
    assert hidden_entries(ModelRegistry(pipeline.registry, "fraud-xgb")) == []


def test_score_writes_one_valid_score_per_transaction(
    pipeline: Pipeline, small_dataset: SimulatedData
) -> None:
    assert pipeline.scored["scored"] == len(small_dataset.transactions)
    assert pipeline.scored["model_version"] == "v1"
    lines = pipeline.scores_file.read_bytes().splitlines()
    scores = [FraudScore.model_validate_json(line) for line in lines]
    assert len(scores) == len(small_dataset.transactions)
    assert {s.transaction_id for s in scores} == {
        tx.transaction_id for tx in small_dataset.transactions
    }
    thresholds = pipeline.trained["thresholds"]
    for s in scores:
        expected = (
            "decline"
            if s.score >= thresholds["decline"]
            else "review"
            if s.score >= thresholds["review"]
            else "approve"
        )
        assert s.decision == expected
        assert list(s.features) == list(FEATURE_NAMES)
    assert {s.decision for s in scores} >= {"approve", "decline"}


def test_evaluate_reports_sensible_metrics_and_writes_the_report(
    pipeline: Pipeline, small_dataset: SimulatedData
) -> None:
    evaluated = pipeline.evaluated
    assert evaluated["n_transactions"] == len(small_dataset.transactions)
    assert evaluated["n_frauds"] == small_dataset.summary["frauds"]
    assert evaluated["unlabelled_skipped"] == 0
    assert 0.5 < evaluated["auc_roc"] <= 1.0
    assert evaluated["fraud_rate"] < evaluated["average_precision"] <= 1.0
    assert evaluated["expected_cost"] < evaluated["cost_no_model"]
    expected = {
        PRECISION_RECALL_PNG,
        SCORE_HISTOGRAM_PNG,
        COST_CURVE_PNG,
        MARKDOWN_REPORT,
        HTML_REPORT,
    }
    assert {Path(p).name for p in evaluated["report"]} == expected
    for name in expected:
        assert (pipeline.report_dir / name).stat().st_size > 0
    # The report says what it evaluated: which model, over which event-time window.
    times = sorted(t.timestamp for t in small_dataset.transactions)
    assert evaluated["model_versions"] == {"v1": len(small_dataset.transactions)}
    assert datetime.fromisoformat(evaluated["first_event_time"]) == times[0]
    assert datetime.fromisoformat(evaluated["last_event_time"]) == times[-1]
    markdown = (pipeline.report_dir / MARKDOWN_REPORT).read_text()
    assert f"| Model version(s) | v1 ({len(times)}) |" in markdown
    assert f"{evaluated['first_event_time']} to {evaluated['last_event_time']}" in markdown


@dataclass(frozen=True)
class FewScores:
    path: Path
    scores: list[FraudScore]


@pytest.fixture(scope="module")
def few_scores(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> FewScores:
    """The pipeline's first 3000 scores in a file of their own: quick to evaluate."""
    lines = pipeline.scores_file.read_bytes().splitlines()[:3000]
    path = write_lines(tmp_path_factory.mktemp("few-scores") / "scores.jsonl", lines)
    return FewScores(path, [FraudScore.model_validate_json(line) for line in lines])


def test_evaluate_prints_a_table_and_honours_the_period(
    pipeline: Pipeline, few_scores: FewScores
) -> None:
    since = few_scores.scores[1500].event_time
    in_period = sum(1 for s in few_scores.scores if s.event_time >= since)
    assert 1000 < in_period < len(few_scores.scores)
    result = ok(
        "evaluate",
        "--scores",
        few_scores.path,
        "--labels",
        pipeline.data_dir / "labels.jsonl",
        "--from",
        since.isoformat(),
    )
    rows = {}
    for line in result.stdout.splitlines():
        cells = [cell.strip() for cell in line.split("│") if cell.strip()]
        if len(cells) == 2:
            rows[cells[0]] = cells[1]
    assert rows["n_transactions"] == str(in_period)
    assert 0.5 < float(rows["auc_roc"]) <= 1.0
    assert rows["model_versions"] == f"v1 ({in_period})"
    assert rows["window"].startswith(since.isoformat().replace("+00:00", "Z"))


def test_models_list_and_show(pipeline: Pipeline) -> None:
    listed = ok_json("models", "list", "--registry", pipeline.registry)
    assert listed["champion"] == "v1"
    assert [(v["version"], v["champion"]) for v in listed["versions"]] == [("v1", True)]
    assert listed["versions"][0]["auc_roc"] == pipeline.trained["validation"]["auc_roc"]
    human = ok("models", "list", "--registry", pipeline.registry).stdout
    assert "v1" in human
    assert "*" in human

    shown = json.loads(ok("models", "show", "--registry", pipeline.registry).stdout)
    assert shown["version"] == "v1"
    assert shown["champion"] is True
    assert shown["feature_names"] == list(FEATURE_NAMES)
    assert shown["model_sha256"] == pipeline.trained["sha256"]
    assert shown["thresholds"] == pipeline.trained["thresholds"]


def test_human_output_of_simulate_train_and_score(
    tmp_path: Path, tiny_dataset: SimulatedData
) -> None:
    simulated = ok("simulate", "--out", tmp_path / "sim", "--days", 3, "--customers", 20)
    assert "wrote" in simulated.stdout
    assert "fraud_rate" in simulated.stdout
    registry = tmp_path / "registry"
    trained = ok(
        "train",
        "--transactions",
        tiny_dataset.transactions_file,
        "--labels",
        tiny_dataset.labels_file,
        "--registry",
        registry,
        "--promote",
    )
    assert "registered fraud-xgb v1" in trained.stdout
    assert "(champion)" in trained.stdout
    assert "thresholds: review >=" in trained.stdout
    few = write_lines(
        tmp_path / "few.jsonl", tiny_dataset.transactions_file.read_bytes().splitlines()[:50]
    )
    scored = ok(
        "score",
        "--transactions",
        few,
        "--registry",
        registry,
        "--version",
        "v1",
        "--out",
        tmp_path / "scores.jsonl",
    )
    assert "scored 50 transactions with fraud-xgb v1" in scored.stdout
    assert "no --labels" in scored.stderr  # says why merchant fraud rates are 0


def test_registry_dir_comes_from_the_environment(trained_registry: TrainedRegistry) -> None:
    listed = ok_json("models", "list", env={REGISTRY_ENV: str(trained_registry.root)})
    assert listed["champion"] == trained_registry.version


# Typer builds its commands on its own copy of click, so groups are recognised by `commands`.
def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _takes_registry(path: tuple[str, ...]) -> bool:
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return any("--registry" in param.opts for param in command.params)


ALL_COMMANDS = list(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "fraudstream")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = ok(*path, "--help")
    assert "Usage:" in result.stdout
    if _takes_registry(path):
        assert REGISTRY_ENV in result.stdout


def test_the_registry_option_is_where_we_expect_it() -> None:
    # Guards the help test above against silently checking nothing.
    with_registry = {" ".join(p) for p in ALL_COMMANDS if _takes_registry(p)}
    assert {"train", "score", "models list", "models show"} <= with_registry


# -- missing, unreadable and malformed files --------------------------------------------------
def test_missing_transactions_file(
    fails: Callable[..., str], tmp_path: Path, tiny_dataset: SimulatedData
) -> None:
    missing = tmp_path / "nope.jsonl"
    message = fails(
        "train",
        "--transactions",
        missing,
        "--labels",
        tiny_dataset.labels_file,
        "--registry",
        tmp_path / "registry",
    )
    assert f"{missing}: file not found" in message
    assert not (tmp_path / "registry").exists()


def test_directory_instead_of_a_file(
    fails: Callable[..., str], tmp_path: Path, tiny_dataset: SimulatedData
) -> None:
    message = fails(
        "train",
        "--transactions",
        tiny_dataset.transactions_file,
        "--labels",
        tmp_path,
        "--registry",
        tmp_path / "registry",
    )
    assert f"{tmp_path}: is a directory" in message


def test_empty_file(fails: Callable[..., str], tmp_path: Path, tiny_dataset: SimulatedData) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    message = fails(
        "train",
        "--transactions",
        empty,
        "--labels",
        tiny_dataset.labels_file,
        "--registry",
        tmp_path / "registry",
    )
    assert f"{empty}: no valid Transaction records" in message


def _with_bad_lines(tiny_dataset: SimulatedData, path: Path, count: int) -> Path:
    """The first `count` transactions, with bad lines as lines 2 (not JSON), 4 (bad amount)
    and 6 (not UTF-8)."""
    lines = tiny_dataset.transactions_file.read_bytes().splitlines()[:count]
    bad_amount = json.loads(lines[0])
    bad_amount["amount"] = -3.0
    lines.insert(1, b'{"transaction_id": "tx1", "user_id": ')
    lines.insert(3, json.dumps(bad_amount).encode())
    lines.insert(5, b'{"transaction_id": "\xff\xfe"}')
    return write_lines(path, lines)


def test_malformed_line_names_file_and_line(tmp_path: Path, tiny_dataset: SimulatedData) -> None:
    bad = _with_bad_lines(tiny_dataset, tmp_path / "transactions.jsonl", 50)
    message = script_fails(
        "train",
        "--transactions",
        bad,
        "--labels",
        tiny_dataset.labels_file,
        "--registry",
        tmp_path / "registry",
        cwd=tmp_path,
    )
    assert f"{bad}:2: invalid Transaction" in message
    assert "--skip-invalid" in message
    assert len(message.strip().splitlines()) == 1


def test_schema_errors_name_the_field(
    fails: Callable[..., str], tmp_path: Path, tiny_dataset: SimulatedData
) -> None:
    lines = tiny_dataset.transactions_file.read_bytes().splitlines()[:5]
    record = json.loads(lines[2])
    record["amount"] = -3.0
    lines[2] = json.dumps(record).encode()
    bad = write_lines(tmp_path / "transactions.jsonl", lines)
    message = fails(
        "train",
        "--transactions",
        bad,
        "--labels",
        tiny_dataset.labels_file,
        "--registry",
        tmp_path / "registry",
    )
    assert f"{bad}:3: invalid Transaction: amount:" in message


def test_labels_given_as_transactions(
    fails: Callable[..., str], tmp_path: Path, tiny_dataset: SimulatedData
) -> None:
    message = fails(
        "train",
        "--transactions",
        tiny_dataset.labels_file,
        "--labels",
        tiny_dataset.labels_file,
        "--registry",
        tmp_path / "registry",
    )
    assert f"{tiny_dataset.labels_file}:1: invalid Transaction" in message


def test_skip_invalid_goes_on_and_counts(
    tmp_path: Path, tiny_dataset: SimulatedData, trained_registry: TrainedRegistry
) -> None:
    bad = _with_bad_lines(tiny_dataset, tmp_path / "transactions.jsonl", 300)
    out_file = tmp_path / "scores.jsonl"
    result = ok(
        "score",
        "--transactions",
        bad,
        "--registry",
        trained_registry.root,
        "--out",
        out_file,
        "--skip-invalid",
        "--json",
    )
    assert json.loads(result.stdout)["scored"] == 300
    assert len(out_file.read_bytes().splitlines()) == 300
    assert f"skipped 3 invalid line(s) in {bad}" in result.stderr
    for number in (2, 4, 6):
        assert f"{bad}:{number}: invalid Transaction" in result.stderr


def test_skip_invalid_with_nothing_valid_still_fails(
    fails: Callable[..., str], tmp_path: Path, trained_registry: TrainedRegistry
) -> None:
    junk = write_lines(tmp_path / "junk.jsonl", ["not json", "{}"])
    message = fails(
        "score",
        "--transactions",
        junk,
        "--registry",
        trained_registry.root,
        "--out",
        tmp_path / "scores.jsonl",
        "--skip-invalid",
    )
    assert f"{junk}: no valid Transaction records" in message
    assert not (tmp_path / "scores.jsonl").exists()


def test_unwritable_output_is_an_error_not_a_traceback(
    fails: Callable[..., str], tmp_path: Path
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    message = fails("simulate", "--out", a_file, "--days", 2, "--customers", 5, "--merchants", 5)
    assert str(a_file) in message
    assert a_file.read_text() == ""


def test_bad_setting_in_the_environment(
    fails: Callable[..., str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FRAUD_COST_REVIEW", "cheap")
    message = fails("models", "list", "--registry", tmp_path)
    assert "FRAUD_COST_REVIEW" in message


# -- training on data that cannot give a sound model ------------------------------------------
def _labels_file(path: Path, labels: list[Label]) -> Path:
    write_events(path, labels)
    return path


def test_labels_for_unknown_transactions(
    fails: Callable[..., str], tmp_path: Path, tiny_dataset: SimulatedData
) -> None:
    labels = [*tiny_dataset.labels, Label(transaction_id="tx_ghost", is_fraud=True)]
    message = fails(
        "train",
        "--transactions",
        tiny_dataset.transactions_file,
        "--labels",
        _labels_file(tmp_path / "labels.jsonl", labels),
        "--registry",
        tmp_path / "registry",
    )
    assert "1 label(s) refer to transactions not in the transactions file" in message
    assert "tx_ghost" in message


def test_one_class_training_fails_and_leaves_the_registry_alone(
    tmp_path: Path, tiny_dataset: SimulatedData, copy_registry: TrainedRegistry
) -> None:
    before = registry_state(copy_registry.root)
    genuine_only = [lab.model_copy(update={"is_fraud": False}) for lab in tiny_dataset.labels]
    message = script_fails(
        "train",
        "--transactions",
        tiny_dataset.transactions_file,
        "--labels",
        _labels_file(tmp_path / "labels.jsonl", genuine_only),
        "--registry",
        copy_registry.root,
        "--promote",
        cwd=tmp_path,
    )
    assert "only one class (0 frauds in" in message
    store = copy_registry.store()
    assert store.list_versions() == [copy_registry.version]
    assert store.champion() == copy_registry.version
    assert hidden_entries(store) == []
    assert registry_state(copy_registry.root) == before


def test_too_few_frauds(
    fails: Callable[..., str], tmp_path: Path, tiny_dataset: SimulatedData
) -> None:
    # Default window with as_of = last transaction: the fit part is [as_of - 28 d, as_of - 14 d).
    as_of = max(tx.timestamp for tx in tiny_dataset.transactions)
    lo, hi = as_of - timedelta(days=27), as_of - timedelta(days=15)
    fraud_ids = {lab.transaction_id for lab in tiny_dataset.labels if lab.is_fraud}
    in_fit = sorted(
        tx.transaction_id
        for tx in tiny_dataset.transactions
        if tx.transaction_id in fraud_ids and lo <= tx.timestamp < hi
    )
    assert len(in_fit) > 3
    keep = set(in_fit[:3])
    labels = [
        lab.model_copy(update={"is_fraud": lab.transaction_id in keep})
        for lab in tiny_dataset.labels
    ]
    message = fails(
        "train",
        "--transactions",
        tiny_dataset.transactions_file,
        "--labels",
        _labels_file(tmp_path / "labels.jsonl", labels),
        "--registry",
        tmp_path / "registry",
    )
    assert "the fit part has only 3 frauds (need at least 10)" in message
    assert not (tmp_path / "registry").exists()


def test_window_before_the_data(
    fails: Callable[..., str], tmp_path: Path, tiny_dataset: SimulatedData
) -> None:
    message = fails(
        "train",
        "--transactions",
        tiny_dataset.transactions_file,
        "--labels",
        tiny_dataset.labels_file,
        "--registry",
        tmp_path / "registry",
        "--as-of",
        "2001-01-01",
    )
    assert "no labelled transactions" in message


def test_bad_as_of_is_reported_before_files_are_read(
    fails: Callable[..., str], tmp_path: Path
) -> None:
    message = fails(
        "train",
        "--transactions",
        tmp_path / "missing.jsonl",
        "--labels",
        tmp_path / "missing-too.jsonl",
        "--registry",
        tmp_path / "registry",
        "--as-of",
        "yesterday",
    )
    assert "--as-of: 'yesterday' is not an ISO date or datetime" in message


def test_window_shorter_than_gap_and_validation(fails: Callable[..., str], tmp_path: Path) -> None:
    message = fails(
        "train",
        "--transactions",
        tmp_path / "missing.jsonl",
        "--labels",
        tmp_path / "missing-too.jsonl",
        "--train-days",
        "6",
    )
    assert "must be longer than gap + validation" in message


# -- a registry that cannot be trusted ------------------------------------------------------
def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def test_score_refuses_a_tampered_model(
    tmp_path: Path, copy_registry: TrainedRegistry, tiny_dataset: SimulatedData
) -> None:
    model_file = copy_registry.store().versions_dir / copy_registry.version / MODEL_FILE
    _flip_last_byte(model_file)
    out_file = tmp_path / "scores.jsonl"
    message = script_fails(
        "score",
        "--transactions",
        tiny_dataset.transactions_file,
        "--registry",
        copy_registry.root,
        "--out",
        out_file,
        cwd=tmp_path,
    )
    assert f"{model_file}: checksum mismatch" in message
    assert "refusing" in message
    assert not out_file.exists()


def test_show_and_promote_refuse_tampered_metadata(
    fails: Callable[..., str], copy_registry: TrainedRegistry
) -> None:
    store = copy_registry.store()
    meta_file = store.versions_dir / copy_registry.version / METADATA_FILE
    meta = json.loads(meta_file.read_text())
    meta["thresholds"]["decline"] = 1.0  # approve everything: exactly what tampering would do
    meta_file.write_text(json.dumps(meta))
    history = (store.base / HISTORY_FILE).read_bytes()

    message = fails("models", "show", "--registry", copy_registry.root)
    assert f"{meta_file}: checksum mismatch" in message
    message = fails("models", "promote", copy_registry.version, "--registry", copy_registry.root)
    assert "checksum mismatch" in message
    assert (store.base / HISTORY_FILE).read_bytes() == history


def test_incomplete_version_is_refused(
    fails: Callable[..., str],
    tmp_path: Path,
    copy_registry: TrainedRegistry,
    tiny_dataset: SimulatedData,
) -> None:
    version_dir = copy_registry.store().versions_dir / copy_registry.version
    (version_dir / SUMS_FILE).unlink()
    message = fails(
        "score",
        "--transactions",
        tiny_dataset.transactions_file,
        "--registry",
        copy_registry.root,
        "--out",
        tmp_path / "scores.jsonl",
    )
    assert f"{version_dir}: incomplete version" in message


def test_score_without_a_champion(
    fails: Callable[..., str], tmp_path: Path, tiny_dataset: SimulatedData
) -> None:
    message = fails(
        "score",
        "--transactions",
        tiny_dataset.transactions_file,
        "--registry",
        tmp_path / "empty-registry",
        "--out",
        tmp_path / "scores.jsonl",
    )
    assert "no champion" in message
    assert "train --promote" in message
    assert "demo" not in message  # no demo registry here: no hint


def test_score_checks_its_input_files_before_the_registry(
    fails: Callable[..., str], tmp_path: Path, tiny_dataset: SimulatedData
) -> None:
    for transactions, labels in (
        (tmp_path / "nope.jsonl", None),
        (tiny_dataset.transactions_file, tmp_path / "nope.jsonl"),
    ):
        message = fails(
            "score",
            "--transactions",
            transactions,
            *(["--labels", labels] if labels else []),
            "--registry",
            tmp_path / "empty-registry",
            "--out",
            tmp_path / "scores.jsonl",
        )
        assert f"{tmp_path / 'nope.jsonl'}: file not found" in message
        assert "champion" not in message


def test_without_a_champion_the_error_points_at_the_demo_registry(
    fails: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    copy_registry: TrainedRegistry,
    tiny_dataset: SimulatedData,
) -> None:
    demo = tmp_path / "state" / "demo" / "registry"
    demo.parent.mkdir(parents=True)
    copy_registry.root.rename(demo)
    monkeypatch.setenv("FRAUD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path / "empty-registry"))
    message = fails(
        "score", "--transactions", tiny_dataset.transactions_file, "--out", tmp_path / "s.jsonl"
    )
    assert "no champion" in message
    assert f"the demo's models are in {demo}: pass --registry {demo}" in message
    listed = invoke(
        "models",
        "list",
        env={"FRAUD_STATE_DIR": str(tmp_path / "state"), REGISTRY_ENV: str(tmp_path / "empty")},
    )
    assert f"the demo's models are in {demo}: pass --registry {demo}" in listed.stdout


def test_the_worker_keeps_faust_data_under_the_state_dir(tmp_path: Path) -> None:
    from fraudstream.cli import worker_config
    from fraudstream.settings import Settings

    config = worker_config(Settings(state_dir=tmp_path, app_id="scorers"))
    assert config.data_dir == str(tmp_path / "scorers-data")


def test_promote_unknown_version(fails: Callable[..., str], copy_registry: TrainedRegistry) -> None:
    history = (copy_registry.store().base / HISTORY_FILE).read_bytes()
    message = fails("models", "promote", "v99", "--registry", copy_registry.root)
    assert "v99: no such version (known: v1)" in message
    message = fails("models", "promote", "latest", "--registry", copy_registry.root)
    assert "'latest' is not a version name" in message
    assert (copy_registry.store().base / HISTORY_FILE).read_bytes() == history


def test_promote_then_rollback(
    fails: Callable[..., str], copy_registry: TrainedRegistry, small_training: TrainingResult
) -> None:
    store = copy_registry.store()
    message = fails("models", "rollback", "--registry", copy_registry.root)
    assert "nothing to roll back to (champion history: v1)" in message

    second = store.register(small_training.model_bytes, small_training.metadata).version
    assert second == "v2"
    promoted = ok(
        "models",
        "promote",
        second,
        "--registry",
        copy_registry.root,
        "--reason",
        "t",
        "--no-notify",
    )
    assert "champion is now v2" in promoted.stdout
    rolled = ok("models", "rollback", "--registry", copy_registry.root, "--no-notify")
    assert "champion is now v1" in rolled.stdout
    assert store.champion() == "v1"
    assert [(h["action"], h["version"]) for h in store.history()][-2:] == [
        ("promote", "v2"),
        ("rollback", "v1"),
    ]
    fails("models", "rollback", "--registry", copy_registry.root)
    assert store.champion() == "v1"


def test_a_crash_while_registering_leaves_no_version(
    monkeypatch: pytest.MonkeyPatch, copy_registry: TrainedRegistry
) -> None:
    """Versions are staged in a hidden directory and renamed in whole: a failure half-way
    (here: the disk fills up writing the checksums, the last file) leaves nothing behind."""
    store = copy_registry.store()
    before = registry_state(copy_registry.root)
    seen_while_writing: list[tuple[str, list[str], bool]] = []
    real_write_text, real_write_bytes = Path.write_text, Path.write_bytes

    def disk_full(path: Path) -> None:
        if path.name == SUMS_FILE:
            seen_while_writing.append(
                (path.parent.name, store.list_versions(), (path.parent / MODEL_FILE).exists())
            )
            raise OSError(28, "No space left on device", str(path))

    def write_text(path: Path, *args: Any, **kwargs: Any) -> int:
        disk_full(path)
        return real_write_text(path, *args, **kwargs)

    def write_bytes(path: Path, data: Any) -> int:
        disk_full(path)
        return real_write_bytes(path, data)

    monkeypatch.setattr(Path, "write_text", write_text)
    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    result = copy_registry.result
    with pytest.raises(OSError, match="No space left"):
        store.register(result.model_bytes, result.metadata)
    monkeypatch.undo()

    [(staging, visible, model_written)] = seen_while_writing
    assert staging.startswith(".incoming-")
    assert model_written
    assert visible == [copy_registry.version]  # the new version was never visible
    assert store.list_versions() == [copy_registry.version]
    assert hidden_entries(store) == []
    assert registry_state(copy_registry.root) == before
    # The next attempt takes the number the failed one would have had, and is complete.
    assert store.register(result.model_bytes, result.metadata).version == "v2"
    assert sorted(p.name for p in (store.versions_dir / "v2").iterdir()) == sorted(
        [MODEL_FILE, METADATA_FILE, SUMS_FILE]
    )


# -- simulate and evaluate options -----------------------------------------------------------
def test_simulate_unknown_scenario(fails: Callable[..., str], tmp_path: Path) -> None:
    out_dir = tmp_path / "sim"
    message = fails("simulate", "--out", out_dir, "--days", 2, "--scenario", "alien_invasion")
    assert "unknown fraud scenario 'alien_invasion'" in message
    assert "card_testing" in message  # the known ones are listed
    assert not out_dir.exists()


def test_simulate_bad_start(fails: Callable[..., str], tmp_path: Path) -> None:
    message = fails("simulate", "--out", tmp_path / "sim", "--start", "01/04/2018")
    assert "--start: '01/04/2018' is not a date" in message


def test_evaluate_with_no_labelled_rows_in_the_period(
    fails: Callable[..., str], pipeline: Pipeline, few_scores: FewScores
) -> None:
    message = fails(
        "evaluate",
        "--scores",
        few_scores.path,
        "--labels",
        pipeline.data_dir / "labels.jsonl",
        "--from",
        "2030-01-01",
    )
    assert "no scored transaction with a label in the selected period" in message


def test_evaluate_with_labels_of_other_transactions(
    fails: Callable[..., str], tmp_path: Path, few_scores: FewScores
) -> None:
    others = _labels_file(
        tmp_path / "labels.jsonl", [Label(transaction_id="tx_other", is_fraud=False)]
    )
    message = fails("evaluate", "--scores", few_scores.path, "--labels", others)
    assert "no scored transaction with a label" in message


def test_evaluate_bad_period(fails: Callable[..., str], tmp_path: Path) -> None:
    message = fails(
        "evaluate",
        "--scores",
        tmp_path / "missing.jsonl",
        "--labels",
        tmp_path / "missing.jsonl",
        "--to",
        "end of May",
    )
    assert "--to: 'end of May' is not an ISO date or datetime" in message


def test_evaluate_scores_file_must_hold_scores(
    fails: Callable[..., str], tiny_dataset: SimulatedData
) -> None:
    message = fails(
        "evaluate",
        "--scores",
        tiny_dataset.transactions_file,
        "--labels",
        tiny_dataset.labels_file,
    )
    assert f"{tiny_dataset.transactions_file}:1: invalid FraudScore" in message


def test_as_of_labels_cut_is_in_utc_when_no_offset_is_given(
    tmp_path: Path, tiny_dataset: SimulatedData
) -> None:
    """A naive --as-of is read as UTC: the window in the metadata ends delay_days before it."""
    as_of = max(tx.timestamp for tx in tiny_dataset.transactions).astimezone(UTC)
    naive = as_of.replace(tzinfo=None, microsecond=0).isoformat()
    trained = ok_json(
        "train",
        "--transactions",
        tiny_dataset.transactions_file,
        "--labels",
        tiny_dataset.labels_file,
        "--registry",
        tmp_path / "registry",
        "--as-of",
        naive,
    )
    window = trained["training_window"]
    assert window["as_of"] == naive + "Z"
    end = datetime.fromisoformat(window["end"])
    assert epoch_ms(end) == epoch_ms(as_of.replace(microsecond=0)) - 7 * 86_400_000
    assert trained["champion"] is None  # not promoted without --promote
