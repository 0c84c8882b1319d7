"""What the monitor knows about a run, built from its events. Pure Python: no textual, no torch.

The app feeds every event to ``RunState.ingest`` on its main thread and, once per frame, asks for
a ``RunView`` at a cursor (the latest step while following a run, any earlier step while scrubbing
a replay). Per-step series live in bounded deques, so a long run costs bounded memory; rarer
events (evaluations, alarms, gate matrices, setting changes) are kept in arrival order with the
series position they arrived at, so a replay's cursor shows only what had happened by then.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import math
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

from engine.events import (Alarm, Checkpoint, Eval, Event, Flow, Gates, Generation, Notice, Prediction,
                           RunFinished, RunStarted, Saturation, Settings, Status, Step, Weights)
from engine.text import visible, visible_fields
from tui.advisor import Advice, ClipAdvisor
from tui.checks import well_typed
from tui.history import Bucket, MinMaxHistory, Thinned, scores_per_column
from tui.instruments import GaugeReading, InstrumentHistory

FINAL_STATES = ("finished", "stopped", "failed")
HISTORY_STEPS = 100_000  # per-step values kept for sparklines, charts and scrubbing
HISTORY_EVENTS = 2_000  # evaluations, alarms, marks and status changes kept
HISTORY_GATES = 100  # gate snapshots kept (each is hidden x time x gates numbers)


class RunSettings(NamedTuple):
    """How training is set up from a step on: what the header shows and the marks record."""

    clip_on: bool
    clip_max_norm: float
    clip_norm_type: str
    lr: float
    speed: float = 0.0  # steps/s cap, 0 = none
    cause: str = "start"  # why they changed: start | command | rewind | resume | ...


class Mark(NamedTuple):
    """Something that happened at a step, drawn on every chart: clip, lr, rewind, pause or alarm."""

    position: int  # series position of the step it happened at (or after)
    step: int
    kind: str  # clip | lr | rewind | pause | alarm
    label: str


@dataclass
class RunView:
    """Everything the widgets draw, at one cursor position."""

    step: int = 0  # the step at the cursor (0 before the first)
    index: int = -1  # its position in the series
    steps_seen: int = 0
    total_steps: int = 0
    epoch: int = 0
    config: dict = field(default_factory=dict)
    settings: RunSettings | None = None
    step_settings: RunSettings | None = None  # what the step at the cursor ran under (settings may be newer)
    steps_per_s: float = 0.0
    whole: bool = False  # the series below are the whole run in buckets (their maxima), not a window
    loss: list[float] = field(default_factory=list)
    current_loss: float | None = None  # the loss of the step at the cursor (a whole run's series holds bucket maxima)
    grad_norms: dict[str, list[float]] = field(default_factory=dict)
    total_norm: list[float] = field(default_factory=list)
    first_steps: list[int] = field(default_factory=list)  # the step of each point (bucket) drawn
    marks: list[tuple[int, Mark]] = field(default_factory=list)  # (point, mark) within the series drawn
    scores: list[float | None] = field(default_factory=list)  # the dev score by each column's end (None: before any)
    best: float | None = None
    alarms: list[Alarm] = field(default_factory=list)  # every alarm so far, in arrival order
    pre_clip: float = math.nan  # the step's total norm before clipping
    clip_factor: float = 1.0  # what clipping multiplied the step's gradients by
    advice: Advice | None = None
    gates: Gates | None = None
    flows: list[Flow] = field(default_factory=list)  # the last measured flows, oldest first
    gauge: list[GaugeReading] = field(default_factory=list)  # σ_max over the run
    saturation: Saturation | None = None
    state: str = "waiting"  # running | paused | finished | stopped | failed | waiting


class RunState:
    def __init__(self, history: int = HISTORY_STEPS) -> None:
        self.started: RunStarted | None = None
        self.steps: collections.deque[int] = collections.deque(maxlen=history)
        self.epochs: collections.deque[int] = collections.deque(maxlen=history)
        self.loss: collections.deque[float] = collections.deque(maxlen=history)
        self.total_norm: collections.deque[float] = collections.deque(maxlen=history)
        self.clip_factors: collections.deque[float] = collections.deque(maxlen=history)
        self.steps_per_s: collections.deque[float] = collections.deque(maxlen=history)
        self.grad_norms: dict[str, collections.deque[float]] = {}
        self._history = history
        self.appended = 0  # steps taken in, all run (the deques drop the oldest after ``history``)
        self.whole: dict[str, MinMaxHistory] = {}
        self.advisor = ClipAdvisor(history)
        self.settings: list[tuple[int, RunSettings]] = []  # (position, settings), in arrival order
        self.marks: list[Mark] = []
        self.evals: list[tuple[int, Eval]] = []  # dev split only
        self.alarms: list[tuple[int, Alarm]] = []
        self.gates: Thinned = Thinned(HISTORY_GATES)  # (position, Gates), spread over a long run
        self.instruments = InstrumentHistory()  # flows, σ_max and saturation (tui/instruments.py)
        self.statuses: list[tuple[int, Status]] = []  # every state change, for the header of a replay
        self.console: list[tuple[int, Event]] = []  # what the console shows, for a replay's cursor
        self.status: Status | None = None
        self.first_explosion: Alarm | None = None
        self.latest_gates: Gates | None = None
        self.finished: RunFinished | None = None
        self.weights = ""  # after the run: which weights answer the console (final | best)
        self.checkpoint: Checkpoint | None = None
        self.events_seen, self.bad_events = 0, 0  # every event taken in; those skipped as malformed
        self.source_end = ""  # "failed" when the engine died, "cut off" when a stream ended, before the run did

    # --- ingestion (main thread) -------------------------------------------

    def ingest(self, events: Iterable[Event]) -> list[Event]:
        """Take in events; return those the console shows (predictions, generation, notices)."""
        for_console: list[Event] = []
        for event in events:
            self.events_seen += 1
            if not well_typed(event):  # parsed, but not what the engine writes: skip, count
                self.bad_events += 1
                continue
            if type(event) is Step:
                self._ingest_step(event)
                continue
            # every string of the rarer events (notices, statuses, tokens, the config) is shown as it
            # stands, its control characters made visible (a log or a stream can hold anything)
            event = visible_fields(event, lines=("text", "prefix") if isinstance(event, Generation) else (),
                                   numbers=("matrices",))
            here = max(0, len(self.steps) - 1)
            shown = self._ingest_other(event, here)
            if shown:
                for_console.append(event)
                _append_bounded(self.console, (here, event))
        return for_console

    def _ingest_other(self, event: Event, here: int) -> bool:
        """Any event but a Step; True when the console shows it."""
        if isinstance(event, (Prediction, Generation)):
            return True
        if isinstance(event, Notice):
            return True
        if isinstance(event, Weights):
            self.weights = event.which
            return True
        if isinstance(event, Settings):  # in force from the next step on: marked there
            self._note_settings(len(self.steps), RunSettings(event.clip_on, event.clip_max_norm, event.clip_norm_type,
                                                             event.lr, event.speed, event.cause), event.step + 1)
            return False
        if isinstance(event, Eval):
            if event.split == "dev":
                _append_bounded(self.evals, (here, event))
                return False
            return True
        if isinstance(event, Alarm):
            return self._ingest_alarm(event, here)
        if isinstance(event, (Flow, Saturation)):
            self.instruments.ingest(event, here)
            return False
        if isinstance(event, Gates):
            self.gates.offer((here, event))
            self.latest_gates = event
            return False
        if isinstance(event, Status):
            if event.state == "paused" and (self.status is None or self.status.state != "paused"):
                self._mark(here, event.step, "pause", "paused")
            self.status = event
            _append_bounded(self.statuses, (here, event))
            return bool(event.message)
        if isinstance(event, RunStarted):
            self._start(event)
        elif isinstance(event, RunFinished):
            self.finished = event
            return True
        elif isinstance(event, Checkpoint):
            self.checkpoint = event
        return False

    def _ingest_alarm(self, alarm: Alarm, here: int) -> bool:
        _append_bounded(self.alarms, (here, alarm))
        self.advisor.observe_alarm(alarm)
        if alarm.kind == "healthy":
            return True
        if alarm.kind == "explosion" and self.first_explosion is None:
            self.first_explosion = alarm
        self._mark(here, alarm.step, "alarm", alarm.kind)
        return False

    def _start(self, event: RunStarted) -> None:
        self.started = event
        for name in event.parameters:
            self._norm_series(name)

    def _norm_series(self, name: str) -> collections.deque[float]:
        series = self.grad_norms.get(name)
        if series is None:
            # a parameter first seen mid-run is padded so all series stay aligned with steps
            series = collections.deque(itertools.repeat(math.nan, len(self.steps)), maxlen=self._history)
            self.grad_norms[name] = series
        return series

    def _ingest_step(self, step: Step) -> None:
        self.steps.append(step.step)
        self.epochs.append(step.epoch)
        self.loss.append(step.loss)
        self.total_norm.append(step.total_norm)
        self.clip_factors.append(step.clip_factor)
        self.steps_per_s.append(step.steps_per_s)
        self.appended += 1
        norms = step.grad_norms
        for name, series in self.grad_norms.items():
            series.append(norms.get(name, math.nan))
        if not norms.keys() <= self.grad_norms.keys():
            for name, value in norms.items():
                if name not in self.grad_norms:
                    self._norm_series(name)[-1] = value
        self.advisor.observe_step(step.step, step.total_norm, step.loss, step.clip_factor, step.skipped)

    def _note_settings(self, position: int, settings: RunSettings, step: int | None = None) -> None:
        """Record new settings, and mark what changed (clip on/off or max_norm, lr, a rewind)."""
        before = self.latest_settings
        self.settings.append((position, settings))
        step = self.steps[position] if step is None and 0 <= position < len(self.steps) else (step or 0)
        if settings.cause == "rewind":
            self._mark(position, step, "rewind", "rewind")
        if before is None:
            return
        if before.clip_on != settings.clip_on or (settings.clip_on and before.clip_max_norm != settings.clip_max_norm):
            label = f"clip {settings.clip_max_norm:g}" if settings.clip_on else "clip off"
            self._mark(position, step, "clip", label)
        if before.lr != settings.lr:
            self._mark(position, step, "lr", f"lr {settings.lr:g}")

    def _mark(self, position: int, step: int, kind: str, label: str) -> None:
        _append_bounded(self.marks, Mark(position, step, kind, label))

    # --- queries ------------------------------------------------------------

    @property
    def last_index(self) -> int:
        return len(self.steps) - 1

    @property
    def task(self) -> str:
        return self.config.get("task", "digits")

    @property
    def config(self) -> dict:
        return self.started.config if self.started else {}

    @property
    def latest_settings(self) -> RunSettings | None:
        return self.settings[-1][1] if self.settings else None

    def settings_at(self, index: int) -> RunSettings | None:
        return _at(self.settings, index)

    def status_at(self, index: int) -> Status | None:
        return _at(self.statuses, index)

    def console_until(self, index: int) -> list[Event]:
        """What the console had shown by series position ``index`` (a replay's cursor)."""
        return [event for _, event in _until(self.console, index)]

    def view(self, index: int | None = None, width: int = 200, whole: bool = False) -> RunView:
        """The run at series position ``index`` (None = the latest): its last ``width`` steps, or the
        whole run up to it in at most ``width`` buckets."""
        live = index is None or index >= self.last_index
        index = self.last_index if live else max(-1, index)
        started = self.started
        view = RunView(step=self.steps[index] if index >= 0 else 0, index=index, steps_seen=len(self.steps),
                       total_steps=started.total_steps if started else 0, config=self.config,
                       settings=self.latest_settings if live else self.settings_at(index), whole=whole)
        if index >= 0:
            view.epoch, view.steps_per_s = self.epochs[index], self.steps_per_s[index]
            view.current_loss = self.loss[index]
            view.clip_factor, view.advice = self.clip_factors[index], self.advisor.at(index)
            view.pre_clip, view.step_settings = self.total_norm[index], self.settings_at(index)
        if whole:
            self._whole_series(view, index + 1, width)
        else:
            self._window_series(view, index + 1, width)
        evals = [item for _, item in (self.evals if live else _until(self.evals, index))]
        view.scores = scores_per_column([(item.step, score_of(item)) for item in evals], view.first_steps, view.step)
        view.best = evals[-1].best if evals else None
        view.alarms = [alarm for _, alarm in (self.alarms if live else _until(self.alarms, index))]
        if live:
            view.gates = self.latest_gates
        else:
            gates = _at(self.gates, index)
            view.gates = gates if gates is not None else (self.gates[0][1] if self.gates else None)
        cursor = None if live else index
        view.flows = self.instruments.flows_until(cursor, width)
        view.gauge = self.instruments.gauge_until(cursor)
        view.saturation = self.instruments.saturation_at(cursor)
        status = self.status if live else self.status_at(index)
        if status is not None:
            view.state = status.state
        elif self.steps:
            view.state = "running"
        if live and self.source_end and view.state not in FINAL_STATES:
            view.state = self.source_end
        # parameter names come from the log: shown with their control characters visible
        view.grad_norms = {visible(name): values for name, values in view.grad_norms.items()}
        return view

    def _window_series(self, view: RunView, end: int, width: int) -> None:
        begin = max(0, end - width)
        view.loss = _window(self.loss, begin, end)
        view.total_norm = _window(self.total_norm, begin, end)
        view.grad_norms = {name: _window(series, begin, end) for name, series in self.grad_norms.items()}
        view.first_steps = _window(self.steps, begin, end)
        view.marks = [(mark.position - begin, mark) for mark in self.marks if begin <= mark.position < end]

    def _whole_series(self, view: RunView, end: int, width: int) -> None:
        """Bucket maxima of the whole run up to position ``end`` (non-finite buckets as NaN)."""
        self._absorb()
        dropped = self.appended - len(self.steps)  # positions the deques no longer hold
        columns = {name: self.whole[name].columns(width, end + dropped, self._values_at(name, dropped))
                   for name in self.whole}
        view.loss = _highs(columns.get("loss", []))
        view.total_norm = _highs(columns.get("total_norm", []))
        view.grad_norms = {name: _highs(columns[name]) for name in self.grad_norms}
        reference = columns.get("loss", [])
        starts = [bucket.first - dropped for bucket in reference]
        view.first_steps = [self.steps[start] if 0 <= start < len(self.steps) else 0 for start in starts]
        view.marks = [(bisect.bisect_right(starts, mark.position) - 1, mark) for mark in self.marks
                      if mark.position < end and starts and mark.position >= starts[0]]

    def whole_columns(self, name: str, width: int, end: int | None = None) -> list[Bucket]:
        """One series of the whole run (up to series position ``end``) in at most ``width`` buckets."""
        self._absorb()
        dropped = self.appended - len(self.steps)
        history = self.whole.get(name)
        if history is None:
            return []
        return history.columns(width, None if end is None else end + dropped, self._values_at(name, dropped))

    def _series(self, name: str) -> collections.deque:
        return {"loss": self.loss, "total_norm": self.total_norm, "step": self.steps}.get(name) \
            or self.grad_norms[name]

    def _values_at(self, name: str, dropped: int):
        series = self._series(name)
        return lambda start, stop: _window(series, start - dropped, stop - dropped) if start >= dropped else None

    def _absorb(self) -> None:
        """Take the steps that arrived since the last call into the whole-run buckets."""
        for name in ("loss", "total_norm", "step", *self.grad_norms):
            history = self.whole.get(name)
            if history is None:
                history = self.whole[name] = MinMaxHistory()
            new = self.appended - history.count
            if new > 0:
                series = self._series(name)
                history.extend(_window(series, max(0, len(series) - new), len(series)))
                history.count = self.appended  # values the deque had already dropped stay missing


def _window(series: collections.deque, begin: int, end: int) -> list:
    """series[begin:end] for a deque, walking from the nearer end."""
    length = len(series)
    if begin >= end:
        return []
    if length - end < begin:  # near the tail (the common case while following a run): walk back from the end
        values = list(itertools.islice(reversed(series), length - end, length - begin))
        values.reverse()
        return values
    return list(itertools.islice(series, begin, end))


def _highs(columns: list[Bucket]) -> list[float]:
    return [math.nan if bucket.bad else bucket.high for bucket in columns]


def _at(items: list[tuple[int, object]], index: int):
    """The last item that arrived by series position ``index``."""
    position = bisect.bisect_right(items, index, key=lambda item: item[0]) - 1
    return items[position][1] if position >= 0 else None


def _until(items: list[tuple[int, object]], index: int) -> list:
    return items[:bisect.bisect_right(items, index, key=lambda item: item[0])]


def score_of(evaluation: Eval) -> float:
    value = evaluation.accuracy if evaluation.accuracy is not None else evaluation.perplexity  # a language model's
    return math.nan if value is None else value


def _append_bounded(items: list, item, bound: int = HISTORY_EVENTS) -> None:
    """Append (items arrive in order of series position), keeping a bound."""
    items.append(item)
    if len(items) > bound:
        del items[: len(items) - bound]
