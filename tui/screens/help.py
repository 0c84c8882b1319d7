"""The `?` help screen: every key, what it sends, and what the banner's colours mean."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

ABOUT = """
[b]Alarms[/b]  red: gradient explosion (a norm many times its recent median) · magenta: a non-finite
gradient (the update was skipped) · yellow: gradients collapsed to ~0 (tanh units saturated).
A banner stays until you act on it (c, r, p), dismiss it (esc) or the engine reports the run healthy.

[b]Replay[/b] (watch a log): p plays/pauses, n steps, ←/→ scrub, home/end jump, +/- playback speed.
A stream on standard input can be watched but not steered: keys that send commands say so.

[b]GRU[/b]  --impl torch trains PyTorch's GRU, which applies the reset gate after the recurrent
product (a different function from d2l's); --impl scratch follows d2l. Names and heatmaps are the same.
"""


KEYS = [("c", "clipping on/off (the header changes when the engine confirms)"),
        ("[ ]", "halve / double max_norm"), ("p", "pause / resume (replay: play / pause)"),
        ("n", "one step, then pause"), ("r", "rewind to the last healthy snapshot"),
        ("+ -", "faster / slower (steps/s cap)"), ("g", "refresh the gate heatmaps"),
        ("/", "focus the console (digits → predicted sum; lm: prefix → text)"),
        ("v", "sparklines / full charts"), ("← → home end", "scrub through the run"),
        ("esc", "dismiss the alarm banner"), ("?", "this help"), ("q", "quit (stops the run cleanly)")]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, keys: list[tuple[str, str]] = KEYS) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        table = Text()
        for key, description in self.keys:
            table.append(f"  {key:>8}  ", "bold")
            table.append(f"{description}\n")
        with VerticalScroll(id="help"):
            yield Static(Text("rnnlab-tui keys", "bold underline"))
            yield Static(table)
            yield Static(ABOUT.strip())

    def action_close(self) -> None:
        self.dismiss()
