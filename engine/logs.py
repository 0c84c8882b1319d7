"""Event logs on disk: opening one (plain JSON lines, or gzip once its run has ended), saying why one
cannot be replayed, and reading all its events."""

from __future__ import annotations

import gzip
import os
import zlib

from .events import SCHEMA_VERSION, DecodeError, Event, RunStarted, from_json


def existing_log(path: str) -> str | None:
    """``path``, or the compressed log its run left when it finished (``path.gz``); None if neither is a file."""
    for candidate in (path, path + ".gz"):
        if os.path.isfile(candidate):
            return candidate
    return None


def branch_log_path(log_path: str) -> str:
    """Where a fork's second branch writes: beside the first branch's log, runs/<run>.jsonl ->
    runs/<run>-b.jsonl (its run id is the first's with -b), x.jsonl -> x-b.jsonl."""
    stem, extension = os.path.splitext(log_path[:-3] if log_path.endswith(".gz") else log_path)
    return f"{stem}-b{extension}"


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
