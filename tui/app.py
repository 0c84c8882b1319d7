"""The live monitor: one screen built from an event source (a child process, a log, or stdin)."""

from __future__ import annotations

import asyncio
import collections
import gc
import threading
import time

from textual import events, work
from textual.app import App
from textual.binding import Binding
from textual.widgets import Input

from engine.commands import Command, GatesCommand, Pause, Resume, Rewind, SetSpeed, StepCommand
from engine.events import Notice, Settings
from tui import console_options, controls
from tui.keys import ALARM_PROMPT, RunKeys
from tui.reader import BATCHES_IN_FLIGHT, EventsArrived, SourceEnded, read_events
from tui.screens.help import KEYS, HelpScreen
from tui.screens.monitor import MonitorScreen
from tui.sources import EventSource
from tui.runs import RunSet, run_letter
from tui.state import FINAL_STATES, RunState
from tui.widgets.console import Console
from tui.widgets.run_header import source_label

FRAME_SECONDS = 1 / 15  # widgets are redrawn at this steady rate, never once per event
# ... and at once when a followed run's events arrive this long after the last frame: a step's numbers
# reach the screen without waiting for the next tick (at 20 steps/s, each step gets its own frame)
ARRIVAL_GAP = 1 / 30
STOP_TIMEOUT = 5.0  # seconds the engine gets to stop cleanly before it is terminated
# A replay's batches hold a thousand events (gate matrices among them): they are taken in a slice at a
# time, and the keys and frames queued meanwhile go between two slices
INGEST_SLICE = 0.008  # seconds
INGEST_CHUNK = 64  # events between two looks at the clock
GC_THRESHOLDS = gc.get_threshold()
FULL_COLLECTIONS_HELD = 1 << 30  # a threshold for the oldest generation that is never reached
CLIP, SPEED, MOVE = Binding.Group("clip"), Binding.Group("speed"), Binding.Group("move")
# keys that only ask the engine (a replay's p, n, + and - move its own cursor; a stream's do not)
ENGINE_ONLY = ("toggle_clip", "scale_clip", "rewind", "gates", "advise", "fork")


