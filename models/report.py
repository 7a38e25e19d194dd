"""Evaluation report files: three charts plus the same summary as Markdown and as HTML.

The numbers come from `models.evaluation`; this module only draws and writes them. Charts use
the non-interactive Agg backend so reports render on servers and in CI without a display.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve

from models.evaluation import Costs, Evaluation, EvaluationInput, cost_curve
from schemas.errors import InputError

__all__ = [
    "COST_CURVE_PNG",
    "HTML_REPORT",
    "MARKDOWN_REPORT",
    "PRECISION_RECALL_PNG",
    "SCORE_HISTOGRAM_PNG",
    "write_report",
]

PRECISION_RECALL_PNG = "precision_recall.png"
SCORE_HISTOGRAM_PNG = "score_histogram.png"
COST_CURVE_PNG = "cost_curve.png"
MARKDOWN_REPORT = "report.md"
HTML_REPORT = "report.html"

_THRESHOLDS = np.linspace(0.0, 1.0, 101)
_HISTOGRAM_BINS = np.linspace(0.0, 1.0, 41)
# Without a Software entry the PNG bytes do not change with the matplotlib version.
_PNG_METADATA: dict[str, str | None] = {"Software": None}


@dataclass(frozen=True)
class _Metric:
    name: str
    value: str
    meaning: str


@dataclass(frozen=True)
class _BestThreshold:
    threshold: float
    cost: float


def write_report(
    data: EvaluationInput,
    evaluation: Evaluation,
    out_dir: Path,
    costs: Costs,
    title: str = "fraudstream evaluation",
) -> list[Path]:
    """Write the charts, ``report.md`` and ``report.html`` into ``out_dir`` (created if needed).

    ``evaluation`` must be the result of evaluating ``data`` with ``costs``. Returns the written
    paths: the three PNG files, then the Markdown and the HTML report.
    """
    if evaluation.n_transactions != len(data):
        raise InputError(
            f"evaluation covers {evaluation.n_transactions} transactions but the data has "
            f"{len(data)}; evaluate the same data you report on"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    best = _best_threshold(data, costs)
    images = [
        _plot_precision_recall(data, evaluation, out_dir / PRECISION_RECALL_PNG),
        _plot_score_histogram(data, out_dir / SCORE_HISTOGRAM_PNG),
        _plot_cost_curve(data, evaluation, costs, best, out_dir / COST_CURVE_PNG),
    ]
    metrics = _metrics(evaluation)
    markdown = out_dir / MARKDOWN_REPORT
    markdown.write_text(_markdown(title, metrics, costs, best), encoding="utf-8")
    page = out_dir / HTML_REPORT
    page.write_text(_html(title, metrics, costs, best), encoding="utf-8")
    return [*images, markdown, page]


def _best_threshold(data: EvaluationInput, costs: Costs) -> _BestThreshold:
    curve = cost_curve(data.score, data.is_fraud, costs, _THRESHOLDS)
    best = int(np.argmin(curve))  # the first minimum: the lowest of equally good thresholds
    return _BestThreshold(threshold=float(_THRESHOLDS[best]), cost=float(curve[best]))


@contextmanager
def _figure(path: Path) -> Iterator[Any]:
    """Axes of a new figure that is saved to ``path`` on success and closed in every case."""
    fig, ax = plt.subplots(figsize=(7.0, 4.5))
    try:
        yield ax
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100, metadata=_PNG_METADATA)
    finally:
        plt.close(fig)


def _plot_precision_recall(data: EvaluationInput, evaluation: Evaluation, path: Path) -> Path:
    with _figure(path) as ax:
        if evaluation.average_precision is None:
            ax.text(
                0.5,
                0.5,
                "only one class present:\nthe precision-recall curve is undefined",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
        else:
            precision, recall, _ = precision_recall_curve(data.is_fraud, data.score)
            ax.plot(
                recall,
                precision,
                drawstyle="steps-post",
                color="tab:blue",
                label=f"model (AP = {evaluation.average_precision:.4f})",
            )
            ax.axhline(
                evaluation.fraud_rate,
                linestyle=":",
                color="grey",
                label=f"chance (fraud rate {evaluation.fraud_rate:.4f})",
            )
        ax.plot(
            evaluation.recall_flagged,
            evaluation.precision_flagged,
            "o",
            color="tab:orange",
            markersize=9,
            label="flagged: review or decline",
        )
        ax.plot(
            evaluation.recall_declined,
            evaluation.precision_declined,
            "s",
            color="tab:red",
            markersize=9,
            label="declined",
        )
        ax.set_xlim(0.0, 1.02)
        ax.set_ylim(0.0, 1.05)
        ax.set_xlabel("Recall")
        ax.set_ylabel("Precision")
        ax.set_title("Precision-recall curve and operating points")
        ax.legend(loc="lower left")
    return path


def _plot_score_histogram(data: EvaluationInput, path: Path) -> Path:
    with _figure(path) as ax:
        for is_fraud, name, colour in ((False, "genuine", "tab:blue"), (True, "fraud", "tab:red")):
            scores = data.score[data.is_fraud == is_fraud]
            if scores.size:
                ax.hist(
                    scores,
                    bins=_HISTOGRAM_BINS,
                    log=True,
                    alpha=0.6,
                    color=colour,
                    label=f"{name} (n = {scores.size})",
                )
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("Score")
        ax.set_ylabel("Transactions (log scale)")
        ax.set_title("Score distribution by label")
        ax.legend(loc="best")
    return path


def _plot_cost_curve(
    data: EvaluationInput,
    evaluation: Evaluation,
    costs: Costs,
    best: _BestThreshold,
    path: Path,
) -> Path:
    curve = cost_curve(data.score, data.is_fraud, costs, _THRESHOLDS)
    with _figure(path) as ax:
        ax.plot(_THRESHOLDS, curve, color="tab:blue", label="review if score >= threshold")
        ax.axhline(
            evaluation.cost_no_model,
            linestyle="--",
            color="grey",
            label=f"no model: approve all ({evaluation.cost_no_model:.2f})",
        )
        ax.axhline(
            evaluation.expected_cost,
            linestyle=":",
            color="tab:green",
            label=f"decisions taken ({evaluation.expected_cost:.2f})",
        )
        ax.plot(
            best.threshold,
            best.cost,
            "o",
            color="tab:red",
            markersize=9,
            label=f"best threshold {best.threshold:.2f} ({best.cost:.2f})",
        )
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("Review threshold")
        ax.set_ylabel("Expected cost")
        ax.set_title("Expected cost of reviewing above a threshold")
        ax.legend(loc="best")
    return path


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _metrics(evaluation: Evaluation) -> list[_Metric]:
    counts = ", ".join(f"{name} {count}" for name, count in evaluation.decision_counts.items())
    versions = ", ".join(f"{name} ({count})" for name, count in evaluation.model_versions.items())
    return [
        _Metric(
            "Model version(s)",
            versions or "unknown",
            "The versions whose scores were evaluated, with their labelled transactions.",
        ),
        _Metric(
            "Time window",
            f"{evaluation.first_event_time} to {evaluation.last_event_time}",
            "Event times of the first and the last evaluated transaction (UTC).",
        ),
        _Metric(
            "Transactions", str(evaluation.n_transactions), "Scored transactions with a label."
        ),
        _Metric("Frauds", str(evaluation.n_frauds), "Transactions labelled as fraud."),
        _Metric("Fraud rate", _number(evaluation.fraud_rate), "Frauds / transactions."),
        _Metric(
            "AUC-ROC",
            _number(evaluation.auc_roc),
            "Chance that a fraud scores above a genuine transaction (0.5 = random; "
            "n/a with one class).",
        ),
        _Metric(
            "Average precision (AP)",
            _number(evaluation.average_precision),
            "Area under the precision-recall curve; a random model scores the fraud rate.",
        ),
        _Metric(
            "Precision, flagged",
            _number(evaluation.precision_flagged),
            "Share of reviewed or declined transactions that were fraud (0 if none flagged).",
        ),
        _Metric(
            "Recall, flagged",
            _number(evaluation.recall_flagged),
            "Share of frauds that were reviewed or declined (0 if no fraud).",
        ),
        _Metric(
            "Precision, declined",
            _number(evaluation.precision_declined),
            "Share of declined transactions that were fraud (0 if none declined).",
        ),
        _Metric(
            "Recall, declined",
            _number(evaluation.recall_declined),
            "Share of frauds that were declined (0 if no fraud).",
        ),
        _Metric(
            "Review rate",
            _number(evaluation.review_rate),
            "Share of transactions sent to manual review.",
        ),
        _Metric(
            "Decline rate",
            _number(evaluation.decline_rate),
            "Share of transactions declined.",
        ),
        _Metric(
            f"Card precision@{evaluation.k}",
            _number(evaluation.card_precision_at_k),
            f"Mean over UTC days of the share of compromised cards among the {evaluation.k} "
            "cards with the highest score that day.",
        ),
        _Metric(
            "Expected cost",
            _number(evaluation.expected_cost, 2),
            "Total cost of the decisions taken, with the costs below.",
        ),
        _Metric(
            "Expected cost per transaction",
            _number(evaluation.expected_cost_per_tx),
            "Expected cost / transactions.",
        ),
        _Metric(
            "Cost without a model",
            _number(evaluation.cost_no_model, 2),
            "Cost if every transaction were approved: every fraud missed.",
        ),
        _Metric("Decisions", counts, "How many transactions got each decision."),
    ]


_IMAGES = (
    (PRECISION_RECALL_PNG, "Precision-recall curve"),
    (SCORE_HISTOGRAM_PNG, "Score distribution"),
    (COST_CURVE_PNG, "Cost curve"),
)


def _costs_line(costs: Costs) -> str:
    return (
        f"Costs: review {costs.review:.2f}, missed fraud {costs.missed_fraud:.2f}, "
        f"false decline {costs.false_decline:.2f}."
    )


def _best_line(best: _BestThreshold) -> str:
    return (
        f"Lowest cost of reviewing above a threshold: {best.cost:.2f} "
        f"at threshold {best.threshold:.2f} (searched in steps of 0.01)."
    )


_MARKDOWN_SPECIAL = str.maketrans({char: f"\\{char}" for char in "\\`*_[]<>#|"})


def _md(text: str) -> str:
    """Text that Markdown shows literally, on one line (safe in headings and table cells)."""
    return " ".join(text.split()).translate(_MARKDOWN_SPECIAL)


def _markdown(title: str, metrics: list[_Metric], costs: Costs, best: _BestThreshold) -> str:
    lines = [f"# {_md(title)}", "", "| Metric | Value | Meaning |", "| --- | ---: | --- |"]
    lines += [f"| {_md(m.name)} | {_md(m.value)} | {_md(m.meaning)} |" for m in metrics]
    lines += ["", _md(_costs_line(costs)), "", _md(_best_line(best)), ""]
    for file_name, caption in _IMAGES:
        lines += [f"## {caption}", "", f"![{caption}]({file_name})", ""]
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; }
td.value { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
img { max-width: 100%; }
""".strip()


def _html(title: str, metrics: list[_Metric], costs: Costs, best: _BestThreshold) -> str:
    esc = html.escape
    rows = "\n".join(
        f'<tr><td>{esc(m.name)}</td><td class="value">{esc(m.value)}</td>'
        f"<td>{esc(m.meaning)}</td></tr>"
        for m in metrics
    )
    figures = "\n".join(
        f"<h2>{esc(caption)}</h2>\n"
        f'<figure><img src="{esc(file_name)}" alt="{esc(caption)}"></figure>'
        for file_name, caption in _IMAGES
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(title)}</title>
<style>
{_CSS}
</style>
</head>
<body>
<h1>{esc(title)}</h1>
<table>
<thead><tr><th>Metric</th><th>Value</th><th>Meaning</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p>{esc(_costs_line(costs))}</p>
<p>{esc(_best_line(best))}</p>
{figures}
</body>
</html>
"""
