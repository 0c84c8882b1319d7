"""Full plotext charts: loss, log-scaled gradient norms with the clip threshold, and the dev score.

Every chart marks, at their step, the clip and lr changes, rewinds, pauses and alarms (vertical lines);
the norm chart's legend sits beside it, never over the data. ``w`` switches between the last steps
and the whole run, compressed to buckets that keep their largest value (no spike is thinned away).
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static
from textual_plotext import PlotextPlot

from engine.text import visible
from tui.history import decades
from tui.runs import RunSet, run_colour, run_letter
from tui.story import compact
from tui.state import RunState, score_of
from tui.widgets.sparklines import is_recurrent, mark_glyph

LEGEND_WIDTH = 22  # the norm chart's legend, beside it
MAX_POINTS = 200  # points per series handed to plotext (buckets of the whole run, or the last steps)
MAX_SERIES = 8  # more parameters than this (LSTM, GRU) are drawn per gate: ‖(∇W_i, ∇U_i, ∇b_i)‖
# 256-colour codes far apart in hue, one per series; the total is white. The norm chart skips those a
# chart already uses (the clip threshold's red, the overlaid runs' colours): no two series share one;
# and the colours of the marks drawn come last, so a vertical mark is not read as a series.
PALETTE = (196, 46, 33, 226, 201, 51, 208, 141, 118, 213, 130, 75, 180, 99, 37)
THRESHOLD = 196
MARK_COLOURS = {"clip": 46, "lr": 51, "rewind": 33, "pause": 226, "alarm": 196}
STYLES = {code: f"color({code})" for code in (*PALETTE, *MARK_COLOURS.values(), 255)}


def integer_ticks(low: float, high: float, most: int = 5) -> list[int]:
    """Round whole numbers spanning [low, high] for a step axis (never 2.5 steps)."""
    span = max(1.0, high - low)
    stride = 1
    for magnitude in range(0, 12):
        stride = next((m * 10 ** magnitude for m in (1, 2, 5) if span / (m * 10 ** magnitude) <= most), 0)
        if stride:
            break
    first = math.ceil(low / stride) * stride
    ticks = list(range(int(first), int(high) + 1, int(stride)))
    if len(ticks) < 2 and math.floor(high) > math.ceil(low):  # too narrow for round steps: the two ends
        return [math.ceil(low), math.floor(high)]
    return ticks


def grouped(norms: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per-parameter series, or, when there are too many, one per gate (the L2 norm of its W, U, b)."""
    if len(norms) <= MAX_SERIES:
        return norms
    groups: dict[str, list[list[float]]] = {}
    for name, values in norms.items():
        key = f"·_{name.split('_', 1)[1]}" if is_recurrent(name) and "_" in name else name
        groups.setdefault(key, []).append(values)
    return {key: [math.sqrt(sum(v * v for v in column)) for column in zip(*members)]
            for key, members in groups.items()}


