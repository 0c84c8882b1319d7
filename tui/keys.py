"""The keys that steer a run (or a replay's cursor): each works out its command from what the engine
last confirmed (or from a request it has not answered yet) and sends it. A mixin of the app, which
owns the state, the source and the screen."""

from __future__ import annotations

from engine.commands import GatesCommand, Pause, Resume, Rewind, SetSpeed, StepCommand
from tui import controls
from tui.runs import run_letter

ALARM_PROMPT = "paused at the explosion: c clip and continue · p continue without · r rewind"


class RunKeys:
    def _pause_at_explosion(self) -> None:
        """A live digit run started with pause_on_alarm (the TUI's default; --no-pause-on-alarm keeps
        going) pauses itself after the step of its first explosion: its keys answer the prompt."""
        config = self.state.config
        if self.source.kind == "live" and self.state.task == "digits" and config.get("pause_on_alarm"):
            self.alarm_pause = True

    # --- actions (one per key) ----------------------------------------------------

    # After a fork the clip keys steer the first branch, whichever run is at the front: worked out
    # from its settings, and the request names it

    def _steered(self) -> tuple:
        """The run the clip keys steer, its settings and config, and " for A" once there are two."""
        state = self.runs.steered
        whom = f" for {run_letter(self.runs.states.index(state))}" if self.runs.overlaid else ""
        return state, self._settings_to_build_on(state), state.config, whom

    def _settings_to_build_on(self, state):
        """What the engine last confirmed, or what the keys asked for since if it has not answered yet:
        a key pressed again before the answer (+ + +, [ [) builds on the press before it."""
        confirmed = state.latest_settings
        asked_of, asked = self.asked.get(id(state), (None, None))
        return asked if asked is not None and asked_of is confirmed else confirmed

    def _send_settings(self, state, command, **changes) -> bool:
        """Send a clip or speed command and remember what it asks until the engine answers."""
        base = self._settings_to_build_on(state)
        if not self.send(command):
            return False
        if base is not None:
            self.asked[id(state)] = (state.latest_settings, base._replace(**changes))
        return True

    def _send_clip(self, state, command) -> bool:
        return self._send_settings(state, command, clip_on=command.on, clip_max_norm=command.max_norm,
                                   clip_norm_type=command.norm_type)

    def action_toggle_clip(self) -> None:
        state, settings, config, whom = self._steered()
        if self.alarm_pause:  # clip and continue
            command = controls.clip_at(settings, config)
            if self._send_clip(state, command) and self.send(Resume()):
                self.note = f"clip ON at {command.max_norm:g}{whom} requested, continuing"
            return
        command = controls.toggle_clip(settings, config)
        if self._send_clip(state, command):
            self.note = f"clip {'ON' if command.on else 'OFF'}{whom} requested"

    def action_advise(self) -> None:
        state, settings, config, whom = self._steered()
        view = state.view(self.runs.position(state, self.playback.index), width=1)
        suggestion = view.advice.suggestion if view.advice is not None else None
        if suggestion is None:
            self.monitor.console_panel.note("the advisor has no healthy steps to average yet", "yellow")
            return
        if self._send_clip(state, controls.clip_at(settings, config, suggestion)):
            self.note = f"clip ON at the advised {suggestion:g}{whom} requested"

    def action_scale_clip(self, factor: float) -> None:
        state, settings, config, whom = self._steered()
        command = controls.scale_clip(settings, config, factor)
        if self._send_clip(state, command):
            self.note = f"max_norm {command.max_norm:g}{whom} requested"

    def action_pause(self) -> None:
        if self.source.kind != "live":
            self.playback.toggle(self.runs.last_index)
        else:
            status = self.runs.steered.status  # the one loop steps both branches
            running = status is None or status.state == "running"
            self.send(Pause() if running else Resume())
        self._dirty = True

    def action_step(self) -> None:
        if self.source.kind == "live":
            self.send(StepCommand(n=1))
        else:
            self.action_seek("1")

    def action_rewind(self) -> None:
        self.send(Rewind())

    def action_speed(self, direction: int) -> None:
        if self.source.kind == "replay":
            self.playback.scale_speed(direction)
            self._dirty = True
            return
        steered = self.runs.steered
        settings = self._settings_to_build_on(steered)
        measured = steered.steps_per_s[-1] if steered.steps_per_s else 0.0
        speed = controls.next_speed(settings.speed if settings else 0.0, measured, direction > 0)
        if self._send_settings(steered, SetSpeed(steps_per_s=speed), speed=speed):
            self.note = f"speed cap {speed:g}/s requested" if speed else "no speed cap requested"

    def action_gates(self) -> None:
        self.send(GatesCommand())  # the engine refreshes the heatmaps of the input it shows

    def action_fork(self) -> None:
        """Fork the live run here: a second branch with clipping switched (type fork lr=… for another change)."""
        state, settings, config, _ = self._steered()
        view = state.view(None, width=1)
        advised = view.advice.suggestion if view.advice is not None else None
        command = controls.fork_clip(settings, config, advised)
        if self.send(command):
            self.note = f"fork with {command.describe()} requested"

    def action_front(self) -> None:
        """Bring the next run to the front (overlaid logs, or the branches of a fork)."""
        if not self.runs.overlaid:
            self.monitor.console_panel.note("one run on screen: watch A.jsonl B.jsonl overlays several", "yellow")
            return
        self.runs.bring_forward()
        self._dirty = True

    def action_seek(self, where: str) -> None:
        """home, end, or a number of steps to move (scrubbing pauses a replay)."""
        last = self.runs.last_index
        if where == "home":
            self.playback.home()
        elif where == "end":
            self.playback.end(self.source.kind != "replay", last)
        else:
            self.playback.move(int(where), last)
        self._dirty = True

