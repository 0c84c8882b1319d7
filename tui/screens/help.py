"""The `?` help screen: every key, what it sends, and how to read the alarms, marks and advisor."""

from __future__ import annotations

from typing import NamedTuple

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.advisor import BAND, MIN_STABLE

ABOUT = [
    "[b]Alarms[/b]  The line under the header tells every alarm of the run, in order: ▲ an explosion "
    "(a norm 100× its recent median: median → the norm, and the ratio), ! a non-finite gradient (the update "
    "was skipped), ▼ a norm that fell below 1/10,000 of its peak while the loss stays high (saturated units), "
    "✓ healthy again. Nothing dismisses them; the first explosion is always told.",
    "[b]Pause at the explosion[/b]  A digit run in the TUI pauses at its first explosion "
    "(--no-pause-on-alarm keeps going): c clips (at max_norm, or the textbook's 20) and continues, "
    "p continues without, r rewinds to the weights before the alarm, a clips at the advisor's threshold.",
    "[b]Clip advisor[/b]  Pascanu, Mikolov & Bengio (2013, §3.2): a threshold from 0.5 to 10 times the "
    "average gradient norm over many updates still converges. The advisor averages the pre-clip total "
    "norm over the recent healthy steps, in the run's norm type (the memory preset clips the L1 norm), "
    "and shows the step's norm before and after clipping and the share of steps clipped. An explosion's "
    f"run-up (steps beyond {BAND[1]:g}× the average before them) is not healthy; under {MIN_STABLE} healthy "
    "steps, or a loss that rose over them, is no stable phase, and it says so. --preset rescue: a stable "
    "phase, an explosion at step 58, and a at the pause, r, p make the run learn.",
    "[b]Marks[/b]  On every sparkline and chart, at their step: c clip on/off or max_norm, l lr, "
    "r rewind, p pause, ▲ ! ▼ alarms (marked steps are tinted). w shows the whole run in buckets that "
    "keep each bucket's largest value, so a one-step spike is never lost.",
    "[b]Console[/b]  (/) digits → the predicted sum and their heatmaps; a language model continues a "
    "prefix greedily, or after :sample t=0.8 k=5 seed=3 by a draw at temperature 0.8 from the 5 likeliest "
    "characters (the same seed and prefix give the same text; without seed= each draw is new); :greedy goes "
    "back. After the run the model answers until q, from its final weights or, after :best, the best dev "
    "checkpoint's (:final switches back); each answer is led by the weights that gave it.",
    "[b]Replay[/b]  (watch a log): p plays/pauses, n steps, ←/→ scrub, home/end jump, +/- playback "
    "speed; everything on screen is as it was at the cursor. A stream on standard input can be watched "
    "but not steered: keys that send commands say so.",
    "[b]Flow (t)[/b]  ‖∂L/∂h_t‖, how much of the loss's gradient reaches time step t through the recurrence "
    "(NNDL 6.2, d2l 8.7): rows t = 1..T, columns the measured training steps, log colour. Measured by the "
    "equations on the training batch every step under a speed cap, 10 times a second at full speed.\n"
    "  h_1/h_T near 0: the gradient vanishes before the start; for the digit sum the label needs digits 1–2.",
    "[b]σ_max gauge[/b]  Pascanu, Mikolov & Bengio (2013, §2.1): the largest singular value of U against 1/γ "
    "(γ = 1 for tanh, 1/4 for a sigmoid gate): below it the long-term components must vanish, above it they "
    "can explode.\n  σ_max(∂h_T/∂h_{T-1}) is the step Jacobian on the batch (mean over 8 examples; the LSTM's "
    "with c held): the factor each step back multiplies the gradient by.",
    "[b]Saturation[/b]  Karpathy, Johnson & Fei-Fei (2015): per gate, the share of activations on the dev set "
    "below 0.1 and above 0.9 at each evaluation (shown above the heatmaps).\n  |h| > 0.99: saturated tanh "
    "units (derivative < 0.02), what an SRN looks like after the explosion (NNDL 6.2.2).",
    "[b]GRU[/b]  --impl torch trains PyTorch's GRU, which applies the reset gate after the recurrent "
    "product (a different function from d2l's); --impl scratch follows d2l. Names and heatmaps are the same.",
]

class Key(NamedTuple):
    key: str
    action: str  # the app's action: the help lists a key only where it acts
    description: str


KEYS = [Key("c", "toggle_clip", "clipping on/off (the header changes when the engine confirms); at the explosion: "
                                "clip and continue"),
        Key("[ ]", "scale_clip", "halve / double max_norm"), Key("a", "advise", "clip at the advisor's max_norm"),
        Key("p", "pause", "pause / resume (replay: play / pause)"),
        Key("n", "step", "one step, then pause"), Key("r", "rewind", "rewind to the last healthy snapshot"),
        Key("+ -", "speed", "faster / slower (steps/s cap; replay: playback speed)"),
        Key("g", "gates", "refresh the heatmaps"),
        Key("/", "focus_console", "focus the console (digits → predicted sum; lm: prefix → text; :options below)"),
        Key("w", "toggle_whole", "whole run / live window"), Key("v", "toggle_charts", "sparklines / full charts"),
        Key("f", "fork", "fork the live run here: a second branch from the same weights, optimiser state and "
                         "batches, with clipping switched (on at the advisor's max_norm); /fork lr=0.1 (or clip=5, "
                         "clip=none) forks with another change. p, n, + - and r act on both branches; c [ ] a steer "
                         "the first (A, the run you forked, whichever is at the front: its header line says steered "
                         "by c [ ] a)"),
        Key("o", "front", "the next run to the front (watch A.jsonl B.jsonl, or a fork's branches): drawn in full, "
                          "the others as their loss, dev and total-norm rows in their colours"),
        Key("t", "toggle_flow", "flow view: ‖∂L/∂h_t‖ over time steps × training steps, the σ_max gauge"),
        Key("← → home end", "seek", "scrub through a replay"), Key("esc", "focus_console", "leave the console"),
        Key("?", "help", "this help"),
        Key("q", "quit", "quit (a live run stops cleanly and prints how to resume it)")]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]
    AUTO_FOCUS = "#help"  # the arrow and page keys scroll it

    def __init__(self, keys: list[Key] = KEYS) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 1))
        table.add_column(justify="right", style="bold", no_wrap=True)
        table.add_column(ratio=1)  # a long description wraps under itself, not under the key
        for key in self.keys:
            table.add_row(key.key, key.description)
        with VerticalScroll(id="help"):
            yield Static("[b u]rnnlab-tui keys[/]  (↑/↓ scroll · esc closes)")
            yield Static(table)
            for paragraph in ABOUT:
                yield Static("\n" + paragraph)

    def action_close(self) -> None:
        self.dismiss()
