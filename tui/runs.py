"""Several runs on one screen: overlaid logs, or the two branches of a forked run. Pure Python.

Events are split by their ``run`` field into one ``RunState`` each. One run is at the front (drawn
in full: every parameter's norm, its alarms, its gates); the others are drawn as overlaid series in
their own colours. The replay cursor counts the steps of the longest run (the clock); every run is
shown at the same step, a shorter run at its last step once the cursor has passed its end.
"""

from __future__ import annotations

import bisect
import math
from typing import Iterable, NamedTuple

from engine.events import Event, RunStarted
from tui.history import _summary, scores_per_column
from tui.state import FINAL_STATES, RunSettings, RunState, _window, score_of

# one per run, in order: (letter, 256-colour code); the first is the single run's green
RUN_COLOURS = (("A", 46), ("B", 208), ("C", 201), ("D", 33), ("E", 226), ("F", 141))
# config fields that say where a run wrote or how it was steered, not what it trained
LOGISTICS = frozenset({"run_id", "runs_dir", "checkpoint_dir", "resume", "speed", "pause_on_alarm", "device",
                       "log_steps", "events", "lr", "clip", "clip_type", "forked_from", "fork_step"})


class Overlay(NamedTuple):
    """One run behind the front, drawn over the front's columns."""

    letter: str
    colour: int
    loss: list  # per column of the front's series: the largest value, None where the run has no step
    current_loss: float | None  # the loss of its step at the cursor (None before its first)
    total_norm: list
    scores: list  # its dev score by the end of each column (None: before its first, or past its last step)
    settings: RunSettings | None


def run_letter(number: int) -> str:
    return RUN_COLOURS[number % len(RUN_COLOURS)][0] if number < len(RUN_COLOURS) else f"R{number + 1}"


def run_colour(number: int) -> int:
    return RUN_COLOURS[number % len(RUN_COLOURS)][1]


class RunSet:
    def __init__(self) -> None:
        self.states: list[RunState] = [RunState()]
        self.ids: list[str] = [""]  # the run id of each state ("" until its run_started arrives)
        self.front_number = 0
        self._steps_cache: dict[int, tuple[int, list[int]]] = {}

    # --- ingestion ------------------------------------------------------------

    def ingest(self, events: Iterable[Event]) -> list[Event]:
        """Hand each event to its run's state (consecutive events of one run go together); what the
        consoles show."""
        shown: list[Event] = []
        batch: list[Event] = []
        target = None
        for event in events:
            state = self._state_for(event)
            if state is not target and batch:
                shown += target.ingest(batch)
                batch = []
            target = state
            batch.append(event)
        if batch:
            shown += target.ingest(batch)
        return shown

    def _state_for(self, event: Event) -> RunState:
        run = event.run
        if type(event) is RunStarted and run not in self.ids:
            if "" in self.ids:  # the first run claims the state made before any event
                number = self.ids.index("")
            else:
                self.states.append(RunState())
                self.ids.append("")
                number = len(self.states) - 1
            self.ids[number] = run
            return self.states[number]
        try:
            return self.states[self.ids.index(run)]
        except ValueError:  # an event with no run id (or an unknown one): the first run's
            return self.states[0]

    # --- which run, where -------------------------------------------------------

    @property
    def front(self) -> RunState:
        return self.states[self.front_number]

    @property
    def overlaid(self) -> bool:
        return len(self.states) > 1

    def letter_of(self, run: str) -> str:
        """The letter a run is shown by ("" for a run id not seen)."""
        return run_letter(self.ids.index(run)) if run in self.ids else ""

    @property
    def steered(self) -> RunState:
        """The run an engine's commands steer: the run itself, never a fork's second branch (which
        follows the first branch's pause, steps, speed and rewinds, and keeps its own clip and lr)."""
        return next((state for state in self.states if "forked_from" not in state.config), self.states[0])

    def bring_forward(self) -> None:
        """The next run to the front (the o key)."""
        self.front_number = (self.front_number + 1) % len(self.states)

    @property
    def clock(self) -> RunState:
        """The run with the most steps: the replay cursor counts its steps."""
        return max(self.states, key=lambda state: len(state.steps))

    @property
    def last_index(self) -> int:
        return self.clock.last_index

    def step_at(self, index: int | None) -> int | None:
        """The step the cursor ``index`` (None = the newest) names."""
        clock = self.clock
        if index is None or not clock.steps or index >= clock.last_index:
            return None
        return clock.steps[max(0, index)]

    def position(self, state: RunState, index: int | None) -> int | None:
        """``state``'s series position at the cursor: its last step at or before the cursor's step."""
        step = self.step_at(index)
        if step is None:
            return None
        return self.position_of(state, step)

    def position_of(self, state: RunState, step: int) -> int:
        """The position of ``state``'s last step at or before ``step`` (-1 when none)."""
        steps = state.steps
        if not steps:
            return -1
        first, last = steps[0], steps[-1]
        if last - first == len(steps) - 1:  # one step after another, the common case: arithmetic
            return max(-1, min(len(steps) - 1, step - first))
        cached = self._steps_cache.get(id(state))
        if cached is None or cached[0] != state.appended:
            cached = self._steps_cache[id(state)] = (state.appended, list(steps))
        return bisect.bisect_right(cached[1], step) - 1

    # --- drawing the runs behind the front ---------------------------------------

    def overlays(self, first_steps: list[int], last_step: int, index: int | None) -> list[Overlay]:
        """Every run but the front over the front's columns (which start at ``first_steps``, the last
        ending at ``last_step``), at the cursor ``index``; its dev scores one per column as the front's."""
        drawn = []
        for number, state in enumerate(self.states):
            if number == self.front_number or state.started is None:
                continue
            position = self.position(state, index)
            end = state.last_index if position is None else position
            # lined up with the front's columns, blank past the run's own last step
            evaluations = [(item.step, score_of(item)) for at, item in state.evals if at <= end]
            own_last = state.steps[end] if end >= 0 else 0
            scores = [score if first <= own_last else None
                      for first, score in zip(first_steps, scores_per_column(evaluations, first_steps, last_step))]
            drawn.append(Overlay(run_letter(number), run_colour(number),
                                 self._columns(state, state.loss, first_steps, last_step, end),
                                 state.loss[end] if end >= 0 else None,
                                 self._columns(state, state.total_norm, first_steps, last_step, end),
                                 scores, state.latest_settings if position is None else state.settings_at(end)))
        return drawn

    def _columns(self, state: RunState, series, first_steps: list[int], last_step: int, end: int) -> list:
        if not first_steps or end < 0:
            return [None] * len(first_steps)
        edges = [self.position_of(state, step - 1) + 1 for step in first_steps]
        edges.append(min(end, self.position_of(state, last_step)) + 1)
        begin, stop = max(0, edges[0]), max(0, edges[-1])
        values = _window(series, begin, stop) if stop > begin else []
        columns = []
        for start, finish in zip(edges, edges[1:]):
            chunk = values[max(0, start - begin): max(0, min(finish, stop) - begin)]
            if not chunk:
                columns.append(None)
                continue
            high, _, bad = _summary(chunk)
            columns.append(math.nan if bad else high)
        return columns


