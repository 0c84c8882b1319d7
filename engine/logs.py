"""Event logs on disk: opening one (plain JSON lines, or gzip once its run has ended), saying why one
cannot be replayed, and reading all its events."""

from __future__ import annotations

import gzip
import zlib

from .events import SCHEMA_VERSION, DecodeError, Event, RunStarted, from_json


def open_log(path: str):
    """A log file opened for reading bytes; a finished log, compressed with gzip, reads as its lines."""
    with open(path, "rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"  # gzip's magic number, whatever the file is named
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def log_problem(path: str) -> str:
    """Why the log at ``path`` cannot be replayed or exported, or "" when its first line is a
    run_started event of this schema."""
    try:
        with open_log(path) as handle:
            first = handle.readline()
    except (OSError, EOFError, zlib.error) as error:
        return f"cannot read log {path}: {getattr(error, 'strerror', None) or error}"
    if not first.strip():
        return f"{path} is empty: not an event log"
    try:
        event = from_json(first)
    except DecodeError as error:
        return f"{path} is not an rnnlab-tui event log (first line: {error})"
    if not isinstance(event, RunStarted):
        return f"{path} does not start with a run_started event (found {event.type})"
    if event.schema != SCHEMA_VERSION:
        return (f"{path} was written with event schema {event.schema}; this rnnlab-tui reads schema "
                f"{SCHEMA_VERSION} (train the run again to replay or export it)")
    return ""


def read_log(path: str) -> tuple[list[Event], int]:
    """All well-formed events of a log file (plain or .gz), and how many lines could not be read.

    A run killed mid-write may leave a partial last line; it is counted, not fatal.
    """
    events: list[Event] = []
    bad = 0
    with open_log(path) as handle:
        try:
            for raw in handle:
                if not raw.strip():
                    continue
                try:
                    events.append(from_json(raw))
                except DecodeError:
                    bad += 1
        except (EOFError, OSError, zlib.error):  # a .gz cut short or damaged: what came before it stands
            bad += 1
    return events, bad
