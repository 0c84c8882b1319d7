"""Where the monitor's events come from: a live child process, a recorded log, or standard input.

Pure Python (no textual, no torch): the CLI starts a child process through this module before the
Textual app is even imported, so the engine's slow torch import overlaps with the app's start.

Every source reads raw bytes in large chunks, splits them into lines and decodes each line with
``engine.events.from_json``. A line that does not decode (a partial last line of a killed run, a
corrupt byte) is skipped and counted in ``bad_lines``; it never stops the stream.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import select
import signal
import subprocess
import threading
import zlib
from typing import Iterator

from engine.commands import Command, Stop
from engine.events import EVENT_TYPES, DecodeError, Event, from_json
from engine.jsontypes import field_checks
from engine.logs import open_log

CHUNK_BYTES = 1 << 16  # one read: small enough that decoding it holds the GIL only a few ms
MAX_BATCH = 1000  # events handed to the app at once: bounds the work of one message
STDERR_LINES = 40  # how much of a dying child's standard error the app can show


class EventSource:
    """A stream of events for the monitor.

    ``batches()`` is called from the app's one reader thread and yields lists of decoded events
    until the stream ends. ``send()`` is called from the app's main thread.
    """

    kind = "source"  # live | replay | stream
    can_send = False  # whether commands reach an engine
    description = ""

    def __init__(self) -> None:
        self.bad_lines = 0
        self.events_read = 0
        self._remainder = b""

    # --- reading ---------------------------------------------------------

    def batches(self) -> Iterator[list[Event]]:
        # Chunks are small (decoding one holds the GIL for a few ms, so keys stay answered) but
        # batches are large while data keeps coming (each batch is one message to the app).
        pending: list[Event] = []
        for chunk in self._chunks():
            pending.extend(self._decode_chunk(chunk))
            if len(pending) >= MAX_BATCH or (pending and not self._more_ready()):
                yield pending
                pending = []
        pending.extend(self._decode_chunk(b"", final=True))
        if pending:
            yield pending

    def _more_ready(self) -> bool:
        """Whether another chunk can be read at once (a file: yes until its end; a pipe: if it holds data)."""
        return False

    def _chunks(self) -> Iterator[bytes]:
        raise NotImplementedError

    def _decode_chunk(self, chunk: bytes, final: bool = False) -> list[Event]:
        data = self._remainder + chunk
        if final:
            lines, self._remainder = data.split(b"\n"), b""
        else:
            *lines, self._remainder = data.split(b"\n")
        lines = [line for line in lines if line.strip()]
        if not lines:
            return []
        events = _decode_fast(lines)
        if events is None:  # a corrupt line or a non-finite float somewhere: line by line
            events = []
            for line in lines:
                try:
                    events.append(from_json(line))
                except (DecodeError, RecursionError):
                    self.bad_lines += 1
        self.events_read += len(events)
        return events

    # --- the other direction ----------------------------------------------

    def send(self, command: Command) -> bool:
        """Send a command to the engine; False when there is none to receive it."""
        return False

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the producer to finish and wait for it (called from a worker thread)."""

    def terminate(self) -> None:
        """End the producer now."""

    @property
    def exit_code(self) -> int | None:
        return None

    @property
    def error_text(self) -> str:
        """What the producer said on its way out (a child's standard error), if anything."""
        return ""


def _decode_fast(lines: list[bytes]) -> list[Event] | None:
    """Decode many lines with one json.loads; None when the slow, per-line path is needed.

    Replaying a long run is bound by decoding, so this path parses a whole chunk as one JSON array
    and builds each complete event (every field present, as the engine writes them) without the
    frozen dataclass's per-field __init__. Anything unusual (a corrupt line, a spelled-out NaN, a
    missing or unknown field, a field of the wrong type) falls back to ``engine.events.from_json``, which owns the format.
    """
    joined = b",".join(lines)
    if b"$float" in joined:
        return None
    try:
        payloads = json.loads(b"[" + joined + b"]")
    except (ValueError, RecursionError):
        return None
    events: list[Event] = []
    for payload in payloads:
        if not isinstance(payload, dict):
            return None
        cls = EVENT_TYPES.get(payload.pop("type", None))
        if cls is None or payload.keys() != _field_set(cls):
            return None
        if not all(check(payload[name]) for name, _, check in field_checks(cls)):
            return None
        event = object.__new__(cls)
        event.__dict__.update(payload)
        events.append(event)
    return events


_FIELD_SETS: dict[type, frozenset] = {}


def _field_set(cls: type) -> frozenset:
    names = _FIELD_SETS.get(cls)
    if names is None:
        names = _FIELD_SETS[cls] = frozenset(field.name for field in dataclasses.fields(cls))
    return names


def _readable(fd: int) -> bool:
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return False


def _read_fd(fd: int, closed: threading.Event | None = None) -> Iterator[bytes]:
    """Chunks from a file descriptor until end of file; a read returns whatever is available.

    With ``closed``, a pipe is polled so that setting it ends a wait for a silent producer.
    """
    while True:
        if closed is not None:
            if closed.is_set():
                return
            try:
                ready, _, _ = select.select([fd], [], [], 0.2)
            except (OSError, ValueError):
                return
            if not ready:
                continue
        try:
            chunk = os.read(fd, CHUNK_BYTES)
        except InterruptedError:
            continue
        except OSError:
            return
        if not chunk:
            return
        yield chunk


