"""What the monitor knows about a run, built from its events. Pure Python: no textual, no torch.

The app feeds every event to ``RunState.ingest`` on its main thread and, once per frame, asks for
a ``RunView`` at a cursor (the latest step while following a run, any earlier step while scrubbing
a replay). Per-step series live in bounded deques, so a long run costs bounded memory; rarer
events (evaluations, alarms, gate matrices, setting changes) are kept in step order and looked up
by bisection.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

from engine.events import (Alarm, Checkpoint, Eval, Event, Gates, Generation, Notice, Prediction,
                           RunFinished, RunStarted, Status, Step)

HISTORY_STEPS = 100_000  # per-step values kept for sparklines, charts and scrubbing
HISTORY_EVENTS = 2_000  # evaluations, alarms and status changes kept
HISTORY_GATES = 100  # gate snapshots kept (each is hidden x time x gates numbers)
# the engine's answer to set_clip (engine/runner.py): it confirms a change before the next step does
CLIP_NOTICE = re.compile(r"clipping (?:OFF|ON: max_norm (\S+), norm type (\S+))$")


class Settings(NamedTuple):
    """What a Step reports about how training is set up; recorded only when it changes."""

    epoch: int
    epochs: int
    clip_on: bool
    clip_max_norm: float
    clip_norm_type: str
    lr: float


@dataclass
class RunView:
    """Everything the widgets draw, at one cursor position."""

    step: int = 0  # the step at the cursor (0 before the first)
    index: int = -1  # its position in the series
    steps_seen: int = 0
    total_steps: int = 0
    config: dict = field(default_factory=dict)
    settings: Settings | None = None
    steps_per_s: float = 0.0
    loss: list[float] = field(default_factory=list)
    grad_norms: dict[str, list[float]] = field(default_factory=dict)
    total_norm: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # dev accuracy or perplexity, in order
    best: float | None = None
    alarm: Alarm | None = None  # the alarm to show, or None
    gates: Gates | None = None
    state: str = "waiting"  # running | paused | finished | stopped | failed | waiting
    speed: float = 0.0  # the engine's steps/s cap


class RunState:
    def __init__(self, history: int = HISTORY_STEPS) -> None:
        self.started: RunStarted | None = None
        self.steps: collections.deque[int] = collections.deque(maxlen=history)
        self.loss: collections.deque[float] = collections.deque(maxlen=history)
        self.total_norm: collections.deque[float] = collections.deque(maxlen=history)
        self.steps_per_s: collections.deque[float] = collections.deque(maxlen=history)
        self.grad_norms: dict[str, collections.deque[float]] = {}
        self._history = history
        self.settings: list[tuple[int, Settings]] = []
        self.evals: list[Eval] = []  # dev split only, in step order
        self.alarms: list[Alarm] = []
        self.gates: list[Gates] = []
        self.status: Status | None = None
        self.statuses: list[Status] = []  # every state change, for the header of a replay
        self.latest_alarm: Alarm | None = None  # the newest alarm (after a rewind, steps repeat)
        self.latest_gates: Gates | None = None
        self.pinned_gates = ""  # a console input whose heatmaps stay shown over the engine's probe refresh
        self.pin_outdated = False  # the engine refreshed its probe since: the pinned input is worth asking again
        self.finished: RunFinished | None = None
        self.checkpoint: Checkpoint | None = None
        self.events_seen = 0
        self.bad_events = 0
        self.acknowledged: set[int] = set()  # id() of alarms the user dismissed

    # --- ingestion (main thread) -------------------------------------------

    def ingest(self, events: Iterable[Event]) -> list[Event]:
        """Take in events; return those the console shows (predictions, generation, notices)."""
        for_console: list[Event] = []
        for event in events:
            self.events_seen += 1
            if not _well_typed(event):  # parsed, but not what the engine writes: skip, count
                self.bad_events += 1
                continue
            if type(event) is Step:
                self._ingest_step(event)
            elif isinstance(event, (Prediction, Generation, Notice)):
                for_console.append(event)
                if isinstance(event, Notice):
                    self._confirm_clip(event)
            elif isinstance(event, Eval):
                if event.split == "dev":
                    _append_bounded(self.evals, event)
                else:
                    for_console.append(event)
            elif isinstance(event, Alarm):
                _append_bounded(self.alarms, event)
                self.latest_alarm = event
                if event.kind == "healthy":
                    for_console.append(event)
            elif isinstance(event, Gates):
                _append_bounded(self.gates, event, HISTORY_GATES)
                shown = self.latest_gates
                if event.request == "probe" and shown is not None and self.pinned_gates == shown.request != "":
                    self.pin_outdated = True  # keep the console's input on screen; the app asks again
                else:
                    self.latest_gates = event
            elif isinstance(event, Status):
                self.status = event
                _append_bounded(self.statuses, event)
                if event.message:
                    for_console.append(event)
            elif isinstance(event, RunStarted):
                self._start(event)
            elif isinstance(event, RunFinished):
                self.finished = event
                for_console.append(event)
            elif isinstance(event, Checkpoint):
                self.checkpoint = event
        return for_console

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
        self.loss.append(step.loss)
        self.total_norm.append(step.total_norm)
        self.steps_per_s.append(step.steps_per_s)
        norms = step.grad_norms
        for name, series in self.grad_norms.items():
            series.append(norms.get(name, math.nan))
        if not norms.keys() <= self.grad_norms.keys():
            for name, value in norms.items():
                if name not in self.grad_norms:
                    self._norm_series(name)[-1] = value
        settings = Settings(step.epoch, step.epochs, step.clip_on, step.clip_max_norm,
                            step.clip_norm_type, step.lr)
        if not self.settings or self.settings[-1][1] != settings:
            self.settings.append((step.step, settings))

    def _confirm_clip(self, notice: Notice) -> None:
        """Record clipping as the engine confirmed it, so the header shows it even while paused."""
        match = CLIP_NOTICE.match(notice.message)
        if match is None:
            return
        config = self.config
        if self.settings:
            step, before = self.settings[-1]
        else:
            step, before = 0, Settings(0, 0, False, float(config.get("clip") or 0.0),
                                       str(config.get("clip_type", "2")), float(config.get("lr") or 0.0))
        on, max_norm, norm_type = match.group(1) is not None, match.group(1), match.group(2)
        try:
            max_norm = float(max_norm) if on else before.clip_max_norm
        except ValueError:
            return
        settings = before._replace(clip_on=on, clip_max_norm=max_norm,
                                   clip_norm_type=norm_type or before.clip_norm_type)
        if settings != before:
            self.settings.append((max(step, notice.step), settings))

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
    def latest_settings(self) -> Settings | None:
        return self.settings[-1][1] if self.settings else None

    def settings_at(self, step: int) -> Settings | None:
        position = bisect.bisect_right(self.settings, step, key=lambda item: item[0]) - 1
        return self.settings[position][1] if position >= 0 else None

    def alarm_at(self, step: int, live: bool) -> Alarm | None:
        """The alarm the banner shows at this step: the latest one, unless healthy or dismissed."""
        if live:
            alarm = self.latest_alarm
        else:
            position = bisect.bisect_right(self.alarms, step, key=lambda item: item.step) - 1
            alarm = self.alarms[position] if position >= 0 else None
        if alarm is None or alarm.kind == "healthy" or id(alarm) in self.acknowledged:
            return None
        return alarm

    def _status_at(self, step: int) -> Status | None:
        position = bisect.bisect_right(self.statuses, step, key=lambda item: item.step) - 1
        return self.statuses[position] if position >= 0 else None

    def acknowledge(self, alarm: Alarm | None) -> None:
        if alarm is not None:
            self.acknowledged.add(id(alarm))

    def view(self, index: int | None = None, width: int = 200) -> RunView:
        """The run at series position ``index`` (None = the latest), with ``width`` recent points."""
        live = index is None or index >= self.last_index
        if live:
            index = self.last_index
        index = max(-1, min(index, self.last_index))
        step = self.steps[index] if index >= 0 else 0
        end = index + 1
        begin = max(0, end - width)
        started = self.started
        view = RunView(
            step=step, index=index, steps_seen=len(self.steps),
            total_steps=started.total_steps if started else 0,
            config=self.config,
            settings=self.settings[-1][1] if live and self.settings else self.settings_at(step),
            steps_per_s=self.steps_per_s[index] if index >= 0 else 0.0,
            loss=_window(self.loss, begin, end),
            total_norm=_window(self.total_norm, begin, end),
            grad_norms={name: _window(series, begin, end) for name, series in self.grad_norms.items()},
        )
        evals = self.evals if live else self.evals[:bisect.bisect_right(self.evals, step, key=lambda e: e.step)]
        view.scores = [_score(item) for item in evals[-width:]]
        view.best = evals[-1].best if evals else None
        view.alarm = self.alarm_at(step, live)
        if live:
            view.gates = self.latest_gates
        else:
            position = bisect.bisect_right(self.gates, step, key=lambda item: item.step) - 1
            view.gates = self.gates[position] if position >= 0 else (self.gates[0] if self.gates else None)
        status = self.status if live else self._status_at(step)
        if status is not None:
            view.state, view.speed = status.state, status.speed
        elif self.steps:
            view.state = "running"
        return view

    def series(self, every: int = 1, end: int | None = None) -> dict[str, list[float]]:
        """Whole-run series for the full charts, taking every ``every``-th step up to ``end``."""
        stop = len(self.steps) if end is None else end
        result = {"step": _window(self.steps, 0, stop, every), "loss": _window(self.loss, 0, stop, every),
                  "total_norm": _window(self.total_norm, 0, stop, every)}
        for name, values in self.grad_norms.items():
            result[name] = _window(values, 0, stop, every)
        return result


_NUMBER = (int, float)


def _numbers(*values) -> bool:
    return all(isinstance(value, _NUMBER) for value in values)


def _optional_numbers(*values) -> bool:
    return all(value is None or isinstance(value, _NUMBER) for value in values)


def _well_typed(event: Event) -> bool:
    """Whether the fields the monitor draws have the types the engine writes (a log can be edited)."""
    if not isinstance(event.step, int):
        return False
    if type(event) is Step:  # the hot path: sum() type-checks every number at C speed
        norms = event.grad_norms
        if not isinstance(norms, dict) or not isinstance(event.clip_norm_type, str):
            return False
        try:
            sum(norms.values(), event.loss + event.total_norm + event.steps_per_s + event.lr
                + event.clip_max_norm + event.epoch + event.epochs)
        except TypeError:
            return False
        return True
    if isinstance(event, Alarm):
        return _numbers(event.value, event.ratio, event.median) and isinstance(event.kind, str) \
            and isinstance(event.parameter, str) and isinstance(event.message, str)
    if isinstance(event, Eval):
        return _optional_numbers(event.accuracy, event.perplexity, event.best) and isinstance(event.split, str)
    if isinstance(event, Status):
        return _numbers(event.speed) and isinstance(event.state, str) and isinstance(event.message, str)
    if isinstance(event, RunStarted):
        return isinstance(event.config, dict) and isinstance(event.parameters, dict) \
            and _numbers(event.total_steps, event.steps_per_epoch)
    if isinstance(event, Gates):
        return isinstance(event.tokens, list) and isinstance(event.matrices, dict) and isinstance(event.cell, str)
    if isinstance(event, Prediction):
        return _numbers(event.predicted) and isinstance(event.tokens, list) and isinstance(event.top, list) \
            and all(isinstance(item, list) and len(item) == 2 and _numbers(item[1]) for item in event.top) \
            and _optional_numbers(event.target)
    if isinstance(event, Generation):
        return isinstance(event.text, str)
    if isinstance(event, Notice):
        return isinstance(event.message, str) and isinstance(event.level, str)
    if isinstance(event, RunFinished):
        return _optional_numbers(event.best_dev, event.test_accuracy, event.test_perplexity)
    return True


def _window(series: collections.deque, begin: int, end: int, every: int = 1) -> list:
    """series[begin:end:every] for a deque, walking from the nearer end."""
    length = len(series)
    if begin >= end:
        return []
    if every == 1 and length - end < begin:
        # near the tail (the common case while following a run): walk backwards from the end
        values = list(itertools.islice(reversed(series), length - end, length - begin))
        values.reverse()
        return values
    return list(itertools.islice(series, begin, end, every))


def _score(evaluation: Eval) -> float:
    if evaluation.accuracy is not None:
        return evaluation.accuracy
    return evaluation.perplexity if evaluation.perplexity is not None else math.nan


def _append_bounded(items: list, item, bound: int = HISTORY_EVENTS) -> None:
    """Append in step order (events arrive ordered; an out-of-order one is inserted), keeping a bound."""
    if items and items[-1].step > item.step:
        bisect.insort_right(items, item, key=lambda other: other.step)
    else:
        items.append(item)
    if len(items) > bound:
        del items[: len(items) - bound]
