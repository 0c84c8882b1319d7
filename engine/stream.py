"""Moving events out of the training loop and commands into it.

The loop hands each event to ``EventWriter.emit`` (a queue put); a writer thread encodes it as one JSON
line, appends it to the run's log and to any other sink, and calls the callbacks. Writing happens off
the loop's thread, in batches at most ``FLUSH_S`` apart: a follower sees a step within that time, and a
fast run does not pay a wake-up and a write call per step. ``close()`` drains the queue, flushes and fsyncs, so a run stopped by Ctrl-C keeps every
event it made.

A sink that fails is a fault the run must not hide: the writer remembers the first error, keeps
writing to the other sinks, and the runner stops at its next step boundary (``EventWriter.error``).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import IO, Callable

from .commands import Command, Stop, command_from_json
from .events import DecodeError, Event

FLUSH_S = 0.05  # the longest an event waits in a buffer while events keep coming (seconds)
_CLOSE = object()


class LogWriteError(OSError):
    """The run's events can no longer be written: the run stops rather than train unlogged."""


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
        self.error: str = ""  # the first sink failure, in one line ("" while all is well)
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.wake = threading.Event()  # set by close() and written(): write now
        self.thread = threading.Thread(target=self._drain, name="event-writer", daemon=True)
        self.thread.start()
        self.closed = False
        self.cpu_s = 0.0  # CPU seconds the writer thread used, known once it has finished

    def emit(self, event: Event) -> None:
        self.queue.put(event)

    def _drain(self) -> None:
        while True:
            batch = [self.queue.get()]  # wait for the next event, then take all that are queued
            while True:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            for item in batch:
                if isinstance(item, Event):
                    self._write(item)
            self._flush()
            for item in batch:
                if isinstance(item, threading.Event):  # someone waits in written()
                    item.set()
            if _CLOSE in batch:
                self.cpu_s = time.thread_time()
                return
            # Let the next events gather: one wake-up and one write call per interval instead of one
            # per step, each of which would take the GIL from the training loop. close() and
            # written() cut the wait short: whoever waits for the log should not wait for a timer.
            self.wake.wait(FLUSH_S)
            self.wake.clear()

    def written(self) -> None:
        """Return once every event emitted so far is written and flushed."""
        if self.closed:
            return
        done = threading.Event()
        self.queue.put(done)
        self.wake.set()
        done.wait()

    def _write(self, event: Event) -> None:
        line = event.to_json() + "\n"
        if self.log is not None:
            self._guard(self.log, "the run log " + str(self.log_path), lambda: self.log.write(line))
        if self.stream is not None:
            self._guard(self.stream, "the event stream", lambda: self.stream.write(line))
        for callback in self.callbacks:
            self._guard(callback, "the output", lambda: callback(event))

    def _flush(self) -> None:
        if self.log is not None:
            self._guard(self.log, "the run log " + str(self.log_path), self.log.flush)
        if self.stream is not None:
            self._guard(self.stream, "the event stream", self.stream.flush)

    def _guard(self, sink, name: str, action: Callable[[], object]) -> None:
        """Run ``action`` on a sink; a sink that fails is dropped and its error kept for the runner."""
        try:
            action()
        except Exception as error:  # a full disk, a closed pipe, a closed file, a failing callback
            if not self.error:
                if isinstance(error, (BrokenPipeError, ValueError)):
                    reason = "it was closed"
                elif isinstance(error, OSError):
                    reason = error.strerror or str(error)
                else:
                    reason = f"{type(error).__name__}: {error}"
                self.error = f"cannot write {name}: {reason}"
            if sink is self.log:
                try:
                    self.log.close()
                except OSError:
                    pass
                self.log = None
            elif sink is self.stream:
                self.stream = None
            elif sink in self.callbacks:
                self.callbacks.remove(sink)

    def close(self) -> None:
        """Write everything still queued, flush and fsync the log."""
        if self.closed:
            return
        self.closed = True
        self.queue.put(_CLOSE)
        self.wake.set()
        self.thread.join()
        if self.log is not None:
            log = self.log
            self._guard(log, "the run log " + str(self.log_path), lambda: (log.flush(), os.fsync(log.fileno())))
            try:
                log.close()
            except OSError:
                pass


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
