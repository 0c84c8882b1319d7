"""The one reader thread: it turns a source's lines into Textual messages and nothing else.

It never touches a widget. Batches of decoded events go to the app with ``post_message``; a
semaphore bounds how many batches wait in the app's queue, so while the app catches up the reader
blocks (backs off) instead of piling up messages in front of the user's key presses.
"""

from __future__ import annotations

import threading

from textual.message import Message

from engine.events import Event
from tui.sources import EventSource

BATCHES_IN_FLIGHT = 2  # one batch taken in by the app while the reader decodes the next


class EventsArrived(Message):
    """A batch of events, in stream order. Never replaced: no event may be lost."""

    def __init__(self, events: list[Event]) -> None:
        super().__init__()
        self.events = events


class SourceEnded(Message):
    """The stream ended: end of file, or the child exited (with its code and last words)."""

    def __init__(self, exit_code: int | None, error: str, bad_lines: int) -> None:
        super().__init__()
        self.exit_code = exit_code
        self.error = error
        self.bad_lines = bad_lines


def read_events(source: EventSource, post, slots: threading.Semaphore, stopped: threading.Event) -> None:
    """Run in a thread worker: post every batch of ``source`` until it ends or ``stopped`` is set."""
    error = ""
    try:
        for batch in source.batches():
            while not slots.acquire(timeout=0.2):
                if stopped.is_set():
                    return
            if stopped.is_set():
                return
            post(EventsArrived(batch))
    except OSError as problem:  # an unreadable file or a broken pipe ends the stream, not the app
        error = str(problem)
    post(SourceEnded(source.exit_code, error or source.error_text, source.bad_lines))
