"""Moving events out of the training loop and commands into it.

The loop hands events to ``EventWriter.emit`` (a queue put) and the Step events of a few steps at a
time to ``EventWriter.emit_steps`` (``StepRows``: the numbers as the loop recorded them); a writer
thread encodes them as JSON, appends them to the run's log and to any other sink, and flushes once per
burst. ``close()`` drains the queue, flushes and fsyncs, so a run stopped by Ctrl-C keeps every event
it made.

The writer works in bursts: after writing what was queued it waits ``interval`` seconds (four bursts a
second by default) before it looks again, unless something must go out at once: an event from
outside the stream of training steps (a status, a notice, the answer to a command), or steps run under
a speed cap. Encoding holds the GIL, and each time the writer wakes it must take the GIL from the busy
training loop and start on caches gone cold; bursts a quarter second apart cost the writer about a
quarter less per step than bursts a tenth apart. The Step lines have their own encoder, about twice as
fast as ``to_json``, which reads back as exactly the same values.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
from typing import Callable, IO

from .events import (Alarm, Checkpoint, Command, DecodeError, Eval, Event, Gates, Step, Stop, _field_names, build,
                     command_from_json)

_CLOSE = object()
_STREAM = (Step, Eval, Gates, Checkpoint, Alarm)  # what training makes as it goes (not written at once)


# The same encoding as Event.to_json, built once: json.dumps builds an encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode(event: Event) -> str:
    """``event.to_json()``, faster in the common case where every float is finite."""
    if type(event) is Step:
        line = _encode_step(event)
        if line is not None:
            return line
    try:
        return _ENCODER.encode(event.to_dict())
    except ValueError:  # NaN or infinity: to_json spells them out
        return event.to_json()


_STEP_FIELDS = ("run", "step", "t", "epoch", "epochs", "loss", "grad_norms", "total_norm", "clip_on",
                "clip_max_norm", "clip_norm_type", "clip_factor", "skipped", "lr", "steps_per_s")
_STEP_FAST = _field_names(Step) == _STEP_FIELDS  # if Step changes, the general encoder stays right
_STEP_LINES: dict[tuple, str | None] = {}  # (run, clip_norm_type, parameter names) -> the line to fill in
_FLOAT = {float}
_JSON_BOOL = {True: "true", False: "false"}
# The loss and the norms come from float32 sums, and Python's shortest repr of such a number is some
# 17 digits found by a search that takes twice as long as printing 17 digits outright. Printed with
# 17 significant digits (and always a decimal point) they read back as exactly the same floats.
_EXACT = "%#.17g"


def _spelled(text: str) -> str:
    """``text`` as JSON writes it, safe inside a %-format."""
    return json.dumps(text, ensure_ascii=False).replace("%", "%%")


def _step_line(key: tuple) -> str | None:
    """The format of a Step event's line for (run, clip_norm_type, names); None unless all are strings."""
    try:
        return _STEP_LINES[key]
    except KeyError:
        pass
    run, norm_type, names = key
    line = None
    if _STEP_FAST and type(run) is str and type(norm_type) is str and all(type(name) is str for name in names):
        norms = ",".join(_spelled(name) + ":" + _EXACT for name in names)
        line = ('{"type":"step","run":' + _spelled(run) + ',"step":%d,"t":%r,"epoch":%d,"epochs":%d,"loss":'
                + _EXACT + ',"grad_norms":{' + norms + '},"total_norm":' + _EXACT + ',"clip_on":%s,'
                '"clip_max_norm":%r,"clip_norm_type":' + _spelled(norm_type) + ',"clip_factor":%r,'
                '"skipped":%s,"lr":%r,"steps_per_s":%r}')
    _STEP_LINES[key] = line
    return line


def _encode_step(event: Step) -> str | None:
    """The line of a Step event, built without its dict; None when a field is not of the plain type
    this expects (finite floats, ints, bools, strings), and ``encode`` then takes the general way."""
    norms = event.grad_norms
    if type(norms) is not dict:
        return None
    return _step_text(event.run, event.epochs, tuple(norms), tuple(norms.values()), event.step, event.t,
                      event.epoch, event.loss, event.total_norm, event.clip_on, event.clip_max_norm,
                      event.clip_norm_type, event.clip_factor, event.skipped, event.lr, event.steps_per_s)


def _step_text(run, epochs, names: tuple, values, step, t, epoch, loss, total, clip_on, clip_max_norm,
               norm_type, factor, skipped, lr, steps_per_s) -> str | None:
    """A Step event's line from its fields, or None when one is not of the plain type the line's format
    expects. The line reads back as the event's values, exactly; the loss, the norms and the total are
    spelled with 17 digits (``_EXACT``), not as ``to_json`` does."""
    if not (type(step) is int and type(epoch) is int and type(epochs) is int
            and type(clip_on) is bool and type(skipped) is bool
            and type(t) is type(loss) is type(total) is type(clip_max_norm) is type(factor) is type(lr)
            is type(steps_per_s) is float and set(map(type, values)) <= _FLOAT
            and math.isfinite(t + loss + total + clip_max_norm + factor + lr + steps_per_s + sum(values))):
        return None
    line = _step_line((run, norm_type, names))
    if line is None:
        return None
    return line % (step, t, epoch, epochs, loss, *values, total, _JSON_BOOL[clip_on], clip_max_norm, factor,
                   _JSON_BOOL[skipped], lr, steps_per_s)


