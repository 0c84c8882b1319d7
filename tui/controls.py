"""What a key asks of the engine, worked out from what the engine last confirmed (no textual)."""

from __future__ import annotations

import signal

from engine.commands import Command, Fork, GatesCommand, Generate, Predict, SetClip
from engine.events import Status
from tui.console_options import GREEDY, Sampling
from tui.state import RunSettings
from tui.widgets.console import GENERATION_LENGTH, parse_digits

REFUSALS = {"replay": "replaying a recorded run: there is no engine to send commands to",
            "stream": "watching a stream: commands cannot be sent (steer the run where it runs)"}

DEFAULT_MAX_NORM = 20.0  # the textbook's fix (NNDL 6.2.3)
GATE_CHARACTERS = 64  # the engine draws heatmaps of at most this many characters of a prefix
SPEEDS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)  # steps/s caps; 0 = none


def toggle_clip(settings: RunSettings | None, config: dict) -> SetClip:
    on, max_norm, norm_type = _clip(settings, config)
    return SetClip(on=not on, max_norm=max_norm, norm_type=norm_type)


def scale_clip(settings: RunSettings | None, config: dict, factor: float) -> SetClip:
    on, max_norm, norm_type = _clip(settings, config)
    return SetClip(on=on, max_norm=max_norm * factor, norm_type=norm_type)


def clip_at(settings: RunSettings | None, config: dict, max_norm: float | None = None) -> SetClip:
    """Clipping on at ``max_norm`` (the advisor's suggestion; None: the current threshold, else the
    textbook's 20), in the run's norm type."""
    _, current, norm_type = _clip(settings, config)
    return SetClip(on=True, max_norm=max_norm or current, norm_type=norm_type)


def fork_clip(settings: RunSettings | None, config: dict, advised: float | None) -> Fork:
    """What f forks: the other side of the clipping switch, on at the advisor's max_norm when it has
    one (else the current threshold), or off."""
    on, max_norm, _ = _clip(settings, config)
    return Fork(setting="clip", value=None) if on else Fork(setting="clip", value=advised or max_norm)


def _clip(settings: RunSettings | None, config: dict) -> tuple[bool, float, str]:
    if settings is not None:
        on, max_norm, norm_type = settings.clip_on, settings.clip_max_norm, settings.clip_norm_type
    else:
        on, max_norm, norm_type = config.get("clip") is not None, config.get("clip"), config.get("clip_type", "2")
    if not max_norm or max_norm <= 0:
        max_norm = DEFAULT_MAX_NORM
    return bool(on), float(max_norm), str(norm_type or "2")


def console_commands(text: str, task: str, request_id: int, sampling: Sampling = GREEDY,
                     length: int | None = None) -> list[Command]:
    """What a console line asks: a prediction (digits, at most ``length``: what the model reads) or a
    generation (a prefix, continued as ``sampling`` says), then heatmaps for it.

    Raises ValueError with a one-line explanation for input that cannot be sent.
    """
    if text.strip().startswith("fork"):  # "fork lr=0.1": a second branch with that change
        return [Fork.parse(text.strip()[len("fork"):])]
    if task == "lm":
        if not text:  # a prefix of spaces is one: the space is a character of the corpus
            raise ValueError("type a prefix for the model to continue")
        return [Generate(prefix=text, length=GENERATION_LENGTH, temperature=sampling.temperature,
                         top_k=sampling.top_k, seed=sampling.seed, request_id=request_id),
                GatesCommand(input=text[:GATE_CHARACTERS])]
    digits = " ".join(parse_digits(text, length))
    return [Predict(input=digits), GatesCommand(input=digits)]


def failure_reason(status: Status | None, exit_code: int | None, error: str) -> str:
    """Why the engine died, in one line ("" when it did not): its failed status, else how the process
    ended and its last words on stderr."""
    failed = (exit_code or 0) != 0 or (status is not None and status.state == "failed")
    if not failed:
        return ""
    if status is not None and status.state == "failed" and status.message:
        return status.message
    how = f"exit {exit_code}"
    if exit_code is not None and exit_code < 0:
        try:
            how += f", killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            pass
    last_words = [line for line in error.splitlines() if line.strip()]
    return f"the training process ended ({how})" + (f": {last_words[-1]}" if last_words else "")


def next_speed(current: float, measured: float, faster: bool) -> float:
    """The next steps/s cap up or down the ladder; 0 means no cap."""
    if faster:
        if current == 0:
            return 0.0
        return next((speed for speed in SPEEDS if speed > current), 0.0)
    if current == 0:  # from uncapped, start just below what the run manages now
        below = [speed for speed in SPEEDS if measured <= 0 or speed < measured]
        return below[-1] if below else SPEEDS[0]
    lower = [speed for speed in SPEEDS if speed < current]
    return lower[-1] if lower else SPEEDS[0]


class Playback:
    """The cursor over the run's steps. None follows the newest step; replays start at the first."""

    def __init__(self, follow: bool, speed: float = 10.0) -> None:
        self.follows_stream = follow
        self.index: int | None = None if follow else 0
        self.playing = not follow
        self.speed = speed  # steps/s while playing a replay
        self._carry = 0.0

    def tick(self, seconds: float, last: int) -> bool:
        """Advance a playing replay; True when the cursor moved."""
        if not self.playing or self.index is None:
            return False
        self._carry += seconds * self.speed
        moved = int(self._carry)
        if moved == 0:
            return False
        self._carry -= moved
        before = self.index
        self.index = min(last, self.index + moved)
        return self.index != before

    def toggle(self, last: int) -> None:
        """p without an engine: play/pause a replay; freeze/follow a stream."""
        if self.follows_stream:
            self.index = last if self.index is None else None
            return
        self.playing = not self.playing
        if self.index is None:
            self.index = last

    def scale_speed(self, direction: int) -> None:
        self.speed = max(0.5, min(1e6, self.speed * (2.0 if direction > 0 else 0.5)))

    def move(self, steps: int, last: int) -> None:
        self.playing = False
        self._carry = 0.0
        start = last if self.index is None else self.index
        self.index = max(0, min(last, start + steps))

    def home(self) -> None:
        self.index, self.playing = 0, False

    def end(self, follow: bool, last: int) -> None:
        self.index = None if follow else max(0, last)
        self.playing = False
