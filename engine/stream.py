"""Moving events out of the training loop and commands into it.

The loop only hands an event object to ``EventWriter.emit`` (a queue put); a writer thread encodes it
as JSON, appends it to the run's log and to any other sink, and flushes once per burst. ``close()``
drains the queue, flushes and fsyncs, so a run stopped by Ctrl-C keeps every event it made.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Callable, IO

from .events import Command, DecodeError, Event, command_from_json

_CLOSE = object()


class EventWriter:
    def __init__(self, log_path: str | None = None, stream: IO[str] | None = None,
                 callbacks: list[Callable[[Event], None]] | None = None):
        self.log_path = log_path
        self.log = None
        if log_path:
            os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
            self.log = open(log_path, "w", encoding="utf-8")
        self.stream = stream
        self.callbacks = list(callbacks or [])
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._drain, name="event-writer", daemon=True)
        self.thread.start()
        self.closed = False
        self.stream_broken = False

    def emit(self, event: Event) -> None:
        self.queue.put(event)

    def _write(self, event: Event) -> None:
        line = event.to_json() + "\n"
        if self.log is not None:
            self.log.write(line)
        if self.stream is not None and not self.stream_broken:
            try:
                self.stream.write(line)
            except (BrokenPipeError, ValueError, OSError):
                self.stream_broken = True  # the reader went away; the log still gets everything
        for callback in self.callbacks:
            callback(event)

    def _flush(self) -> None:
        if self.log is not None:
            self.log.flush()
        if self.stream is not None and not self.stream_broken:
            try:
                self.stream.flush()
            except (BrokenPipeError, ValueError, OSError):
                self.stream_broken = True

    def _drain(self) -> None:
        while True:
            item = self.queue.get()
            while True:
                if item is _CLOSE:
                    self._flush()
                    return
                self._write(item)
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
            self._flush()

    def close(self) -> None:
        """Write everything still queued, flush and fsync the log."""
        if self.closed:
            return
        self.closed = True
        self.queue.put(_CLOSE)
        self.thread.join()
        if self.log is not None:
            self.log.flush()
            os.fsync(self.log.fileno())
            self.log.close()


class CommandReader:
    """Reads JSON command lines from a stream in a thread; the runner polls at step boundaries."""

    def __init__(self, stream: IO[str], on_error: Callable[[str], None] | None = None):
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.on_error = on_error
        self.thread = threading.Thread(target=self._read, args=(stream,), name="command-reader", daemon=True)
        self.thread.start()

    def _read(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                if not line.strip():
                    continue
                try:
                    self.queue.put(command_from_json(line))
                except DecodeError as error:
                    if self.on_error:
                        self.on_error(f"ignored a malformed command: {error}")
        except (OSError, ValueError):
            pass

    def poll(self) -> list[Command]:
        commands = []
        while True:
            try:
                commands.append(self.queue.get_nowait())
            except queue.Empty:
                return commands

    def wait(self, timeout: float) -> list[Command]:
        try:
            first = self.queue.get(timeout=timeout)
        except queue.Empty:
            return []
        return [first] + self.poll()