class StepRows:
    """The Step events of a few training steps, each followed by the events of its step (its alarms, an
    evaluation, a checkpoint), as the loop recorded them.

    The loop hands these over instead of events: the writer thread makes the lines (and, for its
    callbacks, the events), so the loop builds no event object and no dict for a step. ``records``
    holds one tuple per step: (step, t, epoch, loss, total_norm, clip_on, clip_max_norm,
    clip_norm_type, clip_factor, skipped, lr, steps_per_s), with ``t`` and ``steps_per_s`` not yet
    rounded; ``norms`` one list per step, in the order of ``names``; ``after`` maps a step's index to
    the events that follow its Step event.
    """

    __slots__ = ("run", "epochs", "names", "records", "norms", "after", "prompt")

    def __init__(self, run: str, epochs: int, names: tuple, records: list[tuple], norms: list[list[float]],
                 after: dict[int, list[Event]], prompt: bool = False):
        self.run, self.epochs, self.names = run, epochs, names
        self.records, self.norms, self.after = records, norms, after
        self.prompt = prompt  # someone follows these steps one by one: write them at once

    def _event(self, record: tuple, values) -> Step:
        (step, t, epoch, loss, total, clip_on, clip_max_norm, norm_type, factor, skipped, lr,
         steps_per_s) = record
        return build(Step, run=self.run, step=step, t=round(t, 4), epoch=epoch, epochs=self.epochs, loss=loss,
                     grad_norms=dict(zip(self.names, values)), total_norm=total, clip_on=clip_on,
                     clip_max_norm=clip_max_norm, clip_norm_type=norm_type, clip_factor=factor,
                     skipped=skipped, lr=lr, steps_per_s=round(steps_per_s, 2))

    def events(self) -> list[Event]:
        events, after = [], self.after
        for index, (record, values) in enumerate(zip(self.records, self.norms)):
            events.append(self._event(record, values))
            events.extend(after.get(index, ()))
        return events

    def lines(self) -> list[str]:
        """Each event's JSON line, newline included: ``events()``, as ``encode`` writes them."""
        lines, after = [], self.after
        run, epochs, names = self.run, self.epochs, self.names
        for index, (record, values) in enumerate(zip(self.records, self.norms)):
            step, t, epoch, loss, total, clip_on, clip_max_norm, norm_type, factor, skipped, lr, steps_per_s = record
            text = _step_text(run, epochs, names, values, step, round(t, 4), epoch, loss, total, clip_on,
                              clip_max_norm, norm_type, factor, skipped, lr, round(steps_per_s, 2))
            lines.append((text if text is not None else encode(self._event(record, values))) + "\n")
            if after and index in after:
                lines.extend(encode(event) + "\n" for event in after[index])
        return lines


class EventWriter:
    def __init__(self, log_path: str | None = None, stream: IO[str] | None = None,
                 callbacks: list[Callable[[Event], None]] | None = None, interval: float = 0.25):
        self.log_path = log_path
        self.log = None
        if log_path:
            os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
            self.log = open(log_path, "w", encoding="utf-8")
        self.stream = stream
        self.callbacks = list(callbacks or [])
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.interval = interval  # seconds between two bursts of writing
        self.wake = threading.Event()  # set: write what is queued now, without waiting out the interval
        self.thread = threading.Thread(target=self._drain, name="event-writer", daemon=True)
        self.thread.start()
        self.closed = False
        self.stream_broken = False
        self.cpu_s = 0.0  # CPU seconds the writer thread used, known once it has finished

    def emit(self, event: Event) -> None:
        """Queue an event; one from outside the stream of training (a status, a notice, the answer to a
        command) is written at once, the stream's own (steps, evaluations, heatmaps, checkpoints,
        alarms) with the next burst."""
        if type(event) not in _STREAM:
            self.wake.set()  # before the put: the burst that takes the event clears it
        self.queue.put(event)

    def emit_steps(self, rows: StepRows) -> None:
        """Queue the Step events (and what follows each) of a few steps, to be made in the writer
        thread with the next burst, or at once if the rows say so (``StepRows.prompt``)."""
        if rows.prompt:
            self.wake.set()
        self.queue.put(rows)

    def _write(self, items: list) -> None:
        """Encode a burst of events (and StepRows) and write it with one call per sink."""
        lines = []
        for item in items:
            if type(item) is StepRows:
                lines.extend(item.lines())
            else:
                lines.append(encode(item) + "\n")
        text = "".join(lines)
        if self.log is not None:
            self.log.write(text)
        if self.stream is not None and not self.stream_broken:
            try:
                self.stream.write(text)
            except (BrokenPipeError, ValueError, OSError):
                self.stream_broken = True  # the reader went away; the log still gets everything
        if self.callbacks:
            for item in items:
                for event in item.events() if type(item) is StepRows else (item,):
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
            self.wake.clear()  # what asked for this burst is in it
            while True:
                try:
                    burst.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            closing = any(item is _CLOSE for item in burst)
            self._write([item for item in burst if item is not _CLOSE])
            self._flush()
            if closing:
                self.cpu_s = time.thread_time()
                return
            self.wake.wait(self.interval)  # let the next burst gather

    def close(self) -> None:
        """Write everything still queued, flush and fsync the log."""
        if self.closed:
            return
        self.closed = True
        self.wake.set()
        self.queue.put(_CLOSE)
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
