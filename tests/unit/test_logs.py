"""JSON log lines: one object per record, extra fields kept, usable by dictConfig."""

from __future__ import annotations

import json
import logging
import logging.config

import pytest

from fraudstream.logs import JsonFormatter, logging_config


def test_json_lines_carry_message_level_logger_and_extra_fields() -> None:
    record = logging.LogRecord(
        "fraudstream.worker", logging.WARNING, __file__, 1, "drift on %s", ("score",), None
    )
    record.model_version = "v3"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "drift on score"
    assert (line["level"], line["logger"], line["model_version"]) == (
        "warning",
        "fraudstream.worker",
        "v3",
    )
    assert "args" not in line and line["time"].endswith("+00:00")


def test_exceptions_are_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", None, __import__("sys").exc_info()
        )
    line = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in line["exception"]


def test_config_installs_the_json_formatter(capsys: pytest.CaptureFixture[str]) -> None:
    logging.config.dictConfig(logging_config("json", "info"))
    try:
        logging.getLogger("fraudstream.test").info("hello", extra={"topic": "t"})
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert json.loads(err)["topic"] == "t"
    finally:
        logging.config.dictConfig(logging_config("text", "warning"))
