"""The flow view: ‖∂L/∂h_t‖ over time steps × training steps, and Pascanu's σ_max gauge.

The heatmap's rows are the sequence's time steps t = 1..T (two per line, named in its label: the upper
half of a ``▀`` is the first, the lower half the second), its columns the measured training steps, oldest on the left; the colour is
log10 of the norm over what is shown, dark blue (vanished) to red (largest). Above it, the ratio
‖∂L/∂h_1‖/‖∂L/∂h_T‖ as one number; below it one line per recurrent matrix: σ_max(U) against 1/γ,
with its series over the whole run (red above the bound), and σ_max of the step Jacobian.
"""

from __future__ import annotations

import functools
import itertools
import math

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from engine.text import visible
from tui.format import sci, short
from tui.instruments import reach
from tui.state import RunView
from tui.widgets.sparklines import spark

LABEL_WIDTH = 7  # "t34,35 ": the two time steps of a line
PALETTE = ((20, 30, 90), (30, 90, 190), (40, 170, 190), (60, 190, 90), (220, 210, 60), (230, 80, 40))
LEVELS = 24
VANISHED = Style(color="rgb(10,10,10)")  # an exact zero: nothing reaches that step
NON_FINITE = "magenta"
REACHES, FADES = 1e-2, 1e-6  # the first digits' share of h_T's gradient: reached / fading / lost


@functools.lru_cache(maxsize=None)
def _colour(level: int) -> str:
    """Level 0..LEVELS-1 along the palette, as an rgb colour."""
    position = level / (LEVELS - 1) * (len(PALETTE) - 1)
    low = int(position)
    high = min(low + 1, len(PALETTE) - 1)
    part = position - low
    red, green, blue = (int(a + (b - a) * part) for a, b in zip(PALETTE[low], PALETTE[high]))
    return f"rgb({red},{green},{blue})"


