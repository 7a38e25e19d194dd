"""The `fraudstream` command line. Thin: parse, read settings, call the core, print."""

from __future__ import annotations

import json
import logging.config
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fraudstream.settings import Settings, env_var
from schemas.errors import FraudstreamError, InputError, RegistryError
from schemas.events import FraudScore, Label, Transaction, epoch_ms
from schemas.jsonl import ReadResult, iter_events, read_events, require_inputs, write_events

app = typer.Typer(
    name="fraudstream",
    help="Real-time fraud scoring on Kafka: simulate, train, score, evaluate, stream.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(
    help="The model registry: list, show, promote, roll back.", no_args_is_help=True
)
schemas_app = typer.Typer(help="Event schemas (JSON Schema export).", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(schemas_app, name="schemas")

out = Console()
# soft_wrap: Rich must not break error lines at 80 columns (pipes, CI logs); a message keeps
# its `path:line` on one line, so it can be read, grepped and copied.
err = Console(stderr=True, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON result.")]
SkipInvalid = Annotated[
    bool,
    typer.Option("--skip-invalid", help="Skip (and count) malformed lines instead of stopping."),
]


def _registry_option() -> Any:
    return typer.Option(
        "--registry",
        # Escaped: unescaped, Rich help takes "[env: ...]" for a markup tag and drops it.
        help="Model registry directory " + escape(f"[env: {env_var('registry_dir')}]") + ".",
    )


RegistryOpt = Annotated[Path | None, _registry_option()]


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{env_var(str(e['loc'][0])) if e['loc'] else 'settings'}: {e['msg']}"
            for e in exc.errors()
        )
        raise InputError(f"invalid setting in the environment: {problems}") from None


def _costs(settings: Settings) -> Any:
    """The decision costs from FRAUD_COST_* (thresholds, evaluation, the gate)."""
    from models.evaluation import Costs

    return Costs(
        review=settings.cost_review,
        missed_fraud=settings.cost_missed_fraud,
        false_decline=settings.cost_false_decline,
    )


def _emit(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")


def _report_skipped(path: Path, result: ReadResult[Any]) -> None:
    if result.skipped:
        err.print(f"[yellow]skipped {result.skipped} invalid line(s) in {path}[/]")
        for message in result.first_errors:
            err.print(f"  {message}", markup=False)


def _read(path: Path, model: type[Any], skip_invalid: bool) -> ReadResult[Any]:
    result: ReadResult[Any] = read_events(path, model, skip_invalid=skip_invalid)
    _report_skipped(path, result)
    if not result.records:
        raise InputError(f"{path}: no valid {model.__name__} records")
    return result


def _parse_when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{option}: '{value}' is not an ISO date or datetime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -- schemas ----------------------------------------------------------------------------------
@schemas_app.command("export")
def schemas_export(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write *.schema.json to.")] = (
        Path("schemas/json")
    ),
) -> None:
    """Write the JSON Schema of every event model (committed under schemas/json/)."""
    from schemas.export import export_schemas

    for path in export_schemas(out_dir):
        out.print(f"wrote {path}")


# -- simulate ---------------------------------------------------------------------------------
@app.command()
def simulate(
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory.")],
    days: Annotated[int, typer.Option(help="Number of simulated days.")] = 183,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 0,
    start: Annotated[str, typer.Option(help="First day (YYYY-MM-DD).")] = "2018-04-01",
    customers: Annotated[int, typer.Option(help="Number of customers (cards).")] = 5000,
    merchants: Annotated[int, typer.Option(help="Number of merchants (terminals).")] = 10000,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            help="Fraud scenario, repeatable: large_amount, compromised_merchants, "
            "compromised_customers, card_testing (drift, starts mid-way), or all. "
            "Default: the first three."
        ),
    ] = None,
    drift_day: Annotated[
        int | None, typer.Option(help="Day card_testing starts (default: days // 2).")
    ] = None,
    card_tests_per_day: Annotated[
        float | None,
        typer.Option(help="card_testing bursts a day (default: 3 per 5,000 customers)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Write labelled synthetic traffic: OUT/transactions.jsonl and OUT/labels.jsonl."""
    from producers.simulator import DEFAULT_SCENARIOS, SimulationConfig, write_traffic
    from producers.simulator import simulate as run_simulation

    try:
        first_day = date.fromisoformat(start)
    except ValueError:
        raise InputError(f"--start: '{start}' is not a date (YYYY-MM-DD)") from None
    names: tuple[str, ...] = tuple(scenario) if scenario else DEFAULT_SCENARIOS  # "all": config
    config = SimulationConfig(
        customers=customers,
        merchants=merchants,
        days=days,
        start=first_day,
        seed=seed,
        scenarios=names,
        drift_day=drift_day,
        card_tests_per_day=card_tests_per_day,
    )
    began = time.perf_counter()
    traffic = run_simulation(config)
    tx_path, label_path = write_traffic(traffic, out_dir)
    summary = {
        **traffic.summary(),
        "transactions_file": str(tx_path),
        "labels_file": str(label_path),
        "seconds": round(time.perf_counter() - began, 2),
    }
    if as_json:
        _emit(summary, True)
        return
    out.print(
        f"wrote {len(traffic):,} transactions to {tx_path} and labels to {label_path} "
        f"in {summary['seconds']} s"
    )
    for key, value in traffic.summary().items():
        out.print(f"  {key}: {value}")


# -- train ------------------------------------------------------------------------------------
@app.command()
def train(
    transactions: Annotated[Path, typer.Option(help="Transactions JSONL.")],
    labels: Annotated[Path, typer.Option(help="Labels JSONL.")],
    registry: RegistryOpt = None,
    promote: Annotated[bool, typer.Option(help="Make the new version the champion.")] = False,
    as_of: Annotated[
        str | None,
        typer.Option(help="Training time (ISO); labels after it are unknown. Default: last tx."),
    ] = None,
    train_days: Annotated[float, typer.Option(help="Length of the training window.")] = 21.0,
    delay_days: Annotated[
        float, typer.Option(help="Label delay: days before --as-of left out (immature labels).")
    ] = 7.0,
    gap_days: Annotated[float, typer.Option(help="Gap between fit and validation.")] = 3.0,
    valid_days: Annotated[float, typer.Option(help="Validation days (end of window).")] = 4.0,
    skip_invalid: SkipInvalid = False,
    as_json: JsonFlag = False,
) -> None:
    """Train a model version with the stream's feature code; optionally promote it."""
    from models.registry import ModelRegistry
    from models.training import TrainingConfig
    from models.training import train as run_training

    settings = _settings()
    config = TrainingConfig(
        train_days=train_days,
        delay_days=delay_days,
        gap_days=gap_days,
        valid_days=valid_days,
        as_of=_parse_when(as_of, "--as-of"),
        costs=_costs(settings),
    )
    config.validate()  # bad options fail before the (possibly large) files are read
    txs = _read(transactions, Transaction, skip_invalid).records
    labs = _read(labels, Label, skip_invalid).records
    began = time.perf_counter()
    result = run_training(txs, labs, config)
    store = ModelRegistry(registry or settings.registry_dir, settings.model_name)
    version = store.register(result.model_bytes, result.metadata)
    if promote:
        store.promote(version.version, reason="train --promote")
    summary = {
        "model_name": version.name,
        "version": version.version,
        "path": str(version.path),
        "sha256": version.sha256,
        "champion": store.champion(),
        "thresholds": result.metadata["thresholds"],
        "validation": result.metadata["metrics"]["validation"],
        "training_window": result.metadata["training_window"],
        "data": result.metadata["data"],
        "seconds": round(time.perf_counter() - began, 2),
    }
    if as_json:
        _emit(summary, True)
        return
    val = summary["validation"]
    out.print(
        f"registered {version.name} {version.version} at {version.path}"
        + (" [bold green](champion)[/]" if promote else "")
    )
    out.print(
        f"  validation: AUC {val['auc_roc']:.4f}  AP {val['average_precision']:.4f} "
        f"({val['n_frauds']} frauds in {val['n_transactions']:,})"
    )
    th = summary["thresholds"]
    out.print(f"  thresholds: review >= {th['review']:.4f}, decline >= {th['decline']:.4f}")


# -- score ------------------------------------------------------------------------------------
@app.command()
def score(
    transactions: Annotated[Path, typer.Option(help="Transactions JSONL.")],
    out_file: Annotated[Path, typer.Option("--out", help="FraudScore JSONL to write.")],
    registry: RegistryOpt = None,
    version: Annotated[
        str | None, typer.Option(help="Model version (default: the champion).")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Labels JSONL: feeds the merchant risk features, each label from its "
            "labeled_at on (as the labels topic does in the stream)."
        ),
    ] = None,
    skip_invalid: SkipInvalid = False,
    rollout: Annotated[
        str | None,
        typer.Option(
            help="A canary rollout id (e.g. v2-canary1, from the registry): each user's arm "
            "decides, as in the stream during that rollout."
        ),
    ] = None,
    share: Annotated[
        float | None,
        typer.Option(
            help="With --rollout: the percent of users of the step to reproduce (default: the "
            "rollout's current or last step)."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Score transactions offline in event-time order, exactly as the stream does."""
    from models.fraud_labels import attributed_frauds
    from models.registry import ModelRegistry
    from models.scoring import OfflineReport, Scorer, score_offline

    settings = _settings()
    require_inputs(transactions, labels)  # "file not found" before any registry problem
    store = ModelRegistry(registry or settings.registry_dir, settings.model_name)
    if version is None and store.champion() is None:
        raise RegistryError(
            f"no champion for model '{store.model_name}' in {store.root} (train one with "
            f"`fraudstream train --promote`){_demo_registry_hint(settings, store.root)}"
        )
    if share is not None and rollout is None:
        raise InputError("--share goes with --rollout")
    scorer = Scorer.from_loaded(store.load(version or _rollout_champion(store, rollout)))
    canary = _offline_canary(store, rollout, share) if rollout is not None else None
    txs = _read(transactions, Transaction, skip_invalid).records
    frauds = None
    if labels is not None:
        attributed = attributed_frauds(_read(labels, Label, skip_invalid).records)
        frauds = attributed.frauds
        if attributed.unattributable:
            err.print(
                f"[yellow]{attributed.unattributable:,} fraud labels lack merchant_id, "
                "transaction_time or labeled_at: not used for the merchant risk features (as in "
                "the stream)[/]"
            )
    else:
        err.print(
            "[yellow]no --labels: merchant fraud-rate features are 0 for every transaction[/]"
        )
    began = time.perf_counter()
    left_out = OfflineReport()
    scored = score_offline(
        txs,
        scorer,
        frauds,
        settings.allowed_lateness_ms(),
        report=left_out,
        dedupe_horizon_ms=settings.dedupe_horizon_ms(),
        canary=canary,
    )
    count = write_events(out_file, scored)
    seconds = time.perf_counter() - began
    summary = {
        "scored": count,
        "duplicates": left_out.duplicates,
        "unscorable": len(left_out.unscorable),
        "model_version": scorer.version,
        "rollout": None
        if canary is None
        else {
            "rollout": canary.rollout,
            "challenger": canary.challenger.version,
            "share": canary.share,
        },
        "out": str(out_file),
        "seconds": round(seconds, 2),
    }
    if as_json:
        _emit(summary, True)
        return
    out.print(
        f"scored {count:,} transactions with {settings.model_name} {scorer.version} "
        f"into {out_file} ({count / max(seconds, 1e-9):,.0f}/s)"
    )
    if left_out.duplicates:
        err.print(
            f"[yellow]{left_out.duplicates:,} duplicate transaction ids left out (the stream "
            "dead-letters them)[/]"
        )
    for item in left_out.unscorable[:5]:
        err.print(f"[yellow]unscorable {item.transaction_id}: {item.error}[/]")


def _rollout_entries(store: Any, rollout: str) -> list[dict[str, Any]]:
    entries = store.canary_history(rollout)
    if not entries:
        raise InputError(f"no canary rollout '{rollout}' in {store.base}")
    return list(entries)


def _rollout_champion(store: Any, rollout: str | None) -> str | None:
    """The champion a rollout ran against (None: the current champion)."""
    if rollout is None:
        return None
    return str(_rollout_entries(store, rollout)[0]["champion"])


def _offline_canary(store: Any, rollout: str, share: float | None) -> Any:
    """The rollout's step as the stream ran it: its challenger deciding for `share` percent."""
    from models.canary import Canary
    from models.scoring import Scorer

    entries = [e for e in _rollout_entries(store, rollout) if e["action"] == "canary"]
    step = entries[-1]
    if share is not None:
        matching = [e for e in entries if e["steps"][e["step"]] == share]
        if not matching:
            shares = ", ".join(f"{s:g}" for s in entries[0]["steps"])
            raise InputError(f"--share {share:g}: rollout {rollout} has steps {shares}")
        step = matching[0]
    challenger = Scorer.from_loaded(store.load(step["version"]))
    return Canary(rollout, step["step"], step["steps"][step["step"]], challenger)


def _demo_registry_hint(settings: Settings, used: Path) -> str:
    """Where `fraudstream demo` keeps its models, when that is not the registry in use."""
    from models.registry import ModelRegistry

    for offline in (False, True):
        demo = demo_workdir(settings, offline) / "registry"
        if demo.resolve() == used.resolve():
            continue
        try:
            if ModelRegistry(demo, settings.model_name).champion() is None:
                continue
        except FraudstreamError:  # a damaged demo registry is no hint worth giving
            continue
        variable = env_var("registry_dir")
        return f"; the demo's models are in {demo}: pass --registry {demo} or set {variable}"
    return ""


# -- evaluate ---------------------------------------------------------------------------------
@app.command()
def evaluate(
    scores: Annotated[Path, typer.Option(help="FraudScore JSONL (from score or record).")],
    labels: Annotated[Path, typer.Option(help="Labels JSONL.")],
    report: Annotated[
        Path | None, typer.Option(help="Directory for the report (Markdown, HTML, PNG plots).")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="Only transactions at or after this time (ISO).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Only transactions before this time (ISO).")
    ] = None,
    skip_invalid: SkipInvalid = False,
    as_json: JsonFlag = False,
) -> None:
    """AUC, AP, precision/recall at the thresholds, card precision@100 per day, cost."""

    from models.evaluation import evaluate as run_evaluation
    from models.evaluation import evaluation_input_from_scores

    settings = _settings()
    lo = _parse_when(start, "--from")
    hi = _parse_when(end, "--to")
    require_inputs(scores, labels)
    truth = {lab.transaction_id: lab.is_fraud for lab in _read(labels, Label, skip_invalid).records}
    skipped: ReadResult[FraudScore] = ReadResult(records=[])
    data, unlabelled = evaluation_input_from_scores(
        iter_events(scores, FraudScore, skip_invalid=skip_invalid, skipped=skipped),
        truth,
        None if lo is None else epoch_ms(lo),
        None if hi is None else epoch_ms(hi),
    )
    _report_skipped(scores, skipped)
    costs = _costs(settings)
    result = run_evaluation(data, costs)
    summary = {**result.to_dict(), "unlabelled_skipped": unlabelled}
    if report is not None:
        from models.report import write_report

        paths = write_report(data, result, report, costs)
        summary["report"] = [str(p) for p in paths]
    if as_json:
        _emit(summary, True)
        return
    _print_evaluation(summary)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "n/a" if value is None else str(value)


def _print_evaluation(summary: dict[str, Any]) -> None:
    table = Table(title="evaluation", show_header=False)
    versions = summary.get("model_versions") or {}
    table.add_row("model_versions", ", ".join(f"{v} ({n})" for v, n in versions.items()) or "n/a")
    table.add_row("window", f"{summary['first_event_time']} to {summary['last_event_time']}")
    for key in (
        "n_transactions",
        "n_frauds",
        "auc_roc",
        "average_precision",
        "card_precision_at_k",
        "precision_flagged",
        "recall_flagged",
        "precision_declined",
        "recall_declined",
        "review_rate",
        "decline_rate",
        "expected_cost",
        "cost_no_model",
    ):
        if key in summary:
            table.add_row(key, _fmt(summary[key]))
    out.print(table)
    for path in summary.get("report", []):
        if path.endswith((".html", ".md")):
            out.print(f"report: {path}")


# -- broker and topics -------------------------------------------------------------------------
broker_app = typer.Typer(
    help="The embedded Kafka-API broker (Tansu) for laptops, the demo and CI.",
    no_args_is_help=True,
)
topics_app = typer.Typer(help="Kafka topics of the system.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")
app.add_typer(topics_app, name="topics")


def _embedded() -> tuple[Any, Any]:
    """The embedded broker where the settings say, and the plan that placed it there."""
    from fraudstream.broker import EmbeddedBroker, listen_plan

    settings = _settings()
    given = settings.model_fields_set
    plan = listen_plan(
        settings.kafka_bootstrap,
        settings.broker_port,
        bootstrap_given="kafka_bootstrap" in given,
        port_given="broker_port" in given,
    )
    return EmbeddedBroker(settings.state_dir, plan.port, plan.host), plan


@broker_app.command("start")
def broker_start(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker.")] = 30.0,
    as_json: JsonFlag = False,
) -> None:
    """Start the broker; returns once it answers a metadata request.

    Listens where FRAUD_KAFKA_BOOTSTRAP points when that is a loopback address (127.0.0.1:PORT,
    localhost:PORT); otherwise on 127.0.0.1:FRAUD_BROKER_PORT, and says how to point the other
    commands at it. Pid and log files under FRAUD_STATE_DIR/broker/.
    """
    broker, plan = _embedded()
    status = broker.start(timeout_s=timeout)
    if as_json:
        _emit({**status.to_dict(), "note": plan.note}, True)
        return
    out.print(f"broker running (pid {status.pid}) at {status.bootstrap}; log: {status.log_file}")
    if plan.note:
        out.print(plan.note, markup=False, highlight=False, soft_wrap=True)


@broker_app.command("stop")
def broker_stop(as_json: JsonFlag = False) -> None:
    """Stop the broker this state directory started (and nothing else)."""
    from fraudstream.broker import EmbeddedBroker

    settings = _settings()  # the pid file alone says what to stop: no address needed
    stopped = EmbeddedBroker(settings.state_dir, settings.broker_port).stop()
    if as_json:
        _emit({"stopped": stopped}, True)
        return
    out.print("broker stopped" if stopped else "no broker was running")


@broker_app.command("status")
def broker_status(as_json: JsonFlag = False) -> None:
    """Is the broker running and answering? Exit status 1 when it is not running."""
    status = _embedded()[0].status()
    if as_json:
        _emit(status.to_dict(), True)
    elif status.running:
        answering = "answering" if status.answering else "NOT answering"
        out.print(f"running (pid {status.pid}) at {status.bootstrap}, {answering}")
    else:
        out.print("not running")
    if not status.running:
        raise typer.Exit(1)


@topics_app.command("create")
def topics_create(
    partitions: Annotated[
        int | None,
        typer.Option(help=f"Partitions per topic {escape('[env: FRAUD_PARTITIONS]')}."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create every topic of the system (idempotent) on FRAUD_KAFKA_BOOTSTRAP."""
    from fraudstream.topics import create_system_topics

    settings = _settings()
    result = create_system_topics(
        settings.kafka_client_config(),
        settings.topics(),
        partitions or settings.partitions,
        settings.replication_factor,
    )
    if as_json:
        _emit({"bootstrap": settings.kafka_bootstrap, "topics": result}, True)
        return
    for name, state in result.items():
        out.print(f"{name}: {state}")


# -- replay and record ------------------------------------------------------------------------
@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="JSONL recording (transactions or labels).")],
    speed: Annotated[
        float,
        typer.Option(help="0: as fast as possible; 1: real time; 60: a minute per second."),
    ] = 0.0,
    rate: Annotated[
        float | None, typer.Option(help="Fixed messages per second (instead of --speed).")
    ] = None,
    topic: Annotated[
        str | None,
        typer.Option(help="Target topic (default: transactions, or labels for a labels file)."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--max", help="Stop after N messages.")] = None,
    send_invalid: Annotated[
        bool,
        typer.Option(help="Send lines that are not valid records unchanged (dead-letter tests)."),
    ] = False,
    linger_ms: Annotated[
        int,
        typer.Option(
            min=0,
            max=5000,
            help="Producer batching delay. Larger means fewer, bigger batches (the embedded "
            "broker slows down with the number of batches it stores).",
        ),
    ] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Produce a JSONL recording to Kafka: key user_id (labels: transaction_id), record
    timestamp = event time (labels: labeled_at)."""
    from producers.replay import Pacer, read_recording
    from producers.replay import replay as run_replay

    settings = _settings()
    pacer = Pacer(speed=speed, rate=rate)
    records = read_recording(file, send_invalid)
    first = next(records, None)
    if first is None:
        raise InputError(f"{file}: no records")
    if topic is None:
        is_label = b'"is_fraud"' in first.value
        topic = settings.topic_labels if is_label else settings.topic_transactions

    def chained() -> Any:
        yield first
        yield from records

    with _progress(f"replaying to {topic}", as_json) as advance:
        stats = run_replay(
            chained(),
            topic,
            settings.kafka_client_config(),
            pacer,
            limit,
            on_progress=advance,
            linger_ms=linger_ms,
        )
    summary = {"topic": topic, **stats.to_dict()}
    if as_json:
        _emit(summary, True)
    else:
        out.print(
            f"sent {stats.sent:,} to {topic} ({stats.delivered:,} delivered, {stats.failed} "
            f"failed) in {stats.seconds:.1f} s"
        )
        for problem in stats.first_errors:
            err.print(f"  delivery error: {problem}", markup=False)
    if stats.failed:
        raise InputError(f"{stats.failed} message(s) were not delivered to {topic}")


@app.command()
def record(
    topic: Annotated[str, typer.Argument(help="Topic to record (all partitions, from the start).")],
    out_file: Annotated[Path, typer.Option("--out", help="JSONL file to write.")],
    limit: Annotated[int | None, typer.Option("--max", help="Stop after N messages.")] = None,
    timeout: Annotated[
        float, typer.Option(help="Stop after this many seconds without a message.")
    ] = 10.0,
    as_json: JsonFlag = False,
) -> None:
    """Consume a topic to JSONL, one JSON object per line."""
    from producers.record import record as run_record

    settings = _settings()
    with _progress(f"recording {topic}", as_json) as advance:
        stats = run_record(
            topic, out_file, settings.kafka_client_config(), limit, timeout, on_progress=advance
        )
    if as_json:
        _emit({"topic": topic, "out": str(out_file), **stats.to_dict()}, True)
        return
    out.print(f"recorded {stats.written:,} messages from {topic} into {out_file}")
    if stats.not_json:
        err.print(f"[yellow]{stats.not_json} message(s) were not JSON objects and were skipped[/]")
        for problem in stats.first_problems:
            err.print(f"  {problem}", markup=False)


@contextmanager
def _progress(description: str, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A live counter on stderr (nothing with --json or when stderr is not a terminal)."""
    if quiet or not err.is_terminal:
        yield lambda _count: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}: {task.completed:,.0f} messages"),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        task = progress.add_task(description, total=None)
        last = [0.0]

        def advance(count: int) -> None:
            now = time.monotonic()
            if now - last[0] > 0.1:
                progress.update(task, completed=count)
                last[0] = now

        yield advance


# -- worker -----------------------------------------------------------------------------------
@app.command()
def worker(
    registry: RegistryOpt = None,
    loglevel: Annotated[str, typer.Option(help="Faust log level.")] = "warning",
) -> None:
    """Run the Faust scoring worker (several may run; they share the partitions).

    Reads FRAUD_KAFKA_BOOTSTRAP, FRAUD_TOPIC_*, FRAUD_FETCH_WAIT_MS, FRAUD_BATCH_MAX,
    FRAUD_BATCH_WINDOW_MS, FRAUD_ALLOWED_LATENESS_S, FRAUD_APP_ID; Faust's data directory is
    FRAUD_STATE_DIR/<app id>-data. Stops cleanly on SIGTERM/SIGINT.
    """
    from fraudstream.logs import logging_config
    from stream_app import collector
    from stream_app.app import create_app
    from stream_app.faust_tuning import QuietWorker

    settings = _settings()
    app_ = create_app(worker_config(settings, registry))
    json_logs = logging_config("json", loglevel) if settings.log_format == "json" else None
    running = QuietWorker(
        app_, loglevel=loglevel, quiet=True, redirect_stdouts=False, logging_config=json_logs
    )
    collector.tune()
    running.execute_from_commandline()


def worker_config(settings: Settings, registry: Path | None = None) -> Any:
    from stream_app.app import WorkerConfig
    from stream_app.topic_limits import dead_letter_limit, topic_max_message_bytes

    return WorkerConfig(
        app_id=settings.app_id,
        bootstrap=settings.kafka_bootstrap,
        topic_transactions=settings.topic_transactions,
        topic_scores=settings.topic_scores,
        topic_labels=settings.topic_labels,
        topic_dlq=settings.topic_dlq,
        topic_drift=settings.topic_drift,
        topic_model_updates=settings.topic_model_updates,
        topic_merchant_log=settings.topic_merchant_log,
        topic_drift_inputs=settings.topic_drift_inputs,
        drift_rejoin_hours=settings.drift_rejoin_hours,
        drift_scores_idle_s=settings.drift_scores_idle_s,
        replication_factor=settings.replication_factor,
        partitions=settings.partitions,
        registry_dir=str(registry or settings.registry_dir),
        model_name=settings.model_name,
        fetch_wait_ms=settings.fetch_wait_ms,
        batch_max=settings.batch_max,
        user_cache_size=settings.user_cache_size,
        max_queued=settings.max_queued,
        batch_window_s=settings.batch_window_ms / 1000.0,
        allowed_lateness_ms=settings.allowed_lateness_ms(),
        idle_partition_s=settings.idle_partition_s,
        max_message_bytes=settings.max_message_bytes,
        dlq_max_bytes=dead_letter_limit(
            settings.dlq_max_message_bytes,
            settings.dlq_max_message_bytes,
            topic_max_message_bytes(settings.kafka_client_config(), settings.topic_dlq),
        ),
        dedupe_horizon_ms=settings.dedupe_horizon_ms(),
        max_future_ms=round(settings.max_future_s * 1000),
        commit_interval_s=settings.commit_interval_s,
        users_write_behind_s=settings.users_write_behind_s,
        producer_linger_s=settings.producer_linger_ms / 1000.0,
        store=settings.worker_store,
        metrics_port=settings.metrics_port,
        data_dir=str(worker_data_dir(settings)),
        kafka_security=settings.aiokafka_security(),
        client_config={
            k: v for k, v in settings.kafka_client_config().items() if k != "bootstrap.servers"
        },
        broker_credentials=faust_credentials(settings),
    )


def worker_data_dir(settings: Settings) -> Path:
    """Faust's data directory of a worker: under FRAUD_STATE_DIR, never the current directory."""
    return settings.state_dir / f"{settings.app_id}-data"


def faust_credentials(settings: Settings) -> Any:
    """Faust's credentials object for the configured security protocol (None: plaintext)."""
    import faust

    security = settings.aiokafka_security()
    if "sasl_mechanism" in security:
        return faust.SASLCredentials(
            username=security.get("sasl_plain_username"),
            password=security.get("sasl_plain_password"),
            mechanism=security["sasl_mechanism"],
            ssl_context=security.get("ssl_context"),
        )
    if "ssl_context" in security:
        return faust.SSLCredentials(security["ssl_context"])
    return None


# -- retrain ----------------------------------------------------------------------------------
def _duration(text: str | None, option: str) -> float | None:
    """'90s', '10m', '6h', '1d' or plain seconds -> seconds."""
    if text is None:
        return None
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    value, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1.0)
    try:
        seconds = float(value) * unit
    except ValueError:
        raise InputError(f"{option}: '{text}' is not a duration (e.g. 90s, 10m, 6h, 1d)") from None
    if not seconds > 0:
        raise InputError(f"{option}: must be positive, got '{text}'")
    return seconds


@app.command()
def retrain(
    registry: RegistryOpt = None,
    once: Annotated[
        bool, typer.Option("--once", help="Run one retrain now and exit (no service loop).")
    ] = False,
    every: Annotated[
        str | None, typer.Option(help="Scheduled retrain interval, e.g. 6h (default: none).")
    ] = None,
    cooldown: Annotated[
        str, typer.Option(help="Least time between runs; drift retries use it too.")
    ] = "10m",
    drift_attempts: Annotated[
        int, typer.Option(help="Runs per drift event while challengers are rejected.")
    ] = 6,
    winner: Annotated[
        str,
        typer.Option(
            help="What a challenger that passes the gate becomes: promote|shadow|canary (a "
            "rollout with FRAUD_CANARY_STEPS, FRAUD_CANARY_HOLD_S, FRAUD_CANARY_MIN_DECISIONS)."
        ),
    ] = "promote",
    scores_file: Annotated[
        Path | None,
        typer.Option("--scores", help="Recorded fraud-scores JSONL instead of the topic."),
    ] = None,
    labels_file: Annotated[
        Path | None, typer.Option("--labels", help="Labels JSONL instead of the topic.")
    ] = None,
    train_days: Annotated[float, typer.Option(help="Challenger training window.")] = 21.0,
    gap_days: Annotated[float, typer.Option(help="Gap between fit and validation.")] = 3.0,
    valid_days: Annotated[float, typer.Option(help="Validation days of the window.")] = 4.0,
    holdout_days: Annotated[
        float, typer.Option(help="Most recent labelled days the gate compares on.")
    ] = 4.0,
    delay_days: Annotated[
        float, typer.Option(help="Newest days left out: their labels are not mature yet.")
    ] = 7.0,
    presume_genuine_after_days: Annotated[
        float | None,
        typer.Option(help="Count unlabelled transactions this old as genuine (<= delay)."),
    ] = None,
    min_ap_gain: Annotated[
        float, typer.Option(help="Gate: average precision must improve by more than this.")
    ] = 0.01,
    max_precision_drop: Annotated[
        float, typer.Option(help="Gate guardrail: precision of flagged may drop this much.")
    ] = 0.05,
    max_flagged_rate_rise: Annotated[
        float,
        typer.Option(help="Gate guardrail: share flagged (review+decline) may rise this much."),
    ] = 0.02,
    max_cost_rise: Annotated[
        float,
        typer.Option(help="Gate guardrail: expected cost per transaction may rise this much."),
    ] = 0.0,
    as_json: JsonFlag = False,
) -> None:
    """Retrain service: drift events and a schedule trigger a challenger, gated on recent
    labelled data against the champion; a winner is promoted and announced to the workers.

    Reads the scored feature log (FRAUD_TOPIC_SCORES) and labels (FRAUD_TOPIC_LABELS) from
    Kafka, or recorded files with --scores/--labels; drift events from FRAUD_TOPIC_DRIFT;
    announces on FRAUD_TOPIC_MODEL_UPDATES; metrics on FRAUD_METRICS_PORT.
    """
    from fraudstream.logs import logging_config
    from fraudstream.metrics import RetrainMetrics, serve
    from retrain.challenger import ChallengerConfig
    from retrain.gate import GateConfig
    from retrain.service import (
        CanaryStart,
        DriftIntake,
        FileSource,
        KafkaSource,
        RetrainConfig,
        Retrainer,
        RunOutcome,
        Scheduler,
        TrainingSource,
        kafka_notifier,
    )
    from retrain.service import (
        serve as serve_loop,
    )

    settings = _settings()
    if winner not in ("promote", "shadow", "canary"):
        raise InputError(f"--winner must be promote, shadow or canary, got '{winner}'")
    if (scores_file is None) != (labels_file is None):
        raise InputError("--scores and --labels go together")
    challenger = ChallengerConfig(
        train_days=train_days,
        gap_days=gap_days,
        valid_days=valid_days,
        holdout_days=holdout_days,
        delay_days=delay_days,
        presume_genuine_after_days=presume_genuine_after_days,
        gate=GateConfig(
            min_ap_gain=min_ap_gain,
            max_precision_drop=max_precision_drop,
            max_flagged_rate_rise=max_flagged_rate_rise,
            max_cost_rise=max_cost_rise,
        ),
        costs=_costs(settings),
    )
    challenger.validate()
    every_s = _duration(every, "--every")
    cooldown_s = _duration(cooldown, "--cooldown") or 0.0
    config = RetrainConfig(
        registry_dir=registry or settings.registry_dir,
        model_name=settings.model_name,
        challenger=challenger,
        winner=winner,  # type: ignore[arg-type]
        every_s=every_s,
        cooldown_s=cooldown_s,
        drift_attempts=drift_attempts,
        canary=CanaryStart(
            _steps(settings.canary_steps), settings.canary_hold_s, settings.canary_min_decisions
        ),
    )
    kafka = settings.kafka_client_config()
    source: TrainingSource
    if scores_file is not None and labels_file is not None:
        require_inputs(scores_file, labels_file)
        source = FileSource(scores_file, labels_file)
    else:
        source = KafkaSource(kafka, settings.topic_scores, settings.topic_labels)
    retrainer = Retrainer(config, source, kafka_notifier(kafka, settings.topic_model_updates))
    metrics = RetrainMetrics()

    def report(outcome: RunOutcome) -> None:
        metrics.runs.labels(outcome.trigger, outcome.outcome).inc()
        metrics.duration.observe(outcome.seconds)
        if outcome.outcome != "failed":
            metrics.last_success.set(time.time())
        for role in ("champion", "challenger"):
            for name, value in outcome.metrics.get(role, {}).items():
                if isinstance(value, int | float):
                    metrics.holdout.labels(role, name).set(value)
        if as_json:
            _emit(outcome.to_dict(), True)
        else:
            verdict = {
                "promoted": "green",
                "shadowed": "green",
                "canary": "green",
                "rejected": "yellow",
            }
            colour = verdict.get(outcome.outcome, "red")
            out.print(
                f"retrain ({outcome.trigger}): [{colour}]{outcome.outcome}[/] "
                f"{outcome.version or ''} (parent {outcome.parent}) in {outcome.seconds:.1f} s"
            )
            for reason in outcome.reasons:
                out.print(f"  {reason}", markup=False, highlight=False)

    if once:
        outcome = retrainer.run("manual")
        report(outcome)
        if outcome.outcome == "failed":
            raise typer.Exit(1)
        return

    import signal as signals

    stopping = threading.Event()
    for sig in (signals.SIGTERM, signals.SIGINT):
        signals.signal(sig, lambda *_: stopping.set())
    logging.config.dictConfig(logging_config(settings.log_format))
    server = serve(metrics.registry, settings.metrics_port, lambda: True)
    intake = DriftIntake(kafka, settings.topic_drift, f"{settings.app_id}-retrain")
    out.print(
        f"retrain service: drift from {settings.topic_drift}, every {every or 'never'}, "
        f"cooldown {cooldown}; metrics on :{server.server_address[1]}"
    )

    def poll(timeout_s: float) -> list[Any]:
        events = intake.poll(timeout_s)
        metrics.drift_received.inc(len(events))
        return events

    canary = _canary_runner(settings, retrainer.registry, metrics)
    try:
        serve_loop(
            retrainer,
            Scheduler(every_s, cooldown_s, drift_attempts),
            poll,
            stopping.is_set,
            report,
            tick=canary,
        )
    finally:
        canary.runner.close()
        intake.close()
        server.shutdown()


def _canary_runner(settings: Settings, registry: Any, metrics: Any) -> Any:
    from retrain.canary_runner import CanaryRunner, CanaryTick
    from retrain.notify import publish_model_update

    kafka = settings.kafka_client_config()

    def notify(update: Any) -> None:
        publish_model_update(kafka, settings.topic_model_updates, update)

    def counted(rollout: Any, verdict: Any) -> None:
        metrics.canary_verdicts.labels(verdict.action).inc()
        colour = "red" if verdict.action == "rollback" else "green"
        out.print(
            f"canary {rollout.rollout}: [{colour}]{verdict.action}[/] {verdict.reason}",
            highlight=False,
        )

    runner = CanaryRunner(
        registry,
        kafka,
        settings.topic_scores,
        settings.topic_labels,
        notify,
        settings.canary_guardrails(),
        on_verdict=counted,
    )
    return CanaryTick(runner, metrics)


# -- models -----------------------------------------------------------------------------------
def _store(registry: Path | None) -> Any:
    from models.registry import ModelRegistry

    settings = _settings()
    return ModelRegistry(registry or settings.registry_dir, settings.model_name)


@models_app.command("list")
def models_list(registry: RegistryOpt = None, as_json: JsonFlag = False) -> None:
    """List versions with their validation metrics; the champion is marked."""
    store = _store(registry)
    champion, shadow = store.champion(), store.shadow()
    rows = []
    for name in store.list_versions():
        try:
            meta = store.get(name).metadata
        except FraudstreamError as exc:
            # One damaged version must not hide the others; it is listed as invalid.
            rows.append({"version": name, "champion": name == champion, "invalid": str(exc)})
            continue
        val = meta.get("metrics", {}).get("validation", {})
        rows.append(
            {
                "version": name,
                "champion": name == champion,
                "shadow": name == shadow,
                "registered_at": meta.get("registered_at"),
                "auc_roc": val.get("auc_roc"),
                "average_precision": val.get("average_precision"),
                "trigger": meta.get("lineage", {}).get("trigger"),
            }
        )
    if as_json:
        _emit(
            {
                "model_name": store.model_name,
                "champion": champion,
                "shadow": shadow,
                "versions": rows,
            },
            True,
        )
        return
    if not rows:
        hint = _demo_registry_hint(_settings(), store.root)
        out.print(
            f"no versions of {store.model_name} in {store.root}{hint}", markup=False, soft_wrap=True
        )
        return
    table = Table(title=f"{store.model_name} in {store.root}")
    for column in ("version", "champion", "registered_at", "AUC", "AP", "trigger"):
        table.add_column(column)
    for row in rows:
        if "invalid" in row:
            table.add_row(row["version"], "*" if row["champion"] else "", "[red]INVALID[/]")
            continue
        table.add_row(
            row["version"],
            "*" if row["champion"] else ("shadow" if row["shadow"] else ""),
            str(row["registered_at"]),
            _fmt(row["auc_roc"]),
            _fmt(row["average_precision"]),
            str(row["trigger"]),
        )
    out.print(table)


@models_app.command("show")
def models_show(
    version: Annotated[str | None, typer.Argument(help="Version (default: champion).")] = None,
    registry: RegistryOpt = None,
) -> None:
    """Print a version's metadata (checksums verified)."""
    store = _store(registry)
    name = version or store.champion()
    if name is None:
        raise InputError(f"no champion for {store.model_name}; name a version")
    info = store.get(name)
    rollout = store.canary()
    sys.stdout.write(
        json.dumps(
            {
                **info.metadata,
                "path": str(info.path),
                "champion": name == store.champion(),
                "canary_in_progress": None if rollout is None else _rollout_dict(rollout),
                "canary_decisions": [
                    e for e in store.canary_history() if name in (e["version"], e.get("champion"))
                ],
            },
            indent=2,
        )
        + "\n"
    )


def _rollout_dict(rollout: Any) -> dict[str, Any]:
    return {
        "rollout": rollout.rollout,
        "challenger": rollout.version,
        "champion": rollout.champion,
        "step": rollout.step,
        "share": rollout.share,
        "steps": list(rollout.steps),
        "hold_s": rollout.hold_s,
        "min_decisions": rollout.min_decisions,
        "started_at": rollout.started_at,
        "step_started_at": rollout.step_started_at,
    }


def _steps(text: str) -> tuple[float, ...]:
    from models.registry import check_steps

    try:
        return check_steps([float(part) for part in text.split(",") if part.strip()])
    except ValueError:
        raise InputError(f"--steps: '{text}' is not a list of percents (e.g. 5,25,100)") from None


@models_app.command("canary")
def models_canary(
    version: Annotated[
        str | None, typer.Argument(help="Version to roll out (a challenger, e.g. v3).")
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option(help="Percents of users per step, rising [default: FRAUD_CANARY_STEPS]."),
    ] = None,
    hold: Annotated[
        str | None,
        typer.Option(help="Least time per step, e.g. 30m [default: FRAUD_CANARY_HOLD_S]."),
    ] = None,
    min_decisions: Annotated[
        int | None,
        typer.Option(
            help="Challenger decisions a step needs before it is judged "
            "[default: FRAUD_CANARY_MIN_DECISIONS]."
        ),
    ] = None,
    abort: Annotated[
        bool, typer.Option("--abort", help="Roll the rollout in progress back now.")
    ] = False,
    registry: RegistryOpt = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")] = "manual",
    notify: NotifyFlag = True,
    as_json: JsonFlag = False,
) -> None:
    """Roll VERSION out step by step: it decides for a deterministic share of users (a hash of
    user_id and the rollout id), the champion for the rest. The retrain service's canary
    controller judges each step on live traffic (flagged share, score shift, errors, latency,
    precision and recall once labels arrive), rolls back on a breach and promotes after the last
    step; every decision is a ModelUpdate and is kept in `fraudstream models show`."""
    from retrain.notify import model_update, publish_model_update

    settings = _settings()
    store = _store(registry)
    if abort == (version is not None):
        raise InputError("name a VERSION to roll out, or pass --abort (not both)")
    if abort:
        current = store.canary()
        if current is None:
            raise InputError(f"{store.model_name}: no canary rollout is in progress")
        store.end_canary(current.rollout, f"aborted: {reason}", {"step": float(current.step)})
        update = model_update(
            store.get(current.version), "canary_rollback", f"aborted: {reason}", current
        )
        summary = {"rolled_back": current.rollout, "champion": current.champion}
        message = f"rollout {current.rollout} rolled back; {current.champion} decides for all"
    else:
        assert version is not None  # noqa: S101 - checked above
        rollout = store.start_canary(
            version,
            _steps(steps or settings.canary_steps),
            _duration(hold, "--hold") if hold is not None else settings.canary_hold_s,
            min_decisions if min_decisions is not None else settings.canary_min_decisions,
            reason=reason,
        )
        update = model_update(store.get(version), "canary", reason, rollout)
        summary = _rollout_dict(rollout)
        message = (
            f"rollout {rollout.rollout}: {version} decides for {rollout.share:g} % of users "
            f"(steps {', '.join(f'{s:g}' for s in rollout.steps)} %); the retrain service "
            "judges each step"
        )
    if notify:
        publish_model_update(
            settings.kafka_client_config(), settings.topic_model_updates, update, timeout_s=5.0
        )
    if as_json:
        _emit({**summary, "published": notify}, True)
        return
    out.print(message, markup=False, highlight=False)
    if notify:
        out.print(f"published {update.action} {update.version} to {settings.topic_model_updates}")
    else:
        err.print("[yellow]not published: running workers keep their models until restarted[/]")


NotifyFlag = Annotated[
    bool,
    typer.Option(
        "--notify/--no-notify",
        help="Publish a ModelUpdate so running workers follow (FRAUD_TOPIC_MODEL_UPDATES).",
    ),
]


def _announce(info: Any, action: str, reason: str, notify: bool) -> None:
    """Tell running workers; the registry change itself has already happened."""
    if not notify:
        err.print("[yellow]not published: running workers keep their model until restarted[/]")
        return
    from retrain.notify import model_update, publish_model_update

    settings = _settings()
    update = model_update(info, action, reason)  # type: ignore[arg-type]
    publish_model_update(
        settings.kafka_client_config(), settings.topic_model_updates, update, timeout_s=5.0
    )
    out.print(f"published {action} {info.version} to {settings.topic_model_updates}")


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="Version to make champion, e.g. v3.")],
    registry: RegistryOpt = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")] = "manual",
    notify: NotifyFlag = True,
) -> None:
    """Make VERSION the champion; running workers switch to it without a restart."""
    info = _store(registry).promote(version, reason=reason)
    out.print(f"{info.name} champion is now {info.version}")
    _announce(info, "promote", reason, notify)


@models_app.command("rollback")
def models_rollback(
    registry: RegistryOpt = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")] = "manual",
    notify: NotifyFlag = True,
) -> None:
    """Return to the previous champion; running workers switch back without a restart."""
    info = _store(registry).rollback(reason=reason)
    out.print(f"{info.name} rolled back; champion is now {info.version}")
    _announce(info, "rollback", reason, notify)


@models_app.command("shadow")
def models_shadow(
    version: Annotated[
        str | None, typer.Argument(help="Version to score beside the champion.")
    ] = None,
    stop: Annotated[bool, typer.Option("--stop", help="Stop shadow scoring.")] = False,
    registry: RegistryOpt = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")] = "manual",
    notify: NotifyFlag = True,
) -> None:
    """Score VERSION beside the champion (its opinion goes into each score's `shadow` block and
    online quality); `--stop` ends it. The champion alone decides."""
    store = _store(registry)
    if stop == (version is not None):
        raise InputError("name a VERSION to shadow, or pass --stop (not both)")
    if version is not None:
        info = store.set_shadow(version, reason=reason)
        out.print(f"{info.name} {info.version} now shadows the champion {store.champion()}")
        _announce(info, "shadow", reason, notify)
        return
    gone = store.clear_shadow(reason=reason)
    out.print(f"{store.model_name} {gone} no longer shadows")
    _announce(store.get(gone), "unshadow", reason, notify)


@app.command()
def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="Small run (a few minutes) for a smoke test.")
    ] = False,
    backlog: Annotated[
        int | None, typer.Option(help="Transactions per drain phase (default 40000; quick 8000).")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Live-paced latency phase, tx/s (default 1000).")
    ] = None,
    high_rate: Annotated[
        float | None, typer.Option(help="Load phase: does the worker keep up (default 5000).")
    ] = None,
    seconds: Annotated[
        float | None,
        typer.Option(help="Measured length of each live phase (default 10; quick 3)."),
    ] = None,
    users: Annotated[
        int | None,
        typer.Option(
            help="Memory phase: one transaction for each of N new users, worker RSS "
            "(default 1000000; quick 20000; 0 skips it)."
        ),
    ] = None,
    bootstrap: Annotated[
        str | None,
        typer.Option(
            help="Run against this existing Kafka cluster (host:port) instead of a private "
            "embedded broker; security from FRAUD_KAFKA_*; bench topics are deleted after."
        ),
    ] = None,
    phase: Annotated[
        list[str] | None,
        typer.Option(
            help="Run only these phases (repeatable): drain, live, scale, memory, components."
        ),
    ] = None,
    results: Annotated[
        Path, typer.Option(help="Directory the JSON result is appended to (a new file).")
    ] = Path("bench/results"),
    save: Annotated[bool, typer.Option(help="Write the result file.")] = True,
    profile: Annotated[
        Path | None,
        typer.Option(help="Record a py-spy flame graph (SVG) of the worker during its drain."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Benchmark the pipeline against raw aiokafka and bare-Faust pass-throughs in one run:
    backlog drain, live-paced latency at two rates, two workers, RSS with many users, the
    worker's per-stage costs; every target judged met or not (README, "Benchmark")."""
    import dataclasses

    from fraudstream.bench import PHASES, BenchConfig, render, run, write_result

    config = BenchConfig.quick() if quick else BenchConfig()
    given: dict[str, Any] = {
        "backlog": backlog,
        "rate": rate,
        "high_rate": high_rate,
        "seconds": seconds,
        "users": users,
        "bootstrap": bootstrap,
        "profile": str(profile) if profile is not None else None,
    }
    config = dataclasses.replace(config, **{k: v for k, v in given.items() if v is not None})
    problems = config.problems()
    unknown = sorted(set(phase or ()) - set(PHASES))
    if unknown:
        problems.append(f"unknown --phase {unknown}; choose from {', '.join(PHASES)}")
    if problems:
        raise InputError("; ".join(problems))
    progress = lambda text: err.print(f"[dim]bench:[/dim] {escape(text)}")  # noqa: E731
    result = run(config, progress=progress, phases=phase or PHASES)
    if save:
        result["result_file"] = str(write_result(result, results))
    if as_json:
        _emit(result, True)
        return
    for part in render(result):
        out.print(part)
    if save:
        out.print(f"result written to {result['result_file']}")


# -- demo -------------------------------------------------------------------------------------
@app.command()
def demo(
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="Where the demo writes, its model registry included (default: STATE_DIR/demo; "
            "with --offline STATE_DIR/demo-offline)."
        ),
    ] = None,
    minutes: Annotated[float, typer.Option(help="Length of the live phase.")] = 3.0,
    rate: Annotated[float, typer.Option(help="Live transactions per second.")] = 40.0,
    offline: Annotated[
        bool, typer.Option(help="Run the offline loop instead: simulate, train, score, evaluate.")
    ] = False,
) -> None:
    """Everything, one command: broker, topics, history, first model, worker, live traffic with
    a live view (about 2 minutes of set-up, then MINUTES live); Ctrl-C stops all it started."""
    target = workdir or demo_workdir(_settings(), offline)
    if offline:
        from fraudstream.demo import run_offline_demo

        run_offline_demo(target, out)
        return
    from fraudstream.demo_live import run_live_demo

    run_live_demo(target, out, live_minutes=minutes, rate=rate)


def demo_workdir(settings: Settings, offline: bool) -> Path:
    """Each demo has its own directory, so the offline one never promotes over the other's."""
    return settings.state_dir / ("demo-offline" if offline else "demo")


def main() -> None:
    # XGBoost's OpenMP threads spin while idle by default, which starves the other process
    # (a worker, the broker) on a small machine; passive waiting costs nothing measurable.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    try:
        app()
    except FraudstreamError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    except OSError as exc:
        # A path the user gave cannot be written or read (a file where a directory is
        # expected, disk full, permissions): report it, no traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        err.print(
            f"[bold red]error:[/] {escape(where + (exc.strerror or str(exc)))}", highlight=False
        )
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
