"""Test helpers: a live event source with no child process, recorded logs, a fake engine child.

Kept out of a conftest.py on purpose: other test folders import ``conftest`` by name, and a second
conftest module would shadow theirs. Test modules import these fixtures explicitly.
"""

from __future__ import annotations
import asyncio

import os
import queue
import sys

import pytest

from engine.commands import Command
from engine.events import Event
from tui.sources import EventSource
from tui.synthetic import synthetic_events, write_log


class FakeLiveSource(EventSource):
    """A live source with no child process: tests push events and read the commands sent."""

    kind = "live"
    can_send = True
    description = "live run (fake)"

    def __init__(self, events: list[Event] | None = None) -> None:
        super().__init__()
        self.sent: list[Command] = []
        self._queue: queue.Queue = queue.Queue()
        self._code: int | None = None
        self._error = ""
        if events:
            self.push(events)

    def push(self, events: list[Event]) -> None:
        self._queue.put(list(events))

    def die(self, code: int, error: str) -> None:
        self._code, self._error = code, error
        self._queue.put(None)

    def batches(self):
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            yield batch

    def send(self, command: Command) -> bool:
        if self._code is not None:
            return False
        self.sent.append(command)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        self.send_stop_seen = True
        self._code = 0
        self._queue.put(None)

    def terminate(self) -> None:
        if self._code is None:
            self._code = -15
        self._queue.put(None)

    @property
    def exit_code(self):
        return self._code

    @property
    def error_text(self) -> str:
        return self._error


FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


@pytest.fixture
def srn_log(tmp_path) -> str:
    path = str(tmp_path / "srn.jsonl")
    write_log(path, synthetic_events(60, cell="srn"))
    return path


@pytest.fixture
def lstm_log(tmp_path) -> str:
    path = str(tmp_path / "lstm.jsonl")
    write_log(path, synthetic_events(30, cell="lstm"))
    return path


@pytest.fixture
def fake_child() -> list[str]:
    return [sys.executable, os.path.join(FIXTURES, "fake_child.py")]


async def until(pilot, condition, timeout=5.0):
    """Let the app run until condition() holds (the reader thread and frame timer need time).

    Each turn, the app handles what is pending and runs until it is idle (a frame is drawn, a batch
    ingested) before the condition is asked again: no fixed delay to tune against a loaded machine."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await pilot.pause()
