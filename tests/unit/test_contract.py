"""docs/CONTRACT.md against the code: commands, topics, settings and event fields it names exist.

The document marks contract names in bold (**`name`**); this test reads those, so a rename in
the code that forgets the document (or the other way round) fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from fraudstream.cli import app as cli_app
from fraudstream.settings import ENV_PREFIX, TOPIC_ROLES, Settings, env_var
from schemas.events import EVENT_MODELS

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "CONTRACT.md"
BOLD = re.compile(r"\*\*`([^`]+)`\*\*")


def _text() -> str:
    assert CONTRACT.is_file(), f"{CONTRACT} is missing: the repository must carry its contract"
    return CONTRACT.read_text(encoding="utf-8")


def _section(title: str) -> str:
    """The text under a Markdown heading (any level), up to the next heading of that level."""
    text = _text()
    found = re.search(rf"^(#+) {re.escape(title)}\s*$", text, re.MULTILINE)
    assert found, f"no section '{title}' in {CONTRACT.name}"
    level = len(found.group(1))
    rest = text[found.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def contract_commands() -> set[tuple[str, ...]]:
    """('broker', 'start'), ('score',), ... for every bold `fraudstream ...` command."""
    commands: set[tuple[str, ...]] = set()
    for name in BOLD.findall(_section("Command line — **`fraudstream`**")):
        words = name.replace("\\|", "|").split()
        if words[0] != "fraudstream" or len(words) == 1:
            continue
        head, *tail = words[1:]
        subcommands = tail[0].split("|") if tail else [""]
        commands |= {(head, sub) if sub else (head,) for sub in subcommands}
    return commands


def test_every_contract_command_exists_in_the_cli() -> None:
    commands = contract_commands()
    assert {("score",), ("broker", "start"), ("models", "rollback"), ("bench",)} <= commands
    root: Any = typer.main.get_command(cli_app)
    missing = []
    for path in sorted(commands):
        command = root
        for word in path:
            command = getattr(command, "commands", {}).get(word)
            if command is None:
                missing.append(" ".join(path))
                break
    assert missing == []


def test_topic_defaults_are_the_settings_defaults() -> None:
    named = set(BOLD.findall(_section("Topics")))
    assert named == set(Settings().topics().values()) == set(TOPIC_ROLES)


def test_every_named_variable_is_a_setting() -> None:
    variables = {n for n in BOLD.findall(_text()) if n.startswith(ENV_PREFIX)} - {ENV_PREFIX}
    assert len(variables) >= 10, variables
    settings = {env_var(name) for name in Settings.model_fields}
    assert variables - settings == set()


@pytest.mark.parametrize("model", sorted(EVENT_MODELS))
def test_event_fields_named_in_the_contract_exist(model: str) -> None:
    named = set(BOLD.findall(_section(model)))
    assert named, f"the contract lists no fields of {model}"
    assert named - set(EVENT_MODELS[model].model_fields) == set()


def test_the_contract_names_the_required_fields_of_each_event() -> None:
    for model, cls in EVENT_MODELS.items():
        required = {name for name, field in cls.model_fields.items() if field.is_required()}
        assert required - set(BOLD.findall(_section(model))) == set(), model
