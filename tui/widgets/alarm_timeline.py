"""The alarm timeline: every alarm of the run as one story in words, always on screen.

A later alarm never hides an earlier one and pausing dismisses nothing: the first explosion stays
told until the app quits. When the run paused itself at the explosion, the keys that answer it are
spelt out on the line below; an engine that died says so on a line of its own.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.events import Alarm
from engine.text import visible
from tui.format import longest_that_fits
from tui.story import KIND_STYLES, MARKS, chapters, fragment

SEPARATOR = " · "
QUIET = ("no alarms: explosions (a norm 100× its recent median), NaN and vanished gradients are told here",
         "no alarms: explosions, NaN and vanished gradients are told here")


def story_text(alarms: list[Alarm], cell: str, width: int, lines: int) -> Text:
    """The alarms as clauses of one story that fits ``lines`` lines of ``width`` cells."""
    if not alarms:
        return Text(longest_that_fits(QUIET, width), "dim")
    room = len(alarms)
    while True:
        told, left_out = chapters(alarms, room)
        text = Text()
        for number, alarm in enumerate(told):
            if number:
                text.append(SEPARATOR)
            if left_out and number == 1:
                text.append(f"…{left_out} more…", "dim")
                text.append(SEPARATOR)
            text.append(f"{MARKS.get(alarm.kind, '•')} ", KIND_STYLES.get(alarm.kind, "bold"))
            text.append(fragment(alarm, cell), "bold" if alarm.kind != "healthy" else "green")
        if room <= 1 or len(text.wrap(_console(), width)) <= lines:
            if room <= 1:
                text.truncate(width * lines)
            return text
        room -= 1


_CONSOLE = None


def _console():
    global _CONSOLE
    if _CONSOLE is None:
        from rich.console import Console

        _CONSOLE = Console(width=1000, color_system=None)
    return _CONSOLE


class AlarmTimeline(Static):
    """Shown always; ``show`` takes the alarms at the cursor, the prompt to answer, and a failure."""

    DEFAULT_CSS = """
    AlarmTimeline { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self._drawn: tuple = ()
        self.failure = ""

    def on_resize(self) -> None:
        self._drawn = ()  # the story is fitted to the width

    def show(self, alarms: list[Alarm], cell: str, prompt: str = "", narrow: bool = False) -> None:
        width = self.content_size.width or 78
        lines = 2 if narrow else 3
        key = (len(alarms), alarms[-1] if alarms else None, cell, prompt, self.failure, width, lines)
        if key == self._drawn:
            return
        self._drawn = key
        text = story_text(alarms, cell, width, lines)
        if prompt:
            text.append("\n")
            text.append(prompt[:width], "bold black on yellow")
        if self.failure:
            text.append("\n")
            text.append(f"✖ ENGINE FAILED: {self.failure} · the recorded run stays on screen · q quit"[: width * 2],
                        "bold white on dark_red")
        self.set_class(any(alarm.kind != "healthy" for alarm in alarms), "troubled")
        self.update(text)

    def show_failure(self, message: str) -> None:
        """The engine died: a line of its own, kept until the app quits."""
        self.failure = visible(message)
        self._drawn = ()
