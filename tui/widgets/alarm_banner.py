"""The alarm banner: what went wrong, where, how badly, and the keys that fix it."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static

from engine.events import Alarm
from tui.format import sci

HEADLINES = {
    "explosion": "GRADIENT EXPLOSION",
    "non_finite": "NON-FINITE GRADIENT (NaN/inf) — update skipped",
    "saturation": "GRADIENTS VANISHED",
}
REMEDIES = {
    "explosion": "c clip · r rewind · p pause · esc dismiss",
    "non_finite": "r rewind · c clip · p pause · esc dismiss",
    "saturation": "units saturated while the loss stays high · r rewind · p pause · esc dismiss",
}
ADVICE = {"saturation": "(lower the lr or clip earlier next run)"}  # shown where the line has room


def describe(alarm: Alarm, width: int = 118) -> Text:
    """Two lines that fit ``width`` cells: the kind, parameter, value, its median or peak and the
    step; then the remedies (a third line only for the engine's own explanation of a NaN)."""
    head = f"⚠ {HEADLINES.get(alarm.kind, alarm.kind.upper())} at step {alarm.step}"
    if alarm.parameter:
        value = f"‖∇{alarm.parameter}‖ = {sci(alarm.value)}"
        if alarm.kind == "saturation" and alarm.median:  # the engine sends the peak it fell from
            long, short = f"{value}, down from a peak of {sci(alarm.median)}", f"{value}, peak {sci(alarm.median)}"
        elif alarm.median:
            ratio = f"{alarm.ratio:,.3g}×"
            long, short = f"{value}, {ratio} its recent median ({sci(alarm.median)})", f"{value}, {ratio} median"
        else:
            long = short = value
        head = f"{head}: {long}" if cell_len(f"{head}: {long}") <= width else f"{head}: {short}"
    text = Text(head, "bold")
    remedies = REMEDIES.get(alarm.kind, "esc dismiss")
    advice = ADVICE.get(alarm.kind, "")
    if advice and cell_len(f"{remedies}  {advice}") <= width:
        remedies = f"{remedies}  {advice}"
    text.append(f"\n{remedies}")
    if alarm.message and (alarm.kind == "non_finite" or not alarm.parameter):
        text.append(f"\n{alarm.message}", "italic")  # the engine's explanation (saturation, NaN)
    return text


class AlarmBanner(Static):
    """Hidden until ``show`` gets an alarm; its kind is a CSS class (explosion, non_finite, ...)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.alarm: Alarm | None = None
        self._failure = ""
        self._width = 0

    def on_resize(self) -> None:
        if self.size.width != self._width and self.alarm is not None:
            self._draw()  # the wording fits the width

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
            self._width = self.size.width
            self.update(describe(self.alarm, self._width or max(20, self.app.size.width - 2)))
            self.display = True
        else:
            self.display = False