class Charts(Horizontal):
    DEFAULT_CSS = """
    Charts { height: 1fr; }
    Charts > PlotextPlot { width: 1fr; height: 1fr; }
    Charts > #chart-legend { width: %d; height: 1fr; padding: 0 1; }
    """ % LEGEND_WIDTH

    def compose(self) -> ComposeResult:
        yield PlotextPlot(id="chart-loss")
        yield PlotextPlot(id="chart-norms")
        yield Static("", id="chart-legend")
        yield PlotextPlot(id="chart-score")

    def show(self, runs: RunSet, end: int | None = None, whole: bool = False) -> None:
        """Redraw the front run up to its series position ``end`` (None = everything), the whole run or
        its last steps; the other runs' loss, total norm and dev score over it, up to the same step."""
        state = runs.front
        length = len(state.steps) if end is None else end
        steps, series, norms = _series(state, length, whole)
        behind = []  # (colour, letter, steps, series, evaluations) of each run behind the front
        for number, other in enumerate(runs.states):
            if number != runs.front_number and other.steps:
                other_end = len(other.steps) if end is None else \
                    (runs.position_of(other, state.steps[length - 1]) + 1 if length > 0 else 0)
                behind.append((run_colour(number), run_letter(number), *_series(other, other_end, whole)[:2],
                               [(item.step, score_of(item)) for at, item in other.evals if at < other_end]))
        front_colour = run_colour(runs.front_number) if behind else PALETTE[0]
        first = steps[0] if steps else 0
        marks = [mark for mark in state.marks if mark.position < length and mark.step >= first]
        ticks = self._step_ticks(first, steps[-1] if steps else 1)
        ticks = (ticks, (first, steps[-1] if steps else 1))  # and the span every chart's x axis covers
        narrow = self.app.size.width < 100  # plotext leaves out a title wider than its chart
        title = ("loss (all)" if narrow else "loss (whole run)") if whole else "loss"
        self._loss(title, ticks, marks, [(front_colour, steps, series["loss"])] +
                   [(colour, other_steps, other_series["loss"]) for colour, _, other_steps, other_series, _ in behind])

        plt = self._start("#chart-norms", "‖∇‖ (log)" if narrow else "gradient norms (log)", ticks, marks)
        legend = Text()
        exponents: list[float] = []
        settings = state.settings_at(length - 1)
        threshold = settings.clip_max_norm if settings is not None and settings.clip_on else 0.0
        taken = {colour for colour, *_ in behind} | ({THRESHOLD} if threshold > 0 else set())
        marked = {MARK_COLOURS.get(mark.kind) for mark in marks}  # a mark's colour goes to a series last
        free = [code for code in PALETTE if code not in taken]
        for colour, (name, values) in zip(sorted(free, key=lambda code: code in marked), grouped(norms).items()):
            exponents += _line(plt, steps, values, colour, log=True)
            legend.append("━ ", STYLES[colour]).append(f"‖∇{visible(name)}‖\n")
        exponents += _line(plt, steps, series["total"], 255, log=True)
        legend.append("━ ", STYLES[255]).append("total\n")
        for colour, letter, other_steps, other_series, _ in behind:
            exponents += _line(plt, other_steps, other_series["total"], colour, log=True)
            legend.append("━ ", f"color({colour})").append(f"total {letter}\n")
        if threshold > 0:
            exponents.append(math.log10(threshold))
            plt.hline(exponents[-1], THRESHOLD)
            legend.append("┄ ", STYLES[THRESHOLD]).append(f"clip {threshold:g}\n")
        if exponents:
            labels = decades(10 ** min(exponents), 10 ** max(exponents))
            plt.yticks(labels, [f"1e{label}" for label in labels])
        for kind in sorted({mark.kind for mark in marks}):
            glyph = "·".join(sorted({mark_glyph(mark)[0] for mark in marks if mark.kind == kind}))
            legend.append("│ ", STYLES[MARK_COLOURS[kind]]).append(f"{glyph} {kind}\n")
        self.query_one("#chart-legend", Static).update(legend)
        self.query_one("#chart-norms", PlotextPlot).refresh()

        points = [(item.step, score_of(item)) for position, item in state.evals
                  if position < length and item.step >= first]
        runs_behind = [(colour, [(x, y) for x, y in evaluations if x >= first])
                       for colour, _, _, _, evaluations in behind]
        self._scores(state.task == "lm", ticks, marks, [(front_colour if behind else PALETTE[2], points), *runs_behind])

    def _step_ticks(self, first: int, last: int) -> list[int]:
        """As many ticks as fit a chart's canvas (its width less the y labels) at one label per 6
        columns: plotext drops the labels that would collide, leaving uneven gaps."""
        room = (self.app.size.width - LEGEND_WIDTH) // 3 - 10  # the first drawing comes before the layout
        return integer_ticks(first, last, most=max(2, min(5, room // 6)))

    def _loss(self, title: str, ticks: tuple, marks, lines: list[tuple[int, list[int], list[float]]]) -> None:
        """The loss of each run (colour, steps, values)."""
        plt = self._start("#chart-loss", title, ticks, marks)
        drawn = []
        for colour, steps, values in lines:
            drawn += _line(plt, steps, values, colour, log=False)
        _y_labels(plt, drawn)
        self.query_one("#chart-loss", PlotextPlot).refresh()

    def _scores(self, lm: bool, ticks: tuple, marks, runs: list[tuple[int, list[tuple[int, float]]]]) -> None:
        """Each run's (colour, [(step, dev score)]): accuracy on its whole scale, or perplexity."""
        plt = self._start("#chart-score", "dev perplexity" if lm else "dev accuracy", ticks, marks)
        drawn = []
        for colour, points in runs:
            drawn += _scores(plt, points, colour)
        if not lm and drawn:
            plt.ylim(0.0, 1.0)
            drawn = [0.0, 1.0]
        _y_labels(plt, drawn)
        self.query_one("#chart-score", PlotextPlot).refresh()

    def _start(self, selector: str, title: str, ticks: tuple, marks) -> object:
        """A cleared chart with its title, marks and step axis: ``ticks`` is (the labelled steps, the
        first and last step), the same span on every chart (the dev score's points may start later)."""
        plt = self.query_one(selector, PlotextPlot).plt
        plt.clear_figure()
        plt.title(title)
        labelled, (first, last) = ticks
        if labelled:
            plt.xticks(labelled, [str(tick) for tick in labelled])
        if last > first:
            plt.xlim(first, last)
        for mark in marks:
            plt.vline(mark.step, MARK_COLOURS.get(mark.kind, 255))
        return plt


def _series(state: RunState, length: int, whole: bool) -> tuple[list[int], dict, dict]:
    """A run's first ``length`` positions: the steps drawn, its loss and total norm, its norms."""
    if whole:
        steps = [state.steps[b.first - (state.appended - len(state.steps))]
                 for b in state.whole_columns("step", MAX_POINTS, length)]
        series = {"loss": _highs(state.whole_columns("loss", MAX_POINTS, length)),
                  "total": _highs(state.whole_columns("total_norm", MAX_POINTS, length))}
        return steps, series, {name: _highs(state.whole_columns(name, MAX_POINTS, length))
                               for name in state.grad_norms}
    view = state.view(length - 1, MAX_POINTS)
    return view.first_steps, {"loss": view.loss, "total": view.total_norm}, view.grad_norms


def _scores(plt, points: list[tuple[int, float]], colour: int) -> list[float]:
    """Plot one run's evaluations; the scores drawn."""
    points = [(x, y) for x, y in points if y is not None and math.isfinite(y)]
    if not points:
        return []
    xs, ys = zip(*points)
    plt.plot(list(xs), list(ys), marker="braille", color=colour)
    plt.scatter(list(xs), list(ys), marker="●", color=colour)
    return list(ys)


def _y_labels(plt, drawn: list[float]) -> None:
    """Three labels on the y axis, the lowest, middle and highest value drawn, short (188, 1e4):
    plotext's own (19855.9) took half of a narrow chart's width, and dropping those that collide it
    left uneven steps (1.30, 1.16, 0.87 on an accuracy axis)."""
    if drawn:
        low, high = min(drawn), max(drawn)
        levels = [low, (low + high) / 2, high] if high > low else [low]
        for digits in (2, 3, 4):  # as few digits as keep the labels apart (9.7 10 10: 9.72 10.1 10.5)
            labels = [compact(level, digits) for level in levels]
            if len(set(labels)) == len(labels):
                break
        plt.yticks(levels, labels)


def _highs(columns) -> list[float]:
    return [math.nan if bucket.bad else bucket.high for bucket in columns]


def _line(plt, steps: list[int], values: list[float], colour: int, log: bool) -> list[float]:
    """Plot one series (log10 of it when ``log``) in one colour; the y values drawn."""
    points = [(x, y) for x, y in zip(steps, values) if math.isfinite(y) and (y > 0 or not log)]
    if not points:
        return []
    xs, ys = zip(*points)
    ys = [math.log10(y) for y in ys] if log else list(ys)
    plt.plot(list(xs), ys, marker="braille", color=colour)
    return ys