class Entry(NamedTuple):
    """One run's line in the header's legend."""

    letter: str
    colour: int
    run: str
    differences: list[str]  # its settings that not every run shares ("clip 1 L2", "lr 0.1", "length 10")
    step: int
    state: str
    front: bool
    steered: bool = False  # a live fork's first branch: the one the clip keys steer


def _setting_words(settings: RunSettings | None) -> dict[str, str]:
    if settings is None:
        return {}
    clip = f"clip {settings.clip_max_norm:g} L{settings.clip_norm_type}" if settings.clip_on else "clip off"
    return {"clip": clip.replace("Linf", "L∞"), "lr": f"lr {settings.lr:g}"}


def legend(runs: RunSet, index: int | None, live: bool = False) -> list[Entry]:
    """The runs, each with the settings (config, and settings at the cursor) in which they differ; in
    a live fork, which branch the clip keys steer."""
    words: list[dict[str, str]] = []
    for number, state in enumerate(runs.states):
        position = runs.position(state, index)
        settings = state.latest_settings if position is None else state.settings_at(position)
        config = {key: f"{key} {value}" for key, value in state.config.items() if key not in LOGISTICS}
        if "fork_step" in state.config:  # the branches of a fork say which is which
            config["fork"] = f"branch from step {state.config['fork_step']}"
        forks = [other.config for other in runs.states if other.config.get("forked_from") == runs.ids[number]]
        if forks:
            config["fork"] = f"forked at step {forks[0]['fork_step']}"
        words.append({**config, **_setting_words(settings)})
    keys = sorted({key for entry in words for key in entry})
    differing = [key for key in keys if len({entry.get(key, "") for entry in words}) > 1]
    entries = []
    steered = runs.steered if live and "fork" in differing else None
    for number, (state, entry) in enumerate(zip(runs.states, words)):
        step, where = _where(state, runs.position(state, index))
        entries.append(Entry(run_letter(number), run_colour(number), runs.ids[number] or "waiting",
                             [entry[key] for key in differing if key in entry], step, where,
                             number == runs.front_number, state is steered))
    return entries


def _where(state: RunState, position: int | None) -> tuple[int, str]:
    """A run's step and state at a series position (None: the latest), as its header line says them."""
    index = state.last_index if position is None else position
    start = state.config.get("fork_step", 0)  # a fork's second branch, before its first step: where it branches
    step = state.steps[index] if 0 <= index < len(state.steps) else start if isinstance(start, int) else 0
    status = state.status if position is None else state.status_at(index)
    if status is None:
        return step, "running" if state.steps else "waiting"
    if position is None and state.source_end and status.state not in FINAL_STATES:
        return step, state.source_end
    return step, status.state
