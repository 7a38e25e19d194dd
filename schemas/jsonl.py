"""Reading and writing JSON Lines files of events, with errors that name the file and line."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Generic, TypeVar

from pydantic import ValidationError

from schemas.errors import InputError
from schemas.events import Event

E = TypeVar("E", bound=Event)


def describe_validation_error(exc: ValidationError, limit: int = 3) -> str:
    """A one-line summary of a pydantic error: `field: message; ...`."""
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "<record>"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"(+{more} more)")
    return "; ".join(parts)


@dataclass
class ReadResult(Generic[E]):
    """Records read from a file, plus what was skipped (only with `skip_invalid`)."""

    records: list[E]
    skipped: int = 0
    first_errors: list[str] = field(default_factory=list)


def open_input(path: Path) -> BinaryIO:
    """`path` opened for reading; missing, unreadable or directory paths are an InputError."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a JSONL file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from None


def require_inputs(*paths: Path | None) -> None:
    """Fail on the first unusable input file before anything slow or stateful starts."""
    for path in paths:
        if path is not None:
            open_input(path).close()


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) for each non-blank line; missing files are an InputError."""
    with open_input(path) as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if line:
                yield number, line


def iter_events(
    path: Path, model: type[E], *, skip_invalid: bool = False, skipped: ReadResult[E] | None = None
) -> Iterator[E]:
    """Validate and yield every line of `path` as `model`, without holding the file in memory.

    Without `skip_invalid` the first bad line raises InputError naming file and line; with it,
    bad lines are counted in `skipped` (and the first few described) and reading goes on.
    """
    validate = model.model_validate_json
    for number, line in iter_lines(path):
        try:
            yield validate(line)
        except ValidationError as exc:
            message = f"{path}:{number}: invalid {model.__name__}: {describe_validation_error(exc)}"
            if not skip_invalid:
                raise InputError(message + " (use --skip-invalid to skip bad lines)") from None
            if skipped is not None:
                skipped.skipped += 1
                if len(skipped.first_errors) < 5:
                    skipped.first_errors.append(message)


def read_events(path: Path, model: type[E], *, skip_invalid: bool = False) -> ReadResult[E]:
    """All records of `path` (see `iter_events`), with the count of skipped lines."""
    result: ReadResult[E] = ReadResult(records=[])
    result.records.extend(iter_events(path, model, skip_invalid=skip_invalid, skipped=result))
    return result


def write_events(path: Path, events: Iterable[Event]) -> int:
    """Write events as JSON Lines (atomically: temp file, then rename). Returns the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    tmp = Path(name)
    count = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for event in events:
                out.write(event.model_dump_json().encode())
                out.write(b"\n")
                count += 1
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves the old target and no debris
        raise
    return count