class MonitorApp(RunKeys, App[int]):
    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = False  # the footer needs the room for the run's keys
    AUTO_FOCUS = None  # keys go to the monitor until / focuses the console
    TITLE = "rnnlab-tui"
    # the footer lists these in order and cuts what does not fit: help and quit come first, and keys
    # share one word (c [ ] clip, + - speed) so that a live run's keys fit in 120 columns and a
    # replay's in 80 (? names each)
    BINDINGS = [
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("q", "quit", "quit"),
        Binding("c", "toggle_clip", "clip", group=CLIP),
        Binding("left_square_bracket", "scale_clip(0.5)", "max_norm÷2", key_display="[", group=CLIP),
        Binding("right_square_bracket", "scale_clip(2)", "max_norm×2", key_display="]", group=CLIP),
        Binding("p", "pause", "pause"),
        Binding("n", "step", "step"),
        Binding("r", "rewind", "rewind"),
        Binding("plus", "speed(1)", "faster", key_display="+", group=SPEED),
        Binding("minus", "speed(-1)", "slower", key_display="-", group=SPEED),
        Binding("g", "gates", "gates"),
        Binding("t", "toggle_flow", "flow"),
        # priority: handled as the key arrives, so the keys typed right after it reach the input
        Binding("slash", "focus_console", "console", key_display="/", priority=True),
        Binding("a", "advise", "advise"),
        Binding("w", "toggle_whole", "whole"),
        Binding("v", "toggle_charts", "charts"),
        Binding("f", "fork", "fork"),
        Binding("o", "front", "other run"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
        Binding("escape", "dismiss", "leave console", key_display="Esc"),
        Binding("left", "seek('-1')", "back", key_display="←", group=MOVE),
        Binding("right", "seek('1')", "forward", key_display="→", group=MOVE),
        Binding("pageup", "seek('-100')", show=False),
        Binding("pagedown", "seek('100')", show=False),
        Binding("home", "seek('home')", show=False),  # ? lists them: the footer ends at ← → at 80 columns
        Binding("end", "seek('end')", show=False),
    ]

    def __init__(self, source: EventSource) -> None:
        super().__init__()
        self.source = source
        self.monitor = MonitorScreen()
        self.runs = RunSet()  # one RunState per run: a log, or each branch of a fork
        self.playback = controls.Playback(follow=source.kind != "replay")
        self._slots = threading.Semaphore(BATCHES_IN_FLIGHT)
        self._arrived: collections.deque[list] = collections.deque()  # batches not yet wholly taken in
        self._taken = 0  # events of the first of them already taken in
        self._end: SourceEnded | None = None  # the stream's end, said once its last events are in
        self._reader_stop = threading.Event()
        self._dirty = True
        self._last_frame = time.monotonic()
        self._request_id = 0
        self.stopping = False
        self.ended: SourceEnded | None = None
        self.failure = ""  # why a live engine died, said again on stderr once the app has closed
        self.note = ""  # a pending request shown in the header until the engine confirms it
        self.asked: dict = {}  # id(run state) -> (the settings a request was worked out from, what it asks)
        self.alarm_pause = False  # paused at the first explosion: c, p and r answer it
        self._console_at: tuple | None = None  # the cursor (and front run) the replay's console was drawn for
        self.sampling = console_options.GREEDY  # how the console's generation chooses characters (:sample)

    @property
    def state(self) -> RunState:
        """The run at the front: drawn in full, and the one the keys speak of."""
        return self.runs.front

    def get_default_screen(self) -> MonitorScreen:
        return self.monitor

    def on_mount(self) -> None:
        # Everything alive now (modules, the widget tree) lives as long as the app: keep the cyclic
        # garbage collector from rescanning it, which paused a 100k-step replay for 100+ ms.
        gc.freeze()
        self.call_after_refresh(self._start)  # once the screen is mounted and drawn

    def _start(self) -> None:
        if self.source.kind == "replay":
            # No full collections while a log is read: each would rescan every per-step series read so
            # far (tens of ms, a key's wait). The young generations are still collected; once the log
            # is in, one full collection, and a freeze (on_source_ended).
            gc.set_threshold(*GC_THRESHOLDS[:2], FULL_COLLECTIONS_HELD)
        self._read()
        self.set_interval(FRAME_SECONDS, self._draw_frame)

    def on_unmount(self) -> None:
        gc.set_threshold(*GC_THRESHOLDS)
        self._reader_stop.set()  # the reader thread must not outlive the app
        self.source.terminate()

    def on_resize(self, event: events.Resize) -> None:
        self.monitor.fit(event.size.width, event.size.height)
        self._dirty = True

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if isinstance(self.screen, HelpScreen):  # help open: only its own keys (and ctrl+c) act
            return action == "quit"
        # hidden where they cannot act: the footer and the help list what does
        if isinstance(self.focused, Input):  # the console: its keys (+ and - too) are characters of the prefix
            return action in ("dismiss", "quit")  # Esc leaves it (named in the footer), ctrl+c quits
        if action == "focus_console":  # the engine answers the console
            return self.source.can_send
        if action == "dismiss":
            return False
        if action == "front":
            return self.runs.overlaid
        if action in ENGINE_ONLY or (action in ("speed", "step") and self.source.kind == "stream"):
            return self.source.can_send and (action == "gates" or not self._training_over())
        if action in ("pause", "step", "speed") and self.source.kind == "live":
            return not self._training_over()
        return action != "seek" or self.source.kind == "replay"  # scrubbing: replays (a live run follows)

    def _training_over(self) -> bool:
        """The live run has finished training: only the console (and g) still reach its model."""
        status = self.runs.steered.status if self.runs.states else None
        return self.source.kind == "live" and status is not None and status.state in FINAL_STATES

    # --- the event stream -------------------------------------------------------

    @work(thread=True, exclusive=True, group="reader")
    def _read(self) -> None:
        read_events(self.source, self.post_message, self._slots, self._reader_stop)

    def on_events_arrived(self, message: EventsArrived) -> None:
        self._arrived.append(message.events)
        if len(self._arrived) == 1:  # else a slice is already on its way
            self._ingest_slice()

    def _ingest_slice(self) -> None:
        """Take in arrived events for at most INGEST_SLICE, then queue the rest behind what waits (keys)."""
        deadline = time.perf_counter() + INGEST_SLICE
        explosion, status, waiting = self.state.first_explosion, self.state.status, self.alarm_pause
        while self._arrived:  # a chunk at least, then more while the slice lasts
            batch = self._arrived[0]
            chunk = batch[self._taken:self._taken + INGEST_CHUNK]
            self._taken += len(chunk)
            if self._taken >= len(batch):
                self._arrived.popleft()
                self._taken = 0
                self._slots.release()  # the reader may hand over another batch
            self._ingest(chunk)
            if time.perf_counter() >= deadline:
                break
        if explosion is None and self.state.first_explosion is not None:
            self._pause_at_explosion()
        if waiting and self.state.status is not status and self.state.status.state != "paused":
            self.alarm_pause = False  # answered: the run goes on (or ended)
        self._dirty = True
        if self._arrived:  # the next slice is queued from the event loop, behind the keys it has taken in
            asyncio.get_running_loop().call_soon(self.call_later, self._ingest_slice)
        elif self._end is not None and self.ended is None:
            self.on_source_ended(self._end)
        if self.playback.index is None and time.monotonic() - self._last_frame >= ARRIVAL_GAP:
            self._draw_frame()

    def _ingest(self, events: list) -> None:
        keys_before = (self.runs.overlaid, self._training_over())
        for event in self.runs.ingest(events):
            if self.source.kind != "replay":  # a replay's console follows its cursor
                who = self.runs.letter_of(event.run) if self.runs.overlaid else ""  # a fork's branches share it
                self.monitor.console_panel.show_event(event, who)
            if isinstance(event, Notice):
                self.note = ""  # the engine answered the pending request
        if self.note and not self.stopping and any(type(event) is Settings for event in events):
            self.note = ""  # the new settings answer a clip or speed request (the header shows them)
        if (self.runs.overlaid, self._training_over()) != keys_before:  # a fork's o; the keys training needed
            self.refresh_bindings()

    def on_source_ended(self, message: SourceEnded) -> None:
        self._end = message
        if self._arrived:  # said once the events before it are all in
            return
        self.ended = message
        self._dirty = True
        if self.stopping:
            self.exit(message.exit_code or 0)
            return
        console = self.monitor.console_panel
        skipped = message.bad_lines + self.state.bad_events
        if skipped:
            console.note(f"skipped {skipped} unreadable line(s) of the stream", "yellow")
        reason = controls.failure_reason(self.state.status, message.exit_code, message.error)
        if reason and self.source.kind == "live":
            self.failure = reason
            self.state.source_end = "failed"  # the header says so, whatever the last status was
            self.monitor.timeline.show_failure(reason)
            for line in message.error.splitlines()[-3:]:
                console.note(line, "red")
            return
        for state in self.runs.states:  # a run whose log or stream ends without its run_finished was cut off
            state.source_end = state.finished.reason if state.finished is not None else "cut off"
        if self.source.kind == "replay":
            self._console_at = None
            gc.collect()
            gc.freeze()  # all a replay holds stays: no collection has to rescan it
            gc.set_threshold(*GC_THRESHOLDS)
        elif self.source.kind == "stream":
            cut = "" if self.state.finished is not None else " before the run finished"
            console.note(f"the stream ended after {self.state.events_seen} events{cut}: the run stays on screen"
                         " · q quit", "bold yellow")

    # --- drawing, at a steady frame rate -------------------------------------------------

    def _draw_frame(self) -> None:
        now = time.monotonic()
        moved = self.playback.tick(now - self._last_frame, self.runs.last_index)
        self._last_frame = now
        if self._dirty or moved:
            label = source_label(self.source, self.playback, self.ended is not None)
            paused = self.state.status is not None and self.state.status.state == "paused"
            prompt = ALARM_PROMPT if self.alarm_pause and paused else ""  # once the engine has paused
            clip_keys = self.source.can_send and not self._training_over()  # typing in the console or not
            self._dirty = self.monitor.draw(self.runs, self.playback.index, label, self.note, prompt,
                                            self.source.kind == "live", clip_keys)
            weights = self.runs.steered.weights if self.source.kind == "live" else ""  # a log's engine is gone
            placeholder = (console_options.placeholder(self.state.task, self.sampling, weights,
                                                       str(self.state.config.get("corpus", "")))
                           if self.source.can_send else controls.REFUSALS.get(self.source.kind, ""))
            self.monitor.console_panel.set_placeholder(placeholder)
            self.monitor.console_panel.score_name = "perplexity" if self.state.task == "lm" else "accuracy"
            if self.source.kind == "replay" and self._console_at != (self.playback.index, self.runs.front_number):
                self._console_at = (self.playback.index, self.runs.front_number)
                cursor = self.runs.position(self.state, self.playback.index)
                self.monitor.console_panel.replay(self.state.console_until(
                    self.state.last_index if cursor is None else cursor))

    # --- sending commands -------------------------------------------------------------

    def send(self, command: Command) -> bool:
        if not self.source.can_send:
            self.monitor.console_panel.note(controls.REFUSALS.get(self.source.kind, "no engine to send to"), "yellow")
            return False
        if not self.source.send(command):
            self.monitor.console_panel.note("the engine is not running: command not sent", "yellow")
            return False
        self._dirty = True  # the header shows the request until the engine answers
        return True

    def action_focus_console(self) -> None:
        self.set_focus(self.query_one("#console-input", Input))

    def action_toggle_charts(self) -> None:
        self.monitor.toggle_charts()
        self._dirty = True

    def action_toggle_flow(self) -> None:
        self.monitor.toggle_flow()
        self._dirty = True

    def action_toggle_whole(self) -> None:
        self.monitor.toggle_whole()
        self._dirty = True

    def action_help(self) -> None:
        self.push_screen(HelpScreen([key for key in KEYS if self.check_action(key.action, ()) is not False]))

    def action_dismiss(self) -> None:
        self.set_focus(None)

    def on_console_submitted(self, message: Console.Submitted) -> None:
        if console_options.is_option(message.text):
            self._console_option(message.text)
            return
        self._request_id += 1
        try:
            commands = controls.console_commands(message.text, self.state.task, self._request_id, self.sampling,
                                                 self.state.config.get("length"))
        except ValueError as problem:
            self.monitor.console_panel.note(str(problem), "yellow")
            return
        if self.send(commands[0]) and len(commands) > 1 and self.send(commands[1]):
            shown = getattr(commands[1], "input", "")
            if self.state.task == "lm" and len(shown) < len(message.text):  # the heatmaps' columns are limited
                self.monitor.console_panel.note(f"the heatmaps show the first {len(shown)} of its "
                                                f"{len(message.text)} characters", "dim")

    def _console_option(self, text: str) -> None:
        """A ``:`` line: how generation samples (kept here, sent with each request), or which weights answer
        after the run (the engine's, so it is asked). After a fork the engine's console is the first
        branch's, whichever is at the front: it alone says which weights answer, and its are switched."""
        console, steered = self.monitor.console_panel, self.runs.steered
        try:
            option = console_options.parse_option(text, self.state.task, bool(steered.weights))
        except ValueError as problem:
            console.note(str(problem), "yellow")
            return
        if isinstance(option, console_options.Sampling):
            self.sampling = option
            console.note(f"generation from now on: {option.describe()}", "bold")
            self._dirty = True
        elif self.send(option) and self.state is not steered:  # answered by a weights event (whose, it says)
            letter = run_letter(self.runs.states.index(steered))
            console.note(f":{option.which} switches {letter}'s weights: after a fork the console answers from "
                         f"{letter}, whichever run is at the front", "dim")

    async def action_quit(self) -> None:
        if self.source.kind != "live" or self.ended is not None or self.stopping:
            self._reader_stop.set()
            self.source.terminate()
            self.exit(self.source.exit_code or 0)
            return
        self.stopping = True
        self.note = "stopping…"
        self._dirty = True
        self._stop_engine()

    @work(thread=True, group="stop")
    def _stop_engine(self) -> None:
        self.source.stop(STOP_TIMEOUT)  # the reader then sees end of file and posts SourceEnded


def build_app(source: EventSource) -> MonitorApp:
    """The monitor for any event source (tests pass a recorded log; the CLI a child process)."""
    return MonitorApp(source)
