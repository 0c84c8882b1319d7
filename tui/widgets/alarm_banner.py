"""The alarm banner: what went wrong, where, how badly, and the keys that fix it."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.events import Alarm
from tui.format import sci

HEADLINES = {
    "explosion": "GRADIENT EXPLOSION",
    "non_finite": "NON-FINITE GRADIENT (NaN/inf) — update skipped",
    "saturation": "GRADIENTS VANISHED — units saturated",
}
REMEDIES = {
    "explosion": "c clip · r rewind · p pause · esc dismiss",
    "non_finite": "r rewind · c clip · p pause · esc dismiss",
    "saturation": "r rewind · p pause · esc dismiss  (lower the lr or clip earlier next run)",
}


def describe(alarm: Alarm) -> Text:
    """Two lines: the kind, parameter, value, ratio to its median and step; then the remedies."""
    headline = HEADLINES.get(alarm.kind, alarm.kind.upper())
    text = Text(f"⚠ {headline} at step {alarm.step}", "bold")
    if alarm.parameter:
        text.append(f":  ‖∇{alarm.parameter}‖ = {sci(alarm.value)}")
        if alarm.kind == "saturation" and alarm.median:  # the engine sends the peak it fell from
            text.append(f",  down from a peak of {sci(alarm.median)} while the loss stays high")
        elif alarm.median:
            text.append(f",  {alarm.ratio:,.3g}× its recent median ({sci(alarm.median)})")
    text.append("\n")
    text.append(REMEDIES.get(alarm.kind, "esc dismiss"))
    if alarm.message and (alarm.kind == "non_finite" or not alarm.parameter):
        text.append(f"\n{alarm.message}", "italic")  # the engine's explanation (saturation, NaN)
    return text


class AlarmBanner(Static):
    """Hidden until ``show`` gets an alarm; its kind is a CSS class (explosion, non_finite, ...)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.alarm: Alarm | None = None
        self._failure = ""

    def show(self, alarm: Alarm | None) -> None:
        if alarm is self.alarm:
            return
        self.alarm = alarm
        self._draw()

    def show_failure(self, message: str) -> None:
        """The engine died: this replaces any alarm until the app quits."""
        self._failure = message
        self._draw()

    def _draw(self) -> None:
        for kind in ("explosion", "non_finite", "saturation", "failed"):
            self.remove_class(kind)
        if self._failure:
            self.add_class("failed")
            self.update(Text(f"✖ ENGINE FAILED: {self._failure}\nthe recorded run stays on screen · q quit",
                             "bold"))
            self.display = True
        elif self.alarm is not None:
            self.add_class(self.alarm.kind if self.alarm.kind in HEADLINES else "explosion")
            self.update(describe(self.alarm))
            self.display = True
        else:
            self.display = False
