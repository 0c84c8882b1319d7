"""Moving events out of the training loop and commands into it.

The loop only hands an event object to ``EventWriter.emit`` (a queue put); a writer thread encodes it
as JSON, appends it to the run's log and to any other sink, and flushes once per burst. ``close()``
drains the queue, flushes and fsyncs, so a run stopped by Ctrl-C keeps every event it made.

The writer works in bursts: after writing what was queued it waits ``interval`` seconds (20 bursts a
second by default) before it looks again. Encoding holds the GIL, so a writer woken by every event
would take it from the training loop hundreds of times a second; in bursts it takes it a few times,
and watchers still see events within a frame.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from typing import Callable, IO

from .events import Command, DecodeError, Event, Stop, command_from_json

_CLOSE = object()
# The same encoding as Event.to_json, built once: json.dumps builds an encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode(event: Event) -> str:
    """``event.to_json()``, faster in the common case where every float is finite."""
    try:
        return _ENCODER.encode(event.to_dict())
    except ValueError:  # NaN or infinity: to_json spells them out
        return event.to_json()


class EventWriter:
    def __init__(self, log_path: str | None = None, stream: IO[str] | None = None,
                 callbacks: list[Callable[[Event], None]] | None = None, interval: float = 0.05):
        self.log_path = log_path
        self.log = None
        if log_path:
            os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
            self.log = open(log_path, "w", encoding="utf-8")
        self.stream = stream
        self.callbacks = list(callbacks or [])
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.interval = interval  # seconds between two bursts of writing
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._drain, name="event-writer", daemon=True)
        self.thread.start()
        self.closed = False
        self.stream_broken = False

    def emit(self, event: Event) -> None:
        self.queue.put(event)

    def _write(self, events: list[Event]) -> None:
        """Encode a burst of events and write it with one call per sink."""
        lines = [encode(event) + "\n" for event in events]
        text = "".join(lines)
        if self.log is not None:
            self.log.write(text)
        if self.stream is not None and not self.stream_broken:
            try:
                self.stream.write(text)
            except (BrokenPipeError, ValueError, OSError):
                self.stream_broken = True  # the reader went away; the log still gets everything
        for event in events:
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
            burst = [self.queue.get()]
            while True:
                try:
                    burst.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            closing = any(item is _CLOSE for item in burst)
            self._write([item for item in burst if item is not _CLOSE])
            self._flush()
            if closing:
                return
            self.closing.wait(self.interval)  # let the next burst gather

    def close(self) -> None:
        """Write everything still queued, flush and fsync the log."""
        if self.closed:
            return
        self.closed = True
        self.queue.put(_CLOSE)
        self.closing.set()
        self.thread.join()
        if self.log is not None:
            self.log.flush()
            os.fsync(self.log.fileno())
            self.log.close()


class CommandReader:
    """Reads JSON command lines from a stream in a thread; the runner polls at step boundaries."""

    def __init__(self, stream: IO[str], on_error: Callable[[str], None] | None = None, stop_at_end: bool = True):
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.on_error = on_error
        self.stop_at_end = stop_at_end
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
        if self.stop_at_end:
            # The one steering the run (the TUI) is gone: stop cleanly rather than train, or stay
            # paused, for nobody.
            self.queue.put(Stop())

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