class LogFileSource(EventSource):
    """A recorded run, read as fast as the app can take it; the app replays it with a cursor."""

    kind = "replay"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.description = os.path.basename(path)
        self._closed = threading.Event()

    def _more_ready(self) -> bool:
        return True

    def _chunks(self) -> Iterator[bytes]:
        with open_log(self.path) as handle:  # a finished log is gzipped: it is decompressed chunk by chunk
            while not self._closed.is_set():
                try:
                    # read1, not read: read gathers several decompressed pieces and, when the .gz is
                    # cut short, loses them all with the EOFError; read1 returns each piece as it comes
                    chunk = handle.read1(CHUNK_BYTES)
                except (EOFError, OSError, zlib.error):  # a .gz cut short or damaged: keep what was read
                    self.bad_lines += 1
                    return
                if not chunk:
                    return
                yield chunk

    def terminate(self) -> None:
        self._closed.set()


class LogFilesSource(EventSource):
    """Several recorded runs overlaid: their logs read in turn, a batch of each at a time, so every
    run is on screen from the first frames. Two logs of one run id (a log and its copy) are told apart
    by a suffix, since the app splits events by run."""

    kind = "replay"

    def __init__(self, paths: list[str]) -> None:
        super().__init__()
        self.logs = [LogFileSource(path) for path in paths]
        self.description = f"{len(paths)} logs"

    def batches(self) -> Iterator[list[Event]]:
        readers = [(number, log.batches()) for number, log in enumerate(self.logs)]
        renamed: dict[int, str] = {}  # log number -> the run id its events take
        seen: set[str] = set()
        while readers:
            for number, reader in list(readers):
                batch = next(reader, None)
                self.bad_lines = sum(log.bad_lines for log in self.logs)
                if batch is None:
                    readers.remove((number, reader))
                    continue
                yield self._tagged(number, batch, renamed, seen)

    @staticmethod
    def _tagged(number: int, batch: list[Event], renamed: dict[int, str], seen: set[str]) -> list[Event]:
        if number not in renamed and batch:
            run = batch[0].run
            unique, copy = run, 1
            while unique in seen:
                copy += 1
                unique = f"{run}#{copy}"
            seen.add(unique)
            renamed[number] = unique
        unique = renamed.get(number)
        for event in batch:
            if event.run != unique:
                object.__setattr__(event, "run", unique)  # frozen: the run id is set once, before anyone reads it
        return batch

    def terminate(self) -> None:
        for log in self.logs:
            log.terminate()


class StdinSource(EventSource):
    """A stream on standard input (a run on another machine, piped over ssh). Read-only."""

    kind = "stream"

    def __init__(self, fd: int = 0) -> None:
        super().__init__()
        self.fd = fd
        self.description = "stream on standard input"
        self._closed = threading.Event()

    def _chunks(self) -> Iterator[bytes]:
        return _read_fd(self.fd, self._closed)

    def _more_ready(self) -> bool:
        return _readable(self.fd)

    def terminate(self) -> None:
        self._closed.set()


class ChildProcessSource(EventSource):
    """The engine in a child process: events on its stdout, commands on its stdin."""

    kind = "live"
    can_send = True

    def __init__(self, argv: list[str], cwd: str | None = None, env: dict | None = None) -> None:
        super().__init__()
        self.argv = list(argv)
        self.cwd = cwd
        self.env = env
        self.description = "live run"
        self.process: subprocess.Popen | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._send_lock = threading.Lock()
        self._stderr_thread: threading.Thread | None = None
        self._fd = -1
        self.start_error = ""

    def start(self) -> "ChildProcessSource":
        """Start the child now (before the app is built, so torch loads while Textual starts)."""
        if self.process is not None or self.start_error:
            return self
        try:
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, bufsize=0,
                # its own session: a Ctrl-C typed before the app takes the terminal reaches only
                # the app, which then stops the child cleanly with a command
                start_new_session=True,
            )
        except OSError as error:
            self.start_error = f"could not start the engine: {error}"
            return self
        self._stderr_thread = threading.Thread(
            target=self._collect_stderr, name="child-stderr", daemon=True)
        self._stderr_thread.start()
        return self

    def _collect_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for raw in iter(self.process.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._stderr_tail.append(line)

    def _chunks(self) -> Iterator[bytes]:
        self.start()
        if self.process is None or self.process.stdout is None:
            return
        self._fd = self.process.stdout.fileno()
        yield from _read_fd(self._fd)
        try:
            self.process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            pass
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=1.0)  # so error_text holds the child's last words

    def _more_ready(self) -> bool:
        return _readable(self._fd)

    def send(self, command: Command) -> bool:
        process = self.process
        if process is None or process.stdin is None or process.poll() is not None:
            return False
        data = (command.to_json() + "\n").encode("utf-8")
        with self._send_lock:
            try:
                process.stdin.write(data)
                process.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                return False
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Send Stop, wait for a clean exit (the engine flushes its log), then terminate."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            self.send(Stop())
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.terminate()

    def terminate(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            process.terminate()
        try:
            process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def exit_code(self) -> int | None:
        if self.start_error:
            return 2
        return None if self.process is None else self.process.poll()

    @property
    def error_text(self) -> str:
        if self.start_error:
            return self.start_error
        return "\n".join(self._stderr_tail)