def _level(value: float, low: float, span: float) -> int | str:
    """A norm's colour level on the log scale, or a word for a zero or non-finite one."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "bad"
    if value <= 0:
        return "zero"
    fraction = (math.log10(value) - low) / span if span > 0 else 1.0
    return max(0, min(LEVELS - 1, int(fraction * (LEVELS - 1) + 0.5)))


def _colour_of(level) -> str | None:
    if level == "bad":
        return NON_FINITE
    if level == "zero":
        return "rgb(10,10,10)"
    return _colour(level)


def log_bounds(columns: list[list[float]]) -> tuple[float, float]:
    """log10 of the smallest and largest positive finite norm shown."""
    logs = [math.log10(value) for column in columns for value in column
            if isinstance(value, (int, float)) and math.isfinite(value) and value > 0]
    return (min(logs), max(logs)) if logs else (0.0, 0.0)


def time_steps(steps: int, lines: int) -> list[int]:
    """The time steps (0-based) drawn in ``lines`` lines of two: all when they fit, else evenly spaced
    ones, the first and the last among them (a language model's 35 steps in a short terminal)."""
    if steps <= 2 * lines:
        return list(range(steps))
    count = 2 * max(1, lines)
    return sorted({round(i * (steps - 1) / (count - 1)) for i in range(count)})


def heatmap(columns: list[list[float]], rows: list[int]) -> list[Text]:
    """Lines of half blocks: each line holds two of the time steps ``rows``, labelled upper,lower."""
    low, high = log_bounds(columns)
    span = high - low
    lines = []
    for upper_row, lower_row in itertools.zip_longest(rows[::2], rows[1::2]):
        label = f"t{upper_row + 1}" + (f",{lower_row + 1}" if lower_row is not None else "")
        line = Text(label.ljust(LABEL_WIDTH), "dim")
        for column in columns:
            upper = _colour_of(_level(column[upper_row], low, span)) if upper_row < len(column) else None
            lower = (_colour_of(_level(column[lower_row], low, span))
                     if lower_row is not None and lower_row < len(column) else None)
            line.append("▀", Style(color=upper, bgcolor=lower))
        lines.append(line)
    return lines


def legend(low: float, high: float, width: int) -> Text:
    """The colour scale between the smallest and the largest norm drawn (two decimals of a decade
    when they share one: 1e-2 ... 1e-2 says nothing)."""
    ends = (f"1e{low:.0f}", f"1e{high:.0f}") if round(high) > round(low) else (f"{10 ** low:.2g}", f"{10 ** high:.2g}")
    text = Text(" " * LABEL_WIDTH + f"{ends[0]} ", "dim")
    for level in range(0, LEVELS, max(1, LEVELS // 12)):
        text.append("█", Style(color=_colour(level)))
    text.append(f" {ends[1]}  log ‖∂L/∂h_t‖ · black 0 · magenta NaN"[: max(0, width - len(text))], "dim")
    return text


class FlowView(Widget):
    DEFAULT_CSS = """
    FlowView { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._view = RunView()
        self._narrow = False

    def show(self, view: RunView, narrow: bool = False) -> None:
        old = self._lines_needed()
        self._view, self._narrow = view, narrow
        self.refresh(layout=self._lines_needed() != old)

    def _lines_needed(self) -> int:
        flows = self._view.flows
        if not flows:
            return 2
        return self._fixed_lines() + (len(self._rows(max(len(flow.grad_h_norms) for flow in flows))) + 1) // 2

    def _fixed_lines(self) -> int:
        """The headline, the axis, the legend and the gauge: all but the heatmap."""
        gauge = 1 if self._narrow else len(self._view.flows[-1].sigma_max) + 1
        return 3 + gauge

    def _rows(self, steps: int) -> list[int]:
        """The time steps the heatmap draws: what leaves the legend and the gauge in view."""
        room = self.parent.size.height if isinstance(self.parent, Widget) and self.parent.size.height else 0
        return time_steps(steps, room - self._fixed_lines() if room else steps)

    def get_content_height(self, container, viewport, width: int) -> int:
        return self._lines_needed()

    def render(self) -> Text:
        view = self._view
        width = self.content_size.width or 80
        if not view.flows:
            return Text("gradient flow through time: no step measured yet (the engine measures "
                        "‖∂L/∂h_t‖ every step under a speed cap, 10 times a second at full speed)", "dim")
        latest = view.flows[-1]
        shown = view.flows[-max(1, width - LABEL_WIDTH):]
        columns = [flow.grad_h_norms for flow in shown]
        steps = max(len(column) for column in columns)
        rows = self._rows(steps)
        lines = [self._headline(latest, view, self._narrow)]
        first_step, last_step = shown[0].step, shown[-1].step
        some = "" if len(rows) == steps else f" ({len(rows)} of its {steps} time steps)"
        lines.append(Text(f"{'t':<{LABEL_WIDTH}}training steps {first_step}–{last_step} →{some}"[:width], "dim"))
        lines += heatmap(columns, rows)
        lines.append(legend(*log_bounds(columns), width))
        lines += self._gauge(latest, view, width)
        for line in lines:
            line.truncate(width)
        return Text("\n").join(lines)

    @staticmethod
    def _headline(flow, view: RunView, narrow: bool) -> Text:
        text = Text("h_1/h_T " if narrow else "‖∂L/∂h_1‖/‖∂L/∂h_T‖ ", "bold")
        text.append(sci(flow.ratio), "bold cyan")
        text.append(f" at step {flow.step}")
        if view.config.get("task", "digits") == "digits":
            share = reach(flow, first=2)
            style = "green" if share >= REACHES else ("yellow" if share >= FADES else "bold red")
            word = "reaches" if share >= REACHES else ("fades before" if share >= FADES else "never reaches")
            text.append(" · " if narrow else " · the label's gradient ")
            text.append(word, style)
            text.append(" digits 1–2" if narrow else f" digits 1–2 ({sci(share)} of h_T's)")
        return text

    def _gauge(self, flow, view: RunView, width: int) -> list[Text]:
        """σ_max of each U against 1/γ, and the step Jacobian's."""
        names = list(flow.sigma_max)
        jacobian = Text("σ_max(∂h_T/∂h_{T-1}) ", "bold")
        jacobian.append(short(flow.jacobian_sigma_max), "red" if _over(flow.jacobian_sigma_max, 1.0) else "green")
        jacobian.append(" (mean over 8 examples; >1 grows, <1 shrinks per step)", "dim")
        if self._narrow:
            line = Text("σ_max ", "bold")
            for name in names:
                value, bound = flow.sigma_max[name], flow.inverse_gamma.get(name, 1.0)
                line.append(f"{visible(name)} ")
                line.append(short(value), "bold red" if _over(value, bound) else "bold green")
                line.append(f"/{short(bound)} ", "dim")
            line.append("· J ")
            line.append(short(flow.jacobian_sigma_max), "red" if _over(flow.jacobian_sigma_max, 1.0) else "green")
            return [line]
        lines = []
        label = max(len(visible(name)) for name in names) + 24 if names else 24
        series_width = max(4, width - label - 1)
        for name in names:
            value, bound = flow.sigma_max[name], flow.inverse_gamma.get(name, 1.0)
            line = Text(f"σ_max({visible(name)}) ", "bold")
            line.append(f"{short(value):>7}", "bold red" if _over(value, bound) else "bold green")
            line.append(f" {'>' if _over(value, bound) else '<'} 1/γ {short(bound):<3} ", "dim")
            line.append(" " * max(0, label - len(line)))
            history = [reading.sigma_max.get(name, math.nan) for reading in view.gauge]
            line.append_text(spark(history, series_width, limit=bound))
            lines.append(line)
        lines.append(jacobian)
        return lines


def _over(value: float, bound: float) -> bool:
    return isinstance(value, (int, float)) and (value > bound or math.isnan(value))
